//! One function per subcommand: open the target, call the engine with the resolved settings,
//! print the result. `Ok` carries the exit code (non-zero when `verify` finds problems).

use std::sync::Arc;

use esbackup_backends::open_target;
use esbackup_engine::{
    backup, forget, list, restore, status, verify, BackupOptions, ForgetOptions, LockOptions,
    RestoreOptions, Target, VerifyOptions, Which,
};

use crate::args::{Cli, Command};
use crate::config::FileConfig;
use crate::exit::{Failure, DAMAGED, NO_BACKUP};
use crate::settings::Settings;
use crate::{output, progress};

/// Runs the command; returns whether output is JSON, and the exit code or failure.
pub async fn run(cli: Cli) -> (bool, Result<i32, Failure>) {
    let asked_json = wants_json(&cli.command);
    let settings = match FileConfig::load(cli.config.as_deref())
        .and_then(|file| Settings::resolve(&cli.command, file))
    {
        Ok(s) => s,
        Err(e) => return (asked_json, Err(e)),
    };
    let json = settings.json;
    let result = match cli.command {
        Command::Backup(_) => run_backup(&settings).await,
        Command::Restore(_) => run_restore(&settings).await,
        Command::Verify(_) => run_verify(&settings).await,
        Command::List(_) => run_list(&settings).await,
        Command::Status(_) => run_status(&settings).await,
        Command::Forget(_) => run_forget(&settings).await,
        Command::Demo(a) => run_demo(a, json).await,
    };
    (json, result)
}

/// `--json` (or `ESBACKUP_JSON`) as given on the command line, before the config is read.
fn wants_json(command: &Command) -> bool {
    let output = match command {
        Command::Backup(a) => &a.output,
        Command::Restore(a) => &a.output,
        Command::Verify(a) => &a.output,
        Command::List(a) => &a.output,
        Command::Status(a) => &a.output,
        Command::Forget(a) => &a.output,
        Command::Demo(a) => &a.output,
    };
    output.json.unwrap_or(false)
}

fn open(s: &Settings) -> Result<Arc<dyn Target>, Failure> {
    Ok(open_target(s.target()?, &s.storage)?)
}

fn lock_options(s: &Settings) -> LockOptions {
    LockOptions {
        stale_after: s.lock_stale,
        break_lock: s.break_lock,
        wait: s.lock_wait,
        ..LockOptions::default()
    }
}

async fn run_backup(s: &Settings) -> Result<i32, Failure> {
    let target = open(s)?;
    let mut opts = BackupOptions::new(s.db()?);
    opts.index = s.index.clone();
    opts.full = s.full;
    opts.dry_run = s.dry_run;
    opts.include_secondary_index = s.include_secondary_index;
    opts.concurrency = s.concurrency;
    opts.lock = lock_options(s);
    opts.retention = s.retention.clone();
    opts.progress = progress::for_terminal(s.quiet || s.json);
    let report = backup(target, &opts).await?;
    output::backup(s.json, &report);
    Ok(0)
}

async fn run_restore(s: &Settings) -> Result<i32, Failure> {
    let target = open(s)?;
    let mut opts = RestoreOptions::new(s.db()?);
    opts.index = s.index.clone();
    opts.point = s.point.clone();
    opts.force = s.force;
    opts.concurrency = s.concurrency.unwrap_or(opts.concurrency);
    opts.progress = progress::for_terminal(s.quiet || s.json);
    let report = restore(target, &opts).await?;
    output::restore(s.json, &report);
    Ok(0)
}

async fn run_verify(s: &Settings) -> Result<i32, Failure> {
    let target = open(s)?;
    let defaults = VerifyOptions::default();
    let opts = VerifyOptions {
        point: (s.point != Which::Latest).then(|| s.point.clone()),
        read_data: s.read_data,
        concurrency: s.concurrency.unwrap_or(defaults.concurrency),
    };
    let report = verify(target, &opts).await?;
    output::verify(s.json, &report);
    let strict_failure = s.strict && !report.mirror.is_empty();
    Ok(if report.is_ok() && !strict_failure {
        0
    } else {
        DAMAGED
    })
}

async fn run_list(s: &Settings) -> Result<i32, Failure> {
    let listing = list(open(s)?).await?;
    output::list(s.json, &listing);
    let damaged = listing.damaged().next().is_some();
    Ok(if damaged { DAMAGED } else { 0 })
}

async fn run_status(s: &Settings) -> Result<i32, Failure> {
    let report = status(open(s)?).await?;
    output::status(s.json, &report);
    Ok(match (report.exists, report.damaged.is_empty()) {
        (false, _) => NO_BACKUP,
        (true, false) => DAMAGED,
        (true, true) => 0,
    })
}

async fn run_forget(s: &Settings) -> Result<i32, Failure> {
    let opts = ForgetOptions {
        policy: s.keep.clone(),
        prune: s.prune,
        dry_run: s.dry_run,
        lock: lock_options(s),
    };
    let report = forget(open(s)?, &opts).await?;
    output::forget(s.json, &report);
    Ok(0)
}

#[cfg(feature = "demo")]
async fn run_demo(a: crate::args::DemoArgs, json: bool) -> Result<i32, Failure> {
    crate::demo::run(a, json).await
}

#[cfg(not(feature = "demo"))]
async fn run_demo(_: crate::args::DemoArgs, _: bool) -> Result<i32, Failure> {
    Err(Failure::usage(
        "this esbackup was built without the demo: cargo run --release -p esbackup --features demo -- demo",
    ))
}
