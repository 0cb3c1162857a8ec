//! Where an encrypted location's password comes from (never a command-line value, which other
//! users of the machine can read): a command's output, a file, or an environment variable.

use std::path::Path;
use std::sync::Arc;

use esbackup_backends::open_target;
use esbackup_engine::codec::{self, Password};
use esbackup_engine::Target;

use crate::args::{PasswordArgs, TargetArg};
use crate::config::FileConfig;
use crate::exit::Failure;

/// The password `command`, else `file`, else the variable `var` gives; `None` without one.
pub fn resolve(
    command: Option<&str>,
    file: Option<&Path>,
    var: &str,
) -> Result<Option<Password>, Failure> {
    if let Some(cmd) = command {
        let out = std::process::Command::new("sh")
            .args(["-c", cmd])
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| Failure::usage(format!("--password-command {cmd:?}: {e}")))?;
        if !out.status.success() {
            return Err(Failure::usage(format!(
                "--password-command {cmd:?} failed ({})",
                out.status
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        return first_line(&text, "--password-command").map(Some);
    }
    if let Some(path) = file {
        let from = format!("--password-file {}", path.display());
        let text =
            std::fs::read_to_string(path).map_err(|e| Failure::usage(format!("{from}: {e}")))?;
        return first_line(&text, &from).map(Some);
    }
    Ok(std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| Password::new(v, var)))
}

fn first_line(text: &str, from: &str) -> Result<Password, Failure> {
    match text.lines().next().map(|l| l.trim_end_matches('\r')) {
        Some(line) if !line.is_empty() => Ok(Password::new(line, from)),
        _ => Err(Failure::usage(format!("{from} gives an empty password"))),
    }
}

impl PasswordArgs {
    /// The location's password, if one is given.
    pub fn password(&self) -> Result<Option<Password>, Failure> {
        resolve(
            self.password_command.as_deref(),
            self.password_file.as_deref(),
            "ESBACKUP_PASSWORD",
        )
    }
}

/// Opens `url` as its settings say: plain, or through the codec with `password`.
pub async fn open_url(
    url: &str,
    password: Option<&Password>,
    file: &FileConfig,
) -> Result<Arc<dyn Target>, Failure> {
    let store = open_target(url, &file.storage)?;
    Ok(codec::open(store, password).await?)
}

/// Opens the location `--target` names.
pub async fn open(target: &TargetArg, file: &FileConfig) -> Result<Arc<dyn Target>, Failure> {
    let password = target.password.password()?;
    open_url(target.url()?, password.as_ref(), file).await
}
