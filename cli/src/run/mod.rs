//! `esbackup run`: the long-running mode. One loop takes a restore point every `--every`,
//! copies the new points to `--copy-to` every `--copy-every`, applies the retention policy
//! every `--forget-every` and verifies every `--verify-every`,
//! one job at a time (runs never overlap, and each takes the location's lock as the commands
//! do). A failed job is logged, counted and retried with backoff ([`schedule`]); it never ends
//! the process. Signals: [`signals`]; metrics and health: [`crate::metrics`], [`http`].

mod http;
pub(crate) mod schedule;
mod settings;
mod signals;

use std::ffi::OsString;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use esbackup_engine::{copy, forget, status, verify, EngineError, ErrorKind, StatusReport, Stop};
use tokio::time::Instant;

use crate::args::RunArgs;
use crate::config::FileConfig;
use crate::exit::{self, Failure};
use crate::metrics::{Job, Metrics};
use crate::node::backup_beside;
use http::Watched;
use schedule::{read_share, Timetable};
use settings::RunSettings;
use signals::Signals;

/// How long a stopping run may take to end and release its lock before the process exits
/// anyway (the lock then goes stale; every point stays restorable).
const STOP_GRACE: Duration = Duration::from_secs(8);

/// Runs until SIGTERM or SIGINT; `argv` is parsed again on SIGHUP.
pub async fn run(a: RunArgs, file: FileConfig, argv: Vec<OsString>) -> Result<i32, Failure> {
    let stop = Stop::new();
    let mut signals = Signals::install(stop.clone())?;
    let mut settings = RunSettings::new(&a, &file, &stop).await?;
    let metrics = Arc::new(Metrics::new(Some(settings.db.clone())));
    let watched = Arc::new(Watched {
        metrics: metrics.clone(),
        within: Mutex::new(settings.healthy_within),
        started: SystemTime::now(),
        last_failure: Mutex::new(None),
    });
    if let Some(addr) = a.watch.metrics_addr {
        let bound = http::serve(addr, watched.clone()).await?;
        tracing::info!(address = %bound, "serving /metrics and /healthz on http://{bound}");
    }
    let mut runner = Runner {
        metrics,
        watched,
        stop,
        jobs: Jobs::new(&settings),
        verifies: 0,
    };
    runner.seed(&settings).await;
    loop {
        let next = runner.jobs.next_due();
        tokio::select! {
            _ = sleep_until(next) => {}
            _ = runner.stop.requested() => break,
            _ = signals.reload_requested() => {
                settings = reload(settings, &argv, &runner.stop, &mut runner.jobs, &runner.watched).await;
                continue;
            }
        }
        runner.due_jobs(&settings).await;
        if runner.stop.is_requested() {
            break;
        }
    }
    tracing::info!("stopped");
    Ok(0)
}

