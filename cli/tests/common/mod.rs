//! What the CLI tests share.

use std::process::{Command, Output};

/// The `esbackup` binary with none of the caller's `ESBACKUP_*`, `AWS_*` or `AZURE*`
/// variables (a developer's own must not leak into a test), and `env` set.
pub fn esbackup_command(env: &[(String, String)]) -> Command {
    isolated(Command::new(env!("CARGO_BIN_EXE_esbackup")), env)
}

/// `cmd` with none of the caller's `ESBACKUP_*`, `AWS_*` or `AZURE*` variables, and `env` set.
pub fn isolated(mut cmd: Command, env: &[(String, String)]) -> Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("ESBACKUP_") || k.starts_with("AWS_") || k.starts_with("AZURE") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().cloned());
    cmd
}

/// `esbackup <args>` with none of the caller's variables, and `env` set.
#[allow(dead_code)] // not every test binary runs it
pub fn esbackup(args: &[&str], env: &[(String, String)]) -> std::process::Output {
    esbackup_command(env)
        .args(args)
        .output()
        .expect("esbackup runs")
}

/// `esbackup <args> --json`, which must succeed; its JSON.
#[allow(dead_code)]
pub fn ok(args: &[&str], env: &[(String, String)]) -> serde_json::Value {
    let out = esbackup(&[args, &["--json"]].concat(), env);
    assert_succeeded(&out, &format!("{args:?}"));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// Panics unless `out` is of a command that succeeded, naming `what` and showing what it
/// printed.
#[allow(dead_code)]
pub fn assert_succeeded(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

#[allow(dead_code)]
pub fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}
