//! One function per subcommand: open the target, call the engine with the resolved settings,
//! print the result. `Ok` carries the exit code (non-zero when `verify` finds problems).

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use crate::password::{open_url, Asking};
use esbackup_engine::{
    copy, forget, list, restore, status, verify, BackupOptions, CopyOptions, ForgetOptions,
    RestoreOptions, Target, VerifyOptions, Which,
};

use crate::args::LogArgs;
use crate::args::{
    BackupArgs, Cli, Command, CopyArgs, ForgetArgs, ListArgs, MetricsFile, RestoreArgs, StatusArgs,
    VerifyArgs,
};
use crate::config::FileConfig;
use crate::exit::{Failure, DAMAGED, NO_BACKUP};
use crate::metrics::Metrics;
use crate::node::{backup_beside, Node};
use crate::{output, progress, settings};

/// Runs the command `argv` gave (parsed first as `cli`, without the config file); returns
/// whether output is JSON, and the exit code or failure.
pub async fn run(cli: Cli, argv: &[OsString]) -> (bool, Result<i32, Failure>) {
    let (command, file) = match settings::resolve(&cli, argv) {
        Ok(resolved) => resolved,
        Err(e) => return (wants_json(&cli.command), Err(e)),
    };
    let json = wants_json(&command);
    let result = match command {
        Command::Backup(a) => run_backup(&a, &file).await,
        Command::Restore(a) => run_restore(&a, &file).await,
        Command::Verify(a) => run_verify(&a, &file).await,
        Command::List(a) => run_list(&a, &file).await,
        Command::Status(a) => run_status(&a, &file).await,
        Command::Forget(a) => run_forget(&a, &file).await,
        Command::Copy(a) => run_copy(&a, &file).await,
        Command::Init(a) => crate::keys::init(&a, &file).await,
        Command::Key(a) => crate::keys::key(&a, &file).await,
        Command::Log(a) => run_log(&a, &file).await,
        Command::Run(a) => crate::run::run(*a, file, argv.to_vec()).await,
        Command::Demo(a) => run_demo(a, json).await,
        Command::Completions { shell } => print_completions(shell),
        Command::Man => print_man_page(),
    };
    (json, result)
}

/// Whether `--json` (or `ESBACKUP_JSON`, or `json:` in the file) asks for JSON output.
fn wants_json(command: &Command) -> bool {
    let output = match command {
        Command::Backup(a) => &a.output,
        Command::Restore(a) => &a.output,
        Command::Verify(a) => &a.output,
        Command::List(a) => &a.output,
        Command::Status(a) => &a.output,
        Command::Forget(a) => &a.output,
        Command::Copy(a) => &a.output,
        Command::Init(a) => &a.output,
        Command::Key(a) => a.output(),
        Command::Demo(a) => &a.output,
        // JSON lines, one per record (`output::log`).
        Command::Log(a) => return a.json,
        // Its lines are logs (--log-format json); the others print a script or a page.
        Command::Run(_) | Command::Completions { .. } | Command::Man => return false,
    };
    output.json
}

pub use crate::password::open;

async fn run_backup(a: &BackupArgs, file: &FileConfig) -> Result<i32, Failure> {
    let target = open(&a.target, file).await?;
    let mut opts = BackupOptions::new(a.db.folder()?);
    opts.index = a.db.index.clone();
    opts.full = a.full;
    opts.dry_run = a.dry_run;
    opts.include_secondary_index = a.include_secondary_index;
    opts.concurrency = a.storing.transfer.concurrency;
    opts.lock = a.storing.lock.options();
    opts.retention = file.retention();
    opts.progress = progress::for_terminal(a.output.quiet || a.output.json);
    let node = Node::from_args(&a.storing.node)?;
    let started = SystemTime::now();
    let (result, scavenge) = backup_beside(node.as_ref(), target.clone(), &opts).await;
    let place = (Some(opts.db.clone()), target);
    write_metrics(&a.storing.metrics, place, result.is_ok(), |m| {
        m.backup_ended(started, &result);
        m.scavenge(scavenge.as_ref());
    })
    .await;
    output::backup(a.output.json, &result?);
    Ok(0)
}

async fn run_restore(a: &RestoreArgs, file: &FileConfig) -> Result<i32, Failure> {
    let point = a.point.which()?;
    let target = open(&a.target, file).await?;
    let mut opts = RestoreOptions::new(a.db.folder()?);
    opts.index = a.db.index.clone();
    opts.point = point;
    opts.upto = a.upto.upto()?;
    opts.force = a.force;
    opts.concurrency = a.transfer.concurrency.unwrap_or(opts.concurrency);
    opts.progress = progress::for_terminal(a.output.quiet || a.output.json);
    let report = restore(target, &opts).await?;
    output::restore(a.output.json, &report);
    Ok(0)
}

async fn run_verify(a: &VerifyArgs, file: &FileConfig) -> Result<i32, Failure> {
    let point = a.point.which()?;
    let target = open(&a.target, file).await?;
    let defaults = VerifyOptions::default();
    let opts = VerifyOptions {
        point: (point != Which::Latest).then_some(point),
        read_data: a.read_data,
        read_data_subset: a.read_data_subset,
        concurrency: a.transfer.concurrency.unwrap_or(defaults.concurrency),
    };
    let started = SystemTime::now();
    let result = verify(target.clone(), &opts).await;
    let record = |m: &Metrics| m.verify_ended(started, &result);
    write_metrics(&a.metrics, (None, target), false, record).await;
    let report = result?;
    output::verify(a.output.json, &report);
    let strict_failure = a.strict && !report.mirror.is_empty();
    Ok(if report.is_ok() && !strict_failure {
        0
    } else {
        DAMAGED
    })
}

