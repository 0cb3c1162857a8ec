//! The figures `run` serves on `/metrics` and the one-shot commands write with
//! `--metrics-file`: Prometheus names in base units (`_seconds`, `_bytes`, counters
//! `_total`), kept and encoded by prometheus-client. The README's "Metrics" table lists them.
//!
//! The lag (how far the newest point is behind the node's writer) is worked out when the
//! figures are encoded, from the node's `writer.chk` and the newest point.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use esbackup_engine::{
    BackupReport, CopyReport, EngineError, ForgetReport, PointSummary, StatusReport, VerifyReport,
};
use esbackup_node::ScavengeReport;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// A gauge of seconds (times, durations).
type Seconds = Gauge<f64, AtomicU64>;

/// Which command a figure is about.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Job {
    Backup,
    Forget,
    Verify,
    Copy,
}

impl Job {
    /// The command's name (the `command` label).
    pub fn name(self) -> &'static str {
        match self {
            Job::Backup => "backup",
            Job::Forget => "forget",
            Job::Verify => "verify",
            Job::Copy => "copy",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    command: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    command: &'static str,
    /// `success` or `failure`.
    result: &'static str,
}

/// The newest point, for the lag.
#[derive(Clone, Debug)]
struct Newest {
    writer: i64,
    time: DateTime<Utc>,
}

/// Every figure of one esbackup process.
#[derive(Default)]
pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    last_run: Family<JobLabel, Seconds>,
    last_duration: Family<JobLabel, Seconds>,
    last_result: Family<JobLabel, Gauge>,
    last_success: Seconds,
    uploaded_bytes: Counter,
    uploaded_objects: Counter,
    points: Gauge,
    stored_bytes: Gauge,
    stored_objects: Gauge,
    oldest_point: Seconds,
    newest_point: Seconds,
    lag_bytes: Gauge,
    lag_seconds: Seconds,
    verify_last_success: Seconds,
    verify_problems: Gauge,
    verify_read_bytes: Counter,
    forgotten_points: Counter,
    pruned_bytes: Counter,
    scavenges_stopped: Counter,
    scavenges_restarted: Counter,
    scavenge_left_stopped: Gauge,
    /// The database whose `writer.chk` the lag is measured against.
    db: Option<PathBuf>,
    newest: Mutex<Option<Newest>>,
}

