//! What `run` works with, resolved from its options and the config file: the target, each
//! job's engine options and the schedule. Read again on SIGHUP ([`reread`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use esbackup_engine::{BackupOptions, CopyOptions, ForgetOptions, Stop, Target, VerifyOptions};

use crate::args::{self, Command, RunArgs};
use crate::config::FileConfig;
use crate::exit::Failure;
use crate::node::Node;
use crate::password::{open_url, Asking};
use crate::run::schedule;

/// `run`'s settings.
pub struct RunSettings {
    pub target: Arc<dyn Target>,
    pub db: PathBuf,
    pub backup: BackupOptions,
    /// `None` without a retention rule (then nothing is ever forgotten).
    pub forget: Option<ForgetOptions>,
    pub verify: VerifyOptions,
    /// `--copy-to`: the second location, and how the new points go there.
    pub copy: Option<(Arc<dyn Target>, CopyOptions)>,
    pub every: Duration,
    /// `--cron`: the backups' times, instead of `every`.
    pub cron: Option<croner::Cron>,
    pub forget_every: Duration,
    pub verify_every: Duration,
    pub copy_every: Duration,
    pub read_data_over: Duration,
    pub healthy_within: Duration,
    pub metrics_file: Option<PathBuf>,
    /// `--node-url`: the node whose scavenge each backup stops.
    pub node: Option<Node>,
}

impl RunSettings {
    /// From `run`'s options over the config `file`; every run can be stopped through `stop`.
    pub async fn new(a: &RunArgs, file: &FileConfig, stop: &Stop) -> Result<RunSettings, Failure> {
        let cron = a.schedule.cron.clone();
        let every = match &cron {
            Some(cron) => schedule::cron_interval(cron)
                .ok_or_else(|| Failure::usage("--cron: the expression never matches"))?,
            None => a.schedule.every.0,
        };
        if every.is_zero() {
            return Err(Failure::usage("--every must be more than 0 (e.g. 5m)"));
        }
        let db = a.db.folder()?.to_path_buf();
        let mut backup = BackupOptions::new(&db);
        backup.index = a.db.index.clone();
        backup.concurrency = a.storing.transfer.concurrency;
        backup.lock = a.storing.lock.options();
        backup.stop = stop.clone();
        // The retention policy is the forget job's, on its own schedule.
        backup.retention = None;
        // The config's `retention:` prunes unless it says `prune: false`, as after a backup.
        let (policy, prune) = match (a.keep.is_empty(), file.retention()) {
            (true, Some(r)) => (r.policy, r.prune),
            _ => (a.keep.clone(), a.prune),
        };
        let forget = (!policy.is_empty()).then(|| ForgetOptions {
            policy,
            prune,
            dry_run: false,
            lock: a.storing.lock.options(),
            stop: stop.clone(),
        });
        let defaults = VerifyOptions::default();
        let verify = VerifyOptions {
            concurrency: a
                .storing
                .transfer
                .concurrency
                .unwrap_or(defaults.concurrency),
            ..defaults
        };
        let copy = match &a.copy_to {
            Some(url) => {
                let opts = CopyOptions {
                    lock: a.storing.lock.options(),
                    stop: stop.clone(),
                    ..CopyOptions::default()
                };
                let password = crate::password::resolve(
                    a.copy_to_password_command.as_deref(),
                    a.copy_to_password_file.as_deref(),
                    "ESBACKUP_COPY_TO_PASSWORD",
                )?
                .or(a.target.password.password()?);
                let to = open_url(url, password.as_ref(), file, Asking::Never).await?;
                Some((to, opts))
            }
            None => None,
        };
        let password = a.target.password.password()?;
        let target = open_url(a.target.url()?, password.as_ref(), file, Asking::Never).await?;
        Ok(RunSettings {
            target,
            copy,
            db,
            backup,
            forget,
            verify,
            every,
            cron,
            forget_every: a.schedule.forget_every.0,
            verify_every: a.schedule.verify_every.0,
            copy_every: a.schedule.copy_every.0,
            read_data_over: a.schedule.read_data_over.0,
            healthy_within: a.watch.healthy_within.map_or(every * 3, |w| w.0),
            metrics_file: a.storing.metrics.metrics_file.clone(),
            node: Node::from_args(&a.storing.node)?,
        })
    }
}

/// The settings `argv` gives with the config file as it is now.
pub async fn reread(argv: &[OsString], stop: &Stop) -> Result<RunSettings, Failure> {
    let cli =
        args::parse(args::command(), argv).map_err(|e| Failure::usage(args::first_line(&e)))?;
    let (command, file) = crate::settings::resolve(&cli, argv)?;
    match command {
        Command::Run(a) => RunSettings::new(&a, &file, stop).await,
        _ => Err(Failure::usage("not a `run` command line")),
    }
}
