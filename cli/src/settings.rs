//! Settings resolved once per command: the command line (with its `ESBACKUP_*` environment
//! variables, which clap reads) wins over the YAML file, which wins over the defaults below —
//! the one place where defaults live.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use esbackup_backends::TargetOptions;
use esbackup_engine::{KeepPolicy, Retention as KeepRetention, Which};

use crate::args::{Command, LockArgs, Output, PointArgs, Transfer};
use crate::config::{FileConfig, Retention};
use crate::exit::Failure;

/// Seconds without a heartbeat after which another host's lock is stale.
pub const DEFAULT_LOCK_STALE_SECS: u64 = 15 * 60;
/// How long a backup or forget waits for another run's lock: long enough for a scheduled
/// backup to finish, short enough that a stuck run is reported the same hour.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(10 * 60);

/// Every option, resolved.
#[derive(Debug, Default)]
pub struct Settings {
    pub target: Option<String>,
    pub db: Option<PathBuf>,
    pub index: Option<PathBuf>,
    /// Files transferred at once, when given; otherwise the engine's options keep their
    /// defaults (backups 4, or 8 to a folder; restores and `verify`: 8).
    pub concurrency: Option<usize>,
    pub json: bool,
    pub quiet: bool,
    pub full: bool,
    pub dry_run: bool,
    pub include_secondary_index: bool,
    pub break_lock: bool,
    pub lock_stale: Duration,
    pub lock_wait: Duration,
    pub strict: bool,
    pub point: Which,
    pub force: bool,
    pub read_data: bool,
    /// The policy `forget` applies: its options, else the `retention:` block.
    pub keep: KeepPolicy,
    pub prune: bool,
    /// The `retention:` block, applied after each successful backup.
    pub retention: Option<KeepRetention>,
    pub storage: TargetOptions,
}

/// The raw options of one command (command line and environment), before the file.
#[derive(Default)]
struct Raw {
    target: Option<String>,
    db: Option<PathBuf>,
    index: Option<PathBuf>,
    concurrency: Option<usize>,
    json: Option<bool>,
    quiet: Option<bool>,
    full: Option<bool>,
    dry_run: Option<bool>,
    include_secondary_index: Option<bool>,
    break_lock: Option<bool>,
    lock_stale_secs: Option<u64>,
    lock_wait: Option<String>,
    strict: Option<bool>,
    point: Option<String>,
    at: Option<String>,
    force: Option<bool>,
    read_data: Option<bool>,
    keep: Option<Retention>,
    prune: Option<bool>,
}

impl Raw {
    fn output(&mut self, o: &Output) {
        self.json = o.json;
        self.quiet = o.quiet;
    }
    fn transfer(&mut self, t: &Transfer) {
        self.concurrency = t.concurrency;
    }
    fn lock(&mut self, l: &LockArgs) {
        self.break_lock = l.break_lock;
        self.lock_stale_secs = l.lock_stale_secs;
        self.lock_wait = l.lock_wait.clone();
    }
    fn point(&mut self, p: &PointArgs) {
        self.point = p.point.clone();
        self.at = p.at.clone();
    }

    fn of(command: &Command) -> Raw {
        let mut raw = Raw::default();
        match command {
            Command::Backup(a) => {
                raw.target = a.target.target.clone();
                raw.db = a.db.db.clone();
                raw.index = a.db.index.clone();
                raw.full = a.full;
                raw.dry_run = a.dry_run;
                raw.include_secondary_index = a.include_secondary_index;
                raw.lock(&a.lock);
                raw.transfer(&a.transfer);
                raw.output(&a.output);
            }
            Command::Restore(a) => {
                raw.target = a.target.target.clone();
                raw.db = a.db.db.clone();
                raw.index = a.db.index.clone();
                raw.point(&a.point);
                raw.force = a.force;
                raw.transfer(&a.transfer);
                raw.output(&a.output);
            }
            Command::Verify(a) => {
                raw.target = a.target.target.clone();
                raw.point(&a.point);
                raw.read_data = a.read_data;
                raw.strict = a.strict;
                raw.transfer(&a.transfer);
                raw.output(&a.output);
            }
            Command::List(a) => {
                raw.target = a.target.target.clone();
                raw.output(&a.output);
            }
            Command::Status(a) => {
                raw.target = a.target.target.clone();
                raw.output(&a.output);
            }
            Command::Forget(a) => {
                raw.target = a.target.target.clone();
                let keep = Retention {
                    last: a.keep_last,
                    hourly: a.keep_hourly,
                    daily: a.keep_daily,
                    weekly: a.keep_weekly,
                    monthly: a.keep_monthly,
                    yearly: a.keep_yearly,
                    within: a.keep_within.clone(),
                    prune: None,
                };
                let any = [
                    keep.last,
                    keep.hourly,
                    keep.daily,
                    keep.weekly,
                    keep.monthly,
                    keep.yearly,
                ]
                .iter()
                .any(Option::is_some)
                    || keep.within.is_some();
                raw.keep = any.then_some(keep);
                raw.prune = a.prune;
                raw.dry_run = a.dry_run;
                raw.lock(&a.lock);
                raw.output(&a.output);
            }
            Command::Demo(a) => raw.output(&a.output),
        }
        raw
    }
}