impl Metrics {
    /// The figures of a process backing up `db` (the lag is measured against its
    /// `writer.chk`; none without it).
    pub fn new(db: Option<PathBuf>) -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("esbackup"),
            db,
            ..Metrics::default()
        };
        m.register();
        m
    }

    /// Names and helps (the README's "Metrics" table lists the same).
    fn register(&mut self) {
        let r = &mut self.registry;
        let (s, b) = (Unit::Seconds, Unit::Bytes);
        r.register(
            "runs",
            "Runs ended, by command and result",
            self.runs.clone(),
        );
        let help = "When the last run of each command ended";
        r.register_with_unit("last_run_timestamp", help, s.clone(), self.last_run.clone());
        let help = "How long the last run of each command took";
        r.register_with_unit(
            "last_run_duration",
            help,
            s.clone(),
            self.last_duration.clone(),
        );
        let help = "1 when the last run of each command succeeded, else 0";
        r.register("last_run_success", help, self.last_result.clone());
        let help = "When the newest restore point was stored";
        r.register_with_unit(
            "last_success_timestamp",
            help,
            s.clone(),
            self.last_success.clone(),
        );
        let help = "Bytes sent to the store by backups";
        r.register_with_unit("uploaded", help, b.clone(), self.uploaded_bytes.clone());
        let help = "Objects written to the store by backups";
        r.register("uploaded_objects", help, self.uploaded_objects.clone());
        self.register_location();
    }

    /// The location's figures, the lag, verifies, retention and the node's scavenges.
    fn register_location(&mut self) {
        let r = &mut self.registry;
        let (s, b) = (Unit::Seconds, Unit::Bytes);
        r.register(
            "points",
            "Restore points held at the location",
            self.points.clone(),
        );
        let help = "Bytes stored at the location";
        r.register_with_unit("stored", help, b.clone(), self.stored_bytes.clone());
        let help = "Objects stored at the location";
        r.register("stored_objects", help, self.stored_objects.clone());
        let help = "Capture time of the oldest restore point";
        r.register_with_unit(
            "oldest_point_timestamp",
            help,
            s.clone(),
            self.oldest_point.clone(),
        );
        let help = "Capture time of the newest restore point";
        r.register_with_unit(
            "newest_point_timestamp",
            help,
            s.clone(),
            self.newest_point.clone(),
        );
        let help = "Log bytes the node wrote that the newest point lacks";
        r.register_with_unit("lag", help, b.clone(), self.lag_bytes.clone());
        let help = "How long ago the newest point was taken, when the node wrote since (else 0)";
        r.register_with_unit("lag", help, s.clone(), self.lag_seconds.clone());
        let help = "When a verify last found every point intact";
        let verified = self.verify_last_success.clone();
        r.register_with_unit("verify_last_success_timestamp", help, s, verified);
        let help = "Problems the last verify found (damaged points, missing or wrong objects)";
        r.register("verify_problems", help, self.verify_problems.clone());
        let help = "Bytes read back and hashed by verifies";
        r.register_with_unit(
            "verify_read",
            help,
            b.clone(),
            self.verify_read_bytes.clone(),
        );
        let help = "Restore points forgotten by the retention policy";
        r.register("forgotten_points", help, self.forgotten_points.clone());
        r.register_with_unit(
            "pruned",
            "Bytes deleted by prunes",
            b,
            self.pruned_bytes.clone(),
        );
        let help = "Scavenges stopped on the node for a backup (--node-url)";
        r.register("scavenges_stopped", help, self.scavenges_stopped.clone());
        let help = "Scavenges started again after a backup";
        r.register(
            "scavenges_restarted",
            help,
            self.scavenges_restarted.clone(),
        );
        let help = "1 while a scavenge or auto-scavenge this stopped could not be started again";
        r.register(
            "scavenge_left_stopped",
            help,
            self.scavenge_left_stopped.clone(),
        );
    }

    /// A run of `command` that started at `started` ended now, ok or not.
    fn ended(&self, command: &'static str, started: SystemTime, ok: bool) {
        let now = SystemTime::now();
        let label = JobLabel { command };
        let result = if ok { "success" } else { "failure" };
        self.runs
            .get_or_create(&RunLabels { command, result })
            .inc();
        self.last_run.get_or_create(&label).set(unix(now));
        let took = now.duration_since(started).unwrap_or(Duration::ZERO);
        self.last_duration
            .get_or_create(&label)
            .set(took.as_secs_f64());
        self.last_result.get_or_create(&label).set(ok as i64);
    }

    pub fn backup_ended(&self, started: SystemTime, result: &Result<BackupReport, EngineError>) {
        self.ended(Job::Backup.name(), started, result.is_ok());
        let Ok(report) = result else { return };
        self.uploaded_bytes.inc_by(report.uploaded.bytes);
        self.uploaded_objects.inc_by(report.uploaded.objects);
        if report.point.is_some() {
            self.last_success.set(unix(SystemTime::now()));
        }
    }

    /// What a backup did to the node's scavenge (`None`: no `--node-url`).
    pub fn scavenge(&self, report: Option<&ScavengeReport>) {
        let Some(report) = report else { return };
        self.scavenges_stopped
            .inc_by(report.stopped.is_some() as u64);
        self.scavenges_restarted
            .inc_by(report.restarted.is_some() as u64);
        self.scavenge_left_stopped.set(report.left_stopped() as i64);
    }

    pub fn forget_ended(&self, started: SystemTime, result: &Result<ForgetReport, EngineError>) {
        self.ended(Job::Forget.name(), started, result.is_ok());
        if let Ok(report) = result {
            self.forgotten_points.inc_by(report.forgotten.len() as u64);
            self.pruned_bytes.inc_by(report.pruned_bytes);
        }
    }

    pub fn verify_ended(&self, started: SystemTime, result: &Result<VerifyReport, EngineError>) {
        let intact = result.as_ref().is_ok_and(|r| r.is_ok());
        self.ended(Job::Verify.name(), started, intact);
        let Ok(report) = result else { return };
        let problems: usize = report.points.iter().map(|p| p.problems.len()).sum();
        self.verify_problems
            .set((problems + report.damaged.len()) as i64);
        self.verify_read_bytes.inc_by(report.read_bytes);
        if intact {
            self.verify_last_success.set(unix(SystemTime::now()));
        }
    }

    /// A `copy` ended (the location figures are then the destination's).
    pub fn copy_ended(&self, started: SystemTime, result: &Result<CopyReport, EngineError>) {
        self.ended(Job::Copy.name(), started, result.is_ok());
    }

    /// What the location holds now.
    pub fn location(&self, status: &StatusReport) {
        self.points.set(status.points as i64);
        self.stored_bytes.set(status.stored_bytes as i64);
        self.stored_objects.set(status.stored_objects as i64);
        let time = |p: &Option<PointSummary>| p.as_ref().map_or(0.0, |p| seconds_of(p.time));
        self.oldest_point.set(time(&status.oldest));
        self.newest_point.set(time(&status.newest));
        let newest = status.newest.as_ref().map(|p| Newest {
            writer: p.writer,
            time: p.time,
        });
        *self.newest.lock().unwrap() = newest;
    }

    /// When the newest point was stored, as far as this process knows (a previous process's
    /// point counts: `run` seeds it from the location at start).
    pub fn last_success(&self) -> Option<SystemTime> {
        let secs = self.last_success.get();
        (secs > 0.0).then(|| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs))
    }

    /// Seeds the last success from the newest point's capture time (nothing stored yet by this
    /// process).
    pub fn seed_last_success(&self, status: &StatusReport) {
        if let (Some(p), None) = (&status.newest, self.last_success()) {
            self.last_success.set(seconds_of(p.time));
        }
    }

    /// The lag now: the node's `writer.chk` against the newest point.
    fn refresh_lag(&self) {
        let Some(newest) = self.newest.lock().unwrap().clone() else {
            return;
        };
        let Some(writer) = self.db.as_deref().and_then(read_writer) else {
            return;
        };
        let behind = (writer - newest.writer).max(0);
        self.lag_bytes.set(behind);
        let age = (Utc::now() - newest.time).num_milliseconds().max(0) as f64 / 1000.0;
        self.lag_seconds.set(if behind > 0 { age } else { 0.0 });
    }

    /// The lag now, in bytes and seconds (see the `lag` metrics).
    pub fn lag(&self) -> (i64, f64) {
        self.refresh_lag();
        (self.lag_bytes.get(), self.lag_seconds.get())
    }

    /// The OpenMetrics text format (what Prometheus asks for).
    pub fn encode(&self) -> String {
        self.refresh_lag();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }

    /// The Prometheus text format 0.0.4 (what node_exporter's textfile collector and
    /// `promtool check metrics` read).
    pub fn encode_classic(&self) -> String {
        classic(&self.encode())
    }

    /// Writes [`Metrics::encode_classic`] to `path` atomically (a temporary file renamed over
    /// it), as node_exporter's textfile collector needs.
    pub fn write_file(&self, path: &Path) -> std::io::Result<()> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, self.encode_classic())?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }

    /// Whether a point was stored within `within`: `(healthy, why)`. Before any point, the
    /// process's own start counts, so that a first full backup has `within` to finish.
    pub fn health(&self, within: Duration, started: SystemTime) -> (bool, String) {
        let now = SystemTime::now();
        let since = |t: SystemTime| now.duration_since(t).unwrap_or(Duration::ZERO);
        let Some(last) = self.last_success() else {
            let waited = since(started);
            let ok = waited <= within;
            return (
                ok,
                format!(
                    "no restore point stored yet; started {} ago (threshold {})",
                    human(waited),
                    human(within)
                ),
            );
        };
        let age = since(last);
        let ok = age <= within;
        let verdict = if ok { "ok" } else { "too old" };
        (
            ok,
            format!(
                "{verdict}: the newest point was stored {} ago (threshold {})",
                human(age),
                human(within)
            ),
        )
    }
}

