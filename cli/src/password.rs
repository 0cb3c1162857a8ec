//! Where an encrypted location's password comes from (never a command-line value, which other
//! users of the machine can read): a command's output, a file, or an environment variable;
//! else, where stdin and stderr are a terminal (not cron, not a pipeline), it is asked there.

use std::io::IsTerminal;
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

/// Whether a password may be asked at the terminal: stdin and stderr are one.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Asks for a password at the terminal, without echo (twice when `confirm`, for a new one);
/// `None` when the command does not run at a terminal.
pub fn ask(prompt: &str, confirm: bool) -> Result<Option<Password>, Failure> {
    if !interactive() {
        return Ok(None);
    }
    let read = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map_err(|e| Failure::usage(format!("reading the password at the terminal: {e}")))
    };
    let typed = read(prompt)?;
    if typed.is_empty() {
        return Err(Failure::usage("the password typed is empty"));
    }
    if confirm && read("the same password again: ")? != typed {
        return Err(Failure::usage("the two passwords typed differ"));
    }
    Ok(Some(Password::new(typed, "the terminal")))
}

/// `given`, else the password typed at a terminal (twice when `confirm`; `None` without one).
pub fn given_or_typed(
    given: Option<Password>,
    prompt: &str,
    confirm: bool,
) -> Result<Option<Password>, Failure> {
    match given {
        Some(p) => Ok(Some(p)),
        None => ask(prompt, confirm),
    }
}

/// `given`, else (for an encrypted location, at a terminal) the password typed.
async fn or_asked(
    given: Option<&Password>,
    store: &dyn Target,
) -> Result<Option<Password>, Failure> {
    if given.is_some() || !interactive() {
        return Ok(given.cloned());
    }
    match codec::config::read(store).await? {
        Some(c) if c.encryption.is_some() => {
            ask(&format!("password for {}: ", store.describe()), false)
        }
        _ => Ok(None),
    }
}

/// Whether a command may ask at a terminal for a password it was not given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asking {
    /// Where stdin and stderr are a terminal, for an encrypted location.
    AtTerminal,
    /// Never (`esbackup run`, a service, never waits at a terminal).
    Never,
}

/// Opens `url` as its settings say: plain, or through the codec with `password` (asked as
/// `asking` says when none is given and the location is encrypted).
pub async fn open_url(
    url: &str,
    password: Option<&Password>,
    file: &FileConfig,
    asking: Asking,
) -> Result<Arc<dyn Target>, Failure> {
    let store = open_target(url, &file.storage)?;
    let password = match asking {
        Asking::AtTerminal => or_asked(password, store.as_ref()).await?,
        Asking::Never => password.cloned(),
    };
    Ok(codec::open(store, password.as_ref()).await?)
}

/// Opens the location `--target` names (its password asked at a terminal when needed).
pub async fn open(target: &TargetArg, file: &FileConfig) -> Result<Arc<dyn Target>, Failure> {
    let password = target.password.password()?;
    open_url(target.url()?, password.as_ref(), file, Asking::AtTerminal).await
}