/// The keep rules of a `retention:` block or of `forget`'s options.
fn policy(r: &Retention) -> Result<KeepPolicy, Failure> {
    let within = r
        .within
        .as_deref()
        .map(|w| {
            humantime::parse_duration(w).map_err(|e| {
                Failure::usage(format!(
                    "bad duration {w:?} for keep-within: {e} (write e.g. 7d or 36h)"
                ))
            })
        })
        .transpose()?;
    Ok(KeepPolicy {
        last: r.last.unwrap_or(0),
        hourly: r.hourly.unwrap_or(0),
        daily: r.daily.unwrap_or(0),
        weekly: r.weekly.unwrap_or(0),
        monthly: r.monthly.unwrap_or(0),
        yearly: r.yearly.unwrap_or(0),
        within,
    })
}

impl Settings {
    /// Resolves the options of `command` over the config file.
    pub fn resolve(command: &Command, file: FileConfig) -> Result<Settings, Failure> {
        let raw = Raw::of(command);
        let point = match (raw.point.or(file.point), raw.at.or(file.at)) {
            (Some(_), Some(_)) => {
                return Err(Failure::usage("give --point or --at, not both"));
            }
            (Some(id), None) => Which::Id(id),
            (None, Some(at)) => Which::At(parse_time(&at, Utc::now())?),
            (None, None) => Which::Latest,
        };
        let retention = match &file.retention {
            Some(r) => Some(KeepRetention {
                policy: policy(r)?,
                prune: r.prune.unwrap_or(true),
            }),
            None => None,
        };
        let keep = match (&raw.keep, &file.retention) {
            (Some(k), _) => policy(k)?,
            (None, Some(r)) => policy(r)?,
            (None, None) => KeepPolicy::default(),
        };
        let concurrency = raw.concurrency.or(file.concurrency);
        if concurrency == Some(0) {
            return Err(Failure::usage("--concurrency must be at least 1"));
        }
        Ok(Settings {
            target: raw.target.or(file.target),
            db: raw.db.or(file.db),
            index: raw.index.or(file.index),
            concurrency,
            json: raw.json.or(file.json).unwrap_or(false),
            quiet: raw.quiet.or(file.quiet).unwrap_or(false),
            full: raw.full.or(file.full).unwrap_or(false),
            dry_run: raw.dry_run.or(file.dry_run).unwrap_or(false),
            include_secondary_index: raw
                .include_secondary_index
                .or(file.include_secondary_index)
                .unwrap_or(false),
            break_lock: raw.break_lock.or(file.break_lock).unwrap_or(false),
            lock_stale: Duration::from_secs(
                raw.lock_stale_secs
                    .or(file.lock_stale_secs)
                    .unwrap_or(DEFAULT_LOCK_STALE_SECS),
            ),
            lock_wait: match raw.lock_wait.or(file.lock_wait) {
                Some(text) => humantime::parse_duration(text.trim()).map_err(|e| {
                    Failure::usage(format!(
                        "bad --lock-wait {text:?}: {e} (write e.g. 90s, 10m or 0)"
                    ))
                })?,
                None => DEFAULT_LOCK_WAIT,
            },
            strict: raw.strict.or(file.strict).unwrap_or(false),
            point,
            force: raw.force.or(file.force).unwrap_or(false),
            read_data: raw.read_data.or(file.read_data).unwrap_or(false),
            prune: raw
                .prune
                .or(file.retention.as_ref().and_then(|r| r.prune))
                .unwrap_or(false),
            keep,
            retention: retention.filter(|r| !r.policy.is_empty()),
            storage: file.storage,
        })
    }

