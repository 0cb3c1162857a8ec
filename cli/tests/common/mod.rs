//! What the CLI tests share.

use std::process::Command;

/// The `esbackup` binary with none of the caller's `ESBACKUP_*`, `AWS_*` or `AZURE*`
/// variables (a developer's own must not leak into a test), and `env` set.
pub fn esbackup_command(env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esbackup"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ESBACKUP_") || k.starts_with("AWS_") || k.starts_with("AZURE") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().cloned());
    cmd
}