/// OpenMetrics text as the Prometheus text format 0.0.4: a counter family `x` is named by its
/// sample `x_total` there, and `# UNIT` and `# EOF` lines do not exist.
fn classic(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find(|p| line.starts_with(p));
        match meta.map(|p| (p, &line[p.len()..])) {
            Some((p, rest)) if counters.iter().any(|c| rest.split(' ').next() == Some(c)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(&format!("{p}{name}_total {tail}\n"));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The node's writer checkpoint, if `db/writer.chk` can be read.
fn read_writer(db: &Path) -> Option<i64> {
    let bytes = std::fs::read(db.join("writer.chk")).ok()?;
    Some(i64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn seconds_of(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// `1m 30s`, to the second.
fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_format_names_counters_by_their_samples_and_drops_units() {
        let m = Metrics::new(None);
        m.ended(Job::Backup.name(), SystemTime::now(), true);
        let text = m.encode_classic();
        assert!(
            text.contains("# HELP esbackup_runs_total Runs ended"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE esbackup_runs_total counter\n"),
            "{text}"
        );
        assert!(text.contains("esbackup_runs_total{command=\"backup\",result=\"success\"} 1\n"));
        assert!(
            text.contains("# TYPE esbackup_points gauge\n"),
            "gauges keep their names"
        );
        assert!(
            !text.contains("# UNIT") && !text.contains("# EOF"),
            "{text}"
        );
    }

    #[test]
    fn health_turns_bad_once_the_newest_point_is_older_than_the_threshold() {
        let m = Metrics::new(None);
        let hour = Duration::from_secs(3600);
        let (ok, why) = m.health(hour, SystemTime::now());
        assert!(
            ok,
            "a new process has the threshold to store its first point: {why}"
        );
        let (ok, why) = m.health(hour, SystemTime::now() - 2 * hour);
        assert!(!ok && why.contains("no restore point stored yet"), "{why}");
        m.last_success.set(unix(SystemTime::now() - 2 * hour));
        let (ok, why) = m.health(hour, SystemTime::now());
        assert!(
            !ok && why.contains("too old") && why.contains("2h"),
            "{why}"
        );
        m.last_success.set(unix(SystemTime::now()));
        assert!(m.health(hour, SystemTime::now()).0);
    }
}