    /// The target URL, or a usage error naming the ways to give it.
    pub fn target(&self) -> Result<&str, Failure> {
        self.target.as_deref().ok_or_else(|| missing("target"))
    }

    /// The database (or restore) folder, or a usage error naming the ways to give it.
    pub fn db(&self) -> Result<&std::path::Path, Failure> {
        self.db.as_deref().ok_or_else(|| missing("db"))
    }
}

fn missing(what: &str) -> Failure {
    Failure::usage(format!(
        "missing --{what} (or ESBACKUP_{} / `{what}:` in the config file)",
        what.to_uppercase()
    ))
}

/// `--at`: an RFC 3339 time, or an age before `now` (`90m`, `2h`, `3d`, `1w`).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Failure> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    match humantime::parse_duration(text.trim()) {
        Ok(age) => chrono::Duration::from_std(age)
            .ok()
            .and_then(|age| now.checked_sub_signed(age))
            .ok_or_else(|| Failure::usage(format!("--at {text:?} is too far back"))),
        Err(_) => Err(Failure::usage(format!(
            "--at {text:?} is neither an RFC 3339 time (2026-11-30T06:00:00Z) nor an age (90m, 2h, 3d, 1w)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn at_takes_rfc3339_or_an_age() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        assert_eq!(
            parse_time("2026-11-30T06:00:00Z", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 30, 6, 0, 0).unwrap()
        );
        assert_eq!(
            parse_time("2026-11-30T07:00:00+01:00", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 30, 6, 0, 0).unwrap()
        );
        assert_eq!(
            parse_time("2h", now).unwrap(),
            now - chrono::Duration::hours(2)
        );
        assert_eq!(
            parse_time("3d", now).unwrap(),
            now - chrono::Duration::days(3)
        );
        assert!(parse_time("yesterday", now).is_err());
    }
}

/// The README's configuration table lists every option of every command with its flag,
/// environment variable and YAML key, and every YAML key it names is one the file accepts.
#[cfg(test)]
mod readme {
    use clap::CommandFactory;

    use crate::args::Cli;
    use crate::config::FileConfig;

    /// The YAML key of a command-line option.
    fn yaml_key(long: &str) -> String {
        match long.strip_prefix("keep-") {
            Some(rule) => format!("retention.{rule}"),
            None if long == "prune" => "retention.prune".into(),
            None => long.replace('-', "_"),
        }
    }

    fn parses(key: &str) -> bool {
        ["true", "1", "x", "1h"].iter().any(|v| {
            let yaml = match key.split_once('.') {
                Some((block, k)) => format!("{block}:\n  {k}: {v}\n"),
                None => format!("{key}: {v}\n"),
            };
            serde_yaml::from_str::<FileConfig>(&yaml).is_ok()
        })
    }

    #[test]
    fn every_option_has_a_flag_an_environment_variable_and_a_yaml_key_in_the_readme() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md");
        let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with("| ")).collect();
        let cli = Cli::command();
        let mut checked = 0;
        for command in cli.get_subcommands().filter(|c| c.get_name() != "demo") {
            for arg in command.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if matches!(long, "help" | "config" | "verbose") {
                    continue;
                }
                let env = arg
                    .get_env()
                    .unwrap_or_else(|| {
                        panic!(
                            "--{long} of {} has no environment variable",
                            command.get_name()
                        )
                    })
                    .to_string_lossy()
                    .into_owned();
                let key = yaml_key(long);
                let row = format!("`--{long}` | `{env}` | `{key}` |");
                assert!(
                    rows.iter().any(|r| r.contains(&row)),
                    "README's configuration table lacks the row {row}"
                );
                assert!(parses(&key), "the config file does not accept `{key}`");
                checked += 1;
            }
        }
        assert!(checked > 40, "only {checked} options seen");
    }
}