async fn run_list(a: &ListArgs, file: &FileConfig) -> Result<i32, Failure> {
    let listing = list(open(&a.target, file).await?).await?;
    output::list(a.output.json, &listing);
    let damaged = listing.damaged().next().is_some();
    Ok(if damaged { DAMAGED } else { 0 })
}

async fn run_status(a: &StatusArgs, file: &FileConfig) -> Result<i32, Failure> {
    let report = status(open(&a.target, file).await?).await?;
    output::status(a.output.json, &report);
    Ok(match (report.exists, report.damaged.is_empty()) {
        (false, _) => NO_BACKUP,
        (true, false) => DAMAGED,
        (true, true) => 0,
    })
}

async fn run_forget(a: &ForgetArgs, file: &FileConfig) -> Result<i32, Failure> {
    let opts = ForgetOptions {
        policy: file.policy_or(&a.keep),
        prune: a.prune,
        dry_run: a.dry_run,
        lock: a.lock.options(),
        stop: Default::default(),
    };
    let target = open(&a.target, file).await?;
    let started = SystemTime::now();
    let result = forget(target.clone(), &opts).await;
    let record = |m: &Metrics| m.forget_ended(started, &result);
    write_metrics(&a.metrics, (None, target), false, record).await;
    output::forget(a.output.json, &result?);
    Ok(0)
}

async fn run_copy(a: &CopyArgs, file: &FileConfig) -> Result<i32, Failure> {
    let (from, to) = a.urls()?;
    let defaults = CopyOptions::default();
    let opts = CopyOptions {
        points: a.selection(),
        dry_run: a.dry_run,
        concurrency: a.transfer.concurrency.unwrap_or(defaults.concurrency),
        lock: a.lock.options(),
        spool: a.spool.clone().unwrap_or(defaults.spool),
        progress: progress::for_terminal(a.output.quiet || a.output.json),
        stop: Default::default(),
    };
    let to_password = a.password.password()?;
    let from_password = crate::password::resolve(
        a.from_password_command.as_deref(),
        a.from_password_file.as_deref(),
        "ESBACKUP_FROM_PASSWORD",
    )?
    .or(a.password.password()?);
    let (from, to) = (
        open_url(from, from_password.as_ref(), file, Asking::AtTerminal).await?,
        open_url(to, to_password.as_ref(), file, Asking::AtTerminal).await?,
    );
    let started = SystemTime::now();
    let result = copy(from, to.clone(), &opts).await;
    let record = |m: &Metrics| m.copy_ended(started, &result);
    write_metrics(&a.metrics, (None, to), false, record).await;
    output::copy(a.output.json, &result?);
    Ok(0)
}

/// `log`: the records of the point, printed as they are read (a failure, too, as a JSON line).
async fn run_log(a: &LogArgs, file: &FileConfig) -> Result<i32, Failure> {
    let listing = async {
        let point = a.point.which()?;
        let filter = a.filter(chrono::Utc::now())?;
        Ok(esbackup_engine::log::records(open(&a.target, file).await?, &point, filter).await?)
    };
    match listing.await {
        Ok(listing) => output::log(a.json, listing).await,
        Err(f) => output::log_failed(a.json, f),
    }
}

/// `--metrics-file`: the figures `record` gives of the command that ended, with what the
/// location holds now, written to the file (a warning when that fails: the command's own
/// result stands). `stored`: the command stored the newest point just now.
async fn write_metrics(
    file: &MetricsFile,
    (db, target): (Option<PathBuf>, Arc<dyn Target>),
    stored: bool,
    record: impl FnOnce(&Metrics),
) {
    let Some(path) = &file.metrics_file else {
        return;
    };
    let metrics = Metrics::new(db);
    record(&metrics);
    match status(target).await {
        Ok(report) => {
            metrics.location(&report);
            if !stored {
                metrics.seed_last_success(&report);
            }
        }
        Err(e) => tracing::warn!("--metrics-file: could not read the location's status: {e}"),
    }
    if let Err(e) = metrics.write_file(path) {
        tracing::warn!("could not write --metrics-file {}: {e}", path.display());
    }
}

fn print_completions(shell: clap_complete::Shell) -> Result<i32, Failure> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut crate::args::command(), "esbackup", &mut script);
    print_all(&script, "the completion script")
}

fn print_man_page() -> Result<i32, Failure> {
    let mut page = Vec::new();
    let rendered = clap_mangen::Man::new(crate::args::command()).render(&mut page);
    rendered.expect("rendering into memory");
    print_all(&page, "the manual page")
}

/// Writes `bytes` on stdout; a reader that stops early (`| head`) is no failure.
fn print_all(bytes: &[u8], what: &str) -> Result<i32, Failure> {
    use std::io::Write;
    match std::io::stdout().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure {
            code: crate::exit::code(esbackup_engine::ErrorKind::LocalIo),
            message: format!("writing {what}: {e}"),
        }),
        _ => Ok(0),
    }
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