/// Sleeps until `next` (for ever when `None`).
async fn sleep_until(next: Option<Instant>) {
    match next {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The settings `argv` gives now (SIGHUP), or the old ones when they no longer parse.
async fn reload(
    old: RunSettings,
    argv: &[OsString],
    stop: &Stop,
    jobs: &mut Jobs,
    watched: &Watched,
) -> RunSettings {
    match settings::reread(argv, stop).await {
        Ok(new) => {
            jobs.retime(&new);
            *watched.within.lock().unwrap() = new.healthy_within;
            tracing::info!("SIGHUP: settings read again");
            new
        }
        Err(e) => {
            tracing::error!(
                error = %e.message,
                "SIGHUP: the settings no longer parse; keeping the previous ones"
            );
            old
        }
    }
}

/// The jobs' timetables and their last starts.
struct Jobs {
    backup: Timetable,
    forget: Timetable,
    verify: Timetable,
    copy: Timetable,
    last_start: [Option<Instant>; 4],
}

/// The interval of the copy job: 0 (off) without `--copy-to`.
fn copy_every(s: &RunSettings) -> Duration {
    s.copy.as_ref().map_or(Duration::ZERO, |_| s.copy_every)
}

impl Jobs {
    fn new(s: &RunSettings) -> Jobs {
        let now = Instant::now();
        let forget_every = s.forget.as_ref().map_or(Duration::ZERO, |_| s.forget_every);
        Jobs {
            // A point at once (or at the first cron time); the first forget and verify an
            // interval later.
            backup: match &s.cron {
                Some(cron) => Timetable::on_cron(cron.clone()),
                None => Timetable::new(s.every, now),
            },
            forget: Timetable::new(forget_every, now + forget_every),
            verify: Timetable::new(s.verify_every, now + s.verify_every),
            // The first copy once the first point is there.
            copy: Timetable::new(copy_every(s), now),
            last_start: [None; 4],
        }
    }

    fn table(&mut self, job: Job) -> &mut Timetable {
        match job {
            Job::Backup => &mut self.backup,
            Job::Forget => &mut self.forget,
            Job::Verify => &mut self.verify,
            Job::Copy => &mut self.copy,
        }
    }

    fn next_due(&self) -> Option<Instant> {
        [&self.backup, &self.forget, &self.verify, &self.copy]
            .iter()
            .filter_map(|t| t.next())
            .min()
    }

    fn retime(&mut self, s: &RunSettings) {
        let forget_every = s.forget.as_ref().map_or(Duration::ZERO, |_| s.forget_every);
        let [b, f, v, c] = self.last_start;
        match &s.cron {
            Some(cron) => self.backup = Timetable::on_cron(cron.clone()),
            None => self.backup.set_every(s.every, b),
        }
        self.forget.set_every(forget_every, f);
        self.verify.set_every(s.verify_every, v);
        self.copy.set_every(copy_every(s), c);
    }
}

/// The loop's state between jobs.
struct Runner {
    metrics: Arc<Metrics>,
    watched: Arc<Watched>,
    stop: Stop,
    jobs: Jobs,
    /// Scheduled verifies so far (which share of the objects the next reads back).
    verifies: u64,
}

impl Runner {
    /// The location's figures before the first run (a point stored before this process
    /// started counts for /healthz).
    async fn seed(&self, s: &RunSettings) {
        if let Some(report) = self.refresh_location(s).await {
            self.metrics.seed_last_success(&report);
        }
    }

    /// Runs every job that is due: backup first, then the copy of what it stored.
    async fn due_jobs(&mut self, s: &RunSettings) {
        for job in [Job::Backup, Job::Copy, Job::Forget, Job::Verify] {
            if self.stop.is_requested() {
                return;
            }
            if self.jobs.table(job).is_due(Instant::now()) {
                self.run_job(job, s).await;
            }
        }
    }

    async fn run_job(&mut self, job: Job, s: &RunSettings) {
        let started = (Instant::now(), SystemTime::now());
        self.jobs.last_start[job as usize] = Some(started.0);
        let ok = match job {
            Job::Backup => self.backup(s, started.1).await,
            Job::Forget => self.forget(s, started.1).await,
            Job::Verify => self.verify(s, started.1).await,
            Job::Copy => self.copy(s, started.1).await,
        };
        match ok {
            Ok(()) => {
                self.jobs.table(job).succeeded(started.0);
                *self.watched.last_failure.lock().unwrap() = None;
            }
            Err(e) => self.failed(job, started.0, e),
        }
        if let Some(path) = &s.metrics_file {
            if let Err(e) = self.metrics.write_file(path) {
                tracing::warn!(error = %e, "could not write --metrics-file {}", path.display());
            }
        }
    }

    fn failed(&mut self, job: Job, started: Instant, e: EngineError) {
        if self.stop.is_requested() {
            tracing::info!(command = ?job, "{}", e);
            return;
        }
        let wait = self.jobs.table(job).failed(started);
        tracing::error!(
            command = ?job,
            error = %e,
            exit_code = exit::code(e.kind()),
            retry_in_secs = wait.as_secs(),
            "{job:?} failed; retrying in {}",
            humantime::format_duration(Duration::from_secs(wait.as_secs()))
        );
        *self.watched.last_failure.lock().unwrap() = Some(e.to_string());
    }

    async fn backup(&self, s: &RunSettings, started: SystemTime) -> Result<(), EngineError> {
        let run = backup_beside(s.node.as_ref(), s.target.clone(), &s.backup);
        let (result, scavenge) = self.bounded_pair(run).await;
        self.metrics.backup_ended(started, &result);
        self.metrics.scavenge(scavenge.as_ref());
        let report = result?;
        self.refresh_location(s).await;
        let (lag_bytes, lag_secs) = self.metrics.lag();
        let point = report.point.as_deref().unwrap_or("");
        tracing::info!(
            command = "backup",
            point,
            uploaded_bytes = report.uploaded.bytes,
            stored_files = report.stored.files,
            duration_secs = report.duration_secs,
            writer = report.checkpoints.writer,
            lag_bytes,
            lag_secs,
            "restore point {point} stored"
        );
        Ok(())
    }

    async fn forget(&self, s: &RunSettings, started: SystemTime) -> Result<(), EngineError> {
        let Some(opts) = &s.forget else { return Ok(()) };
        let result = self.bounded(forget(s.target.clone(), opts)).await;
        self.metrics.forget_ended(started, &result);
        let report = result?;
        self.refresh_location(s).await;
        let forgotten = report.forgotten.len();
        tracing::info!(
            command = "forget",
            forgotten,
            pruned_bytes = report.pruned_bytes,
            "{forgotten} point(s) forgotten"
        );
        Ok(())
    }

    async fn verify(&mut self, s: &RunSettings, started: SystemTime) -> Result<(), EngineError> {
        let mut opts = s.verify.clone();
        opts.read_data_subset = read_share(s.read_data_over, s.verify_every, self.verifies);
        opts.read_data = opts.read_data_subset.is_some();
        self.verifies += 1;
        let stop = self.stop.clone();
        let run = verify(s.target.clone(), &opts);
        let result = self
            .bounded(async move { stop.or_interrupted("the verify", run).await })
            .await;
        self.metrics.verify_ended(started, &result);
        let report = result?;
        let problems = report.problems().len();
        if problems > 0 {
            return Err(EngineError::damaged(format!(
                "verify found {problems} problem(s) (run `esbackup verify` for the list)"
            )));
        }
        let points = report.points.len();
        tracing::info!(
            command = "verify",
            points,
            read_bytes = report.read_bytes,
            "{points} point(s) intact"
        );
        Ok(())
    }

    async fn copy(&self, s: &RunSettings, started: SystemTime) -> Result<(), EngineError> {
        let Some((to, opts)) = &s.copy else {
            return Ok(());
        };
        let result = self.bounded(copy(s.target.clone(), to.clone(), opts)).await;
        self.metrics.copy_ended(started, &result);
        let report = result?;
        let (copied, to) = (report.copied.len(), &report.to);
        tracing::info!(
            command = "copy",
            to = %to,
            copied,
            sent_bytes = report.bytes_sent,
            "{copied} point(s) copied to {to}"
        );
        Ok(())
    }

    /// `work`, but once a stop is requested, no longer than [`STOP_GRACE`] (a store that
    /// does not answer must not keep the process from exiting).
    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        self.bounded_pair(async { (work.await, ()) }).await.0
    }

    /// [`Runner::bounded`] for work that also reports something beside its result.
    async fn bounded_pair<T, R: Default>(
        &self,
        work: impl Future<Output = (Result<T, EngineError>, R)>,
    ) -> (Result<T, EngineError>, R) {
        tokio::pin!(work);
        tokio::select! {
            done = &mut work => done,
            _ = self.stop.requested() => match tokio::time::timeout(STOP_GRACE, work).await {
                Ok(done) => done,
                Err(_) => (Err(EngineError::new(
                    ErrorKind::Interrupted,
                    "stopped without waiting for the run to release its lock (the store did not answer in time; the next run takes the lock over once it is stale)",
                )), R::default()),
            },
        }
    }

    /// The location's figures (after a run changed it), and the status they come from.
    async fn refresh_location(&self, s: &RunSettings) -> Option<StatusReport> {
        match status(s.target.clone()).await {
            Ok(report) => {
                self.metrics.location(&report);
                Some(report)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the location's status");
                None
            }
        }
    }
}
