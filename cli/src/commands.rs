//! One function per subcommand: merge options, open the target, call the engine.

use std::sync::Arc;
use std::time::Duration;

use esbackup_backends::{open_target, TargetOptions};
use esbackup_engine::{
    backup, restore, status, verify, BackupOptions, RestoreOptions, Target, VerifyOptions,
};

use crate::args::{BackupArgs, Cli, Command, RestoreArgs, StatusArgs, VerifyArgs};
use crate::config::{required, FileConfig};
use crate::exit::Failure;
use crate::{demo, output, progress};

/// Runs the command; `Ok` carries the exit code (non-zero when `verify` finds problems).
pub async fn run(cli: Cli) -> Result<i32, Failure> {
    let file = FileConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Backup(a) => run_backup(a, file).await,
        Command::Restore(a) => run_restore(a, file).await,
        Command::Verify(a) => run_verify(a, file).await,
        Command::Status(a) => run_status(a, file).await,
        Command::Demo(a) => demo::run(a).await,
    }
}

fn open(cli: Option<String>, file: &FileConfig) -> Result<Arc<dyn Target>, Failure> {
    let url = required(cli, file.target.clone(), "target")?;
    Ok(open_target(&url, &file.storage)?)
}

async fn run_backup(a: BackupArgs, file: FileConfig) -> Result<i32, Failure> {
    let target = open(a.target.target, &file)?;
    let mut opts = BackupOptions::new(required(a.db.db, file.db.clone(), "db")?);
    opts.index = a.db.index.or(file.index.clone());
    opts.full = a.full;
    opts.dry_run = a.dry_run;
    opts.include_secondary_index =
        a.include_secondary_index || file.include_secondary_index.unwrap_or(false);
    opts.concurrency = concurrency(a.common.concurrency, &file);
    opts.lock.break_lock = a.break_lock;
    if let Some(secs) = a.lock_stale_secs.or(file.lock_stale_secs) {
        opts.lock.stale_after = Duration::from_secs(secs);
    }
    opts.progress = progress::for_terminal(a.common.quiet || a.common.json);
    let report = backup(target, &opts).await?;
    output::backup(a.common.json, &report);
    Ok(0)
}

async fn run_restore(a: RestoreArgs, file: FileConfig) -> Result<i32, Failure> {
    let target = open(a.target.target, &file)?;
    let mut opts = RestoreOptions::new(required(a.db.db, file.db.clone(), "db")?);
    opts.index = a.db.index.or(file.index.clone());
    opts.force = a.force;
    opts.allow_incomplete = a.allow_incomplete;
    opts.concurrency = concurrency(a.common.concurrency, &file);
    opts.progress = progress::for_terminal(a.common.quiet || a.common.json);
    let report = restore(target, &opts).await?;
    output::restore(a.common.json, &report);
    Ok(0)
}

async fn run_verify(a: VerifyArgs, file: FileConfig) -> Result<i32, Failure> {
    let target = open(a.target.target, &file)?;
    let opts = VerifyOptions {
        read_data: a.read_data,
        concurrency: concurrency(a.common.concurrency, &file),
        ..VerifyOptions::default()
    };
    let report = verify(target, &opts).await?;
    output::verify(a.common.json, &report);
    Ok(if report.is_ok() { 0 } else { 5 })
}

async fn run_status(a: StatusArgs, file: FileConfig) -> Result<i32, Failure> {
    let target = open(a.target.target, &file)?;
    let report = status(target).await?;
    output::status(a.json, &report);
    Ok(if report.exists { 0 } else { 8 })
}

fn concurrency(cli: Option<usize>, file: &FileConfig) -> usize {
    cli.or(file.concurrency).unwrap_or(4).max(1)
}

/// Storage options for callers that build targets without a config file (the demo).
pub fn default_storage() -> TargetOptions {
    TargetOptions::default()
}
