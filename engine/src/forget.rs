//! `forget` and `prune`: which restore points a retention policy keeps (restic's vocabulary and
//! semantics), removing the others, and deleting every stored object no retained point needs.
//!
//! Crash safety: the point objects of forgotten points go first, then the objects only they
//! needed; an interrupted run leaves every retained point whole and some garbage for the next
//! prune. The newest point is always kept.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, ErrorKind, Result};
use crate::layout::{self, classify, Kind};
use crate::location::Location;
use crate::lock::{Lock, LockOptions};
use crate::metered::Metered;
use crate::point::new_run_id;
use crate::target::Target;

/// Which points to keep (restic's `--keep-*` options). A point is kept if any rule keeps it;
/// a count of 0 turns its rule off. Times are UTC; a bucket (hour, day, ISO week, month, year)
/// counts only when it has points.
///
/// The one definition of the keep rules: the engine applies it, the CLI's `retention:` block
/// deserialises into it (the field names are the YAML keys) and, with the `clap` feature, it is
/// `forget`'s `--keep-*` options (doc comments are their help).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(default, deny_unknown_fields)]
pub struct KeepPolicy {
    /// Keep the newest N points.
    #[cfg_attr(feature = "clap", arg(long = "keep-last", value_name = "N"))]
    #[cfg_attr(feature = "clap", arg(env = "ESBACKUP_KEEP_LAST", default_value_t))]
    pub last: u32,
    /// Keep the newest point of each of the last N hours that have points.
    #[cfg_attr(feature = "clap", arg(long = "keep-hourly", value_name = "N"))]
    #[cfg_attr(feature = "clap", arg(env = "ESBACKUP_KEEP_HOURLY", default_value_t))]
    pub hourly: u32,
    /// Keep the newest point of each of the last N days that have points.
    #[cfg_attr(feature = "clap", arg(long = "keep-daily", value_name = "N"))]
    #[cfg_attr(feature = "clap", arg(env = "ESBACKUP_KEEP_DAILY", default_value_t))]
    pub daily: u32,
    /// Keep the newest point of each of the last N ISO weeks that have points.
    #[cfg_attr(feature = "clap", arg(long = "keep-weekly", value_name = "N"))]
    #[cfg_attr(feature = "clap", arg(env = "ESBACKUP_KEEP_WEEKLY", default_value_t))]
    pub weekly: u32,
    /// Keep the newest point of each of the last N months that have points.
    #[cfg_attr(feature = "clap", arg(long = "keep-monthly", value_name = "N"))]
    #[cfg_attr(feature = "clap", arg(env = "ESBACKUP_KEEP_MONTHLY", default_value_t))]
    pub monthly: u32,
    /// Keep the newest point of each of the last N years that have points.
    #[cfg_attr(feature = "clap", arg(long = "keep-yearly", value_name = "N"))]
    #[cfg_attr(feature = "clap", arg(env = "ESBACKUP_KEEP_YEARLY", default_value_t))]
    pub yearly: u32,
    /// Keep every point taken within this long before the newest one (30m, 36h, 7d, 2w).
    #[cfg_attr(feature = "clap", arg(long = "keep-within", value_name = "DURATION"))]
    #[cfg_attr(feature = "clap", arg(env = "ESBACKUP_KEEP_WITHIN"))]
    #[cfg_attr(feature = "clap", arg(value_parser = crate::duration::parse_duration))]
    #[serde(with = "crate::duration::optional")]
    pub within: Option<Duration>,
}

impl KeepPolicy {
    pub fn is_empty(&self) -> bool {
        *self == KeepPolicy::default()
    }
}

/// Why a point is kept.
#[derive(Clone, Debug, Serialize)]
pub struct Kept {
    pub id: String,
    pub time: DateTime<Utc>,
    pub reasons: Vec<String>,
}

/// Applies `policy` to points given in run order (oldest first, as [`crate::list`] shows
/// them); returns the kept points (newest first, with reasons) and the ids of the others. The
/// newest point is always kept. `--keep-last` counts in run order; the time rules bucket the
/// points by their recorded times, keeping the newest point (in run order) of each bucket, so
/// that a point whose host clock was behind still counts as the newer one.
pub fn apply_policy(
    points: &[(String, DateTime<Utc>)],
    policy: &KeepPolicy,
) -> (Vec<Kept>, Vec<String>) {
    let newest_first: Vec<&(String, DateTime<Utc>)> = points.iter().rev().collect();
    type Bucket = fn(&DateTime<Utc>, usize) -> i64;
    let rules: [(u32, Bucket, &str); 6] = [
        (policy.last, |_, nr| nr as i64, "last"),
        (
            policy.hourly,
            |t, _| ymd(t) * 100 + t.hour() as i64,
            "hourly",
        ),
        (policy.daily, |t, _| ymd(t), "daily"),
        (
            policy.weekly,
            |t, _| {
                let w = t.iso_week();
                w.year() as i64 * 100 + w.week() as i64
            },
            "weekly",
        ),
        (
            policy.monthly,
            |t, _| t.year() as i64 * 100 + t.month() as i64,
            "monthly",
        ),
        (policy.yearly, |t, _| t.year() as i64, "yearly"),
    ];
    let mut left: Vec<u32> = rules.iter().map(|r| r.0).collect();
    let mut seen: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); rules.len()];
    let newest = newest_first.first().map(|p| p.1);
    let mut kept = Vec::new();
    let mut forgotten = Vec::new();
    for (nr, (id, time)) in newest_first.iter().map(|p| (&p.0, &p.1)).enumerate() {
        let mut reasons = Vec::new();
        if nr == 0 {
            reasons.push("newest".to_string());
        }
        if let (Some(within), Some(newest)) = (policy.within, newest) {
            let since =
                newest - chrono::Duration::from_std(within).unwrap_or(chrono::Duration::MAX);
            if *time > since {
                reasons.push(format!("within {}", humantime::format_duration(within)));
            }
        }
        for (i, (_, bucket, name)) in rules.iter().enumerate() {
            if left[i] == 0 {
                continue;
            }
            // A new bucket, or the oldest point while counts remain (longest history kept).
            if seen[i].insert(bucket(time, nr)) || nr == newest_first.len() - 1 {
                left[i] -= 1;
                reasons.push(name.to_string());
            }
        }
        if reasons.is_empty() {
            forgotten.push(id.clone());
        } else {
            kept.push(Kept {
                id: id.clone(),
                time: *time,
                reasons,
            });
        }
    }
    (kept, forgotten)
}

/// A warning when the recorded times of points (in run order) go backwards: a host clock was
/// stepped back, and the time rules (`--keep-daily`, `--at`) see those times as recorded.
pub(crate) fn non_monotonic_times(points: &[(String, DateTime<Utc>)]) -> Option<String> {
    let back = points.windows(2).find(|w| w[1].1 < w[0].1)?;
    Some(format!(
        "the recorded times of the restore points are not in the order the runs completed ({} at {} was taken after {} at {}: a host clock was behind); the time rules use the recorded times",
        back[1].0,
        back[1].1.to_rfc3339(),
        back[0].0,
        back[0].1.to_rfc3339()
    ))
}

fn ymd(t: &DateTime<Utc>) -> i64 {
    t.year() as i64 * 10_000 + t.month() as i64 * 100 + t.day() as i64
}

/// What `forget` does.
#[derive(Clone, Debug)]
pub struct ForgetOptions {
    pub policy: KeepPolicy,
    /// Also delete every stored object no retained point needs.
    pub prune: bool,
    /// Say what would be forgotten and deleted; change nothing.
    pub dry_run: bool,
    pub lock: LockOptions,
    /// Ends the run early, lock released (see [`crate::Stop`]).
    pub stop: crate::Stop,
}

/// What `forget` did (or would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ForgetReport {
    pub target: String,
    pub dry_run: bool,
    pub kept: Vec<Kept>,
    pub forgotten: Vec<String>,
    /// Objects deleted by the prune (or that would be), and their bytes.
    pub pruned_objects: u64,
    pub pruned_bytes: u64,
    /// Unreferenced objects the prune left because the store dates them after this run took
    /// the lock (the next prune deletes them if still unreferenced).
    pub pruned_later: u64,
    /// Bytes stored at the location before and after (lock objects aside).
    pub stored_bytes_before: u64,
    pub stored_bytes_after: u64,
    /// Seconds this run waited for another run's lock.
    pub lock_waited_secs: f64,
    /// Things the operator should know (e.g. point times that go backwards).
    pub warnings: Vec<String>,
}

/// Forgets the points `opts.policy` does not keep (and prunes), holding the location's lock.
pub async fn forget(target: Arc<dyn Target>, opts: &ForgetOptions) -> Result<ForgetReport> {
    if opts.policy.is_empty() {
        return Err(EngineError::invalid_input(
            "no retention rule given (--keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly or --keep-within): nothing would be kept, so nothing is forgotten",
        ));
    }
    let target: Arc<dyn Target> = Arc::new(Metered::new(target));
    // Refusals before the lock is taken; what is decided on is read again under it.
    let location = Location::open(target.clone()).await?;
    forgettable(&location)?;
    if opts.dry_run {
        return forget_locked(&location, &opts.policy, opts.prune, None).await;
    }
    let lock = Lock::acquire(target.clone(), &new_run_id(), "forget", &opts.lock).await?;
    let result = opts.stop.or_interrupted("the forget", async {
        let location = Location::read(target.clone()).await?;
        forgettable(&location)?;
        forget_locked(&location, &opts.policy, opts.prune, Some(&lock)).await
    });
    let result = result.await;
    let waited = lock.waited();
    if let Err(e) = lock.release().await {
        tracing::warn!("could not remove the lock: {e}");
    }
    let mut report = result?;
    report.lock_waited_secs = waited.as_secs_f64();
    Ok(report)
}

/// Refuses a location without restore points.
fn forgettable(location: &Location) -> Result<()> {
    if !location.has_backup() {
        return Err(location.no_backup());
    }
    if location.ids.is_empty() {
        return Err(EngineError::invalid_input(format!(
            "{} was written by esbackup 0.1 and has one state, no restore points yet: run a backup first",
            location.describe()
        )));
    }
    Ok(())
}

/// The work of `forget`, for a caller that holds the lock and read `location` with it held
/// (`None`: a dry run).
///
/// Conservative wherever anything is unclear: a damaged point stops it before anything is
/// deleted; before deleting forgotten points, and again before deleting unreferenced objects,
/// it confirms the lock and lists the points again, and stops if one appeared that it did not
/// read; an object the store dates after this run's lock object is left for the next prune.
pub(crate) async fn forget_locked(
    location: &Location,
    policy: &KeepPolicy,
    prune: bool,
    lock: Option<&Lock>,
) -> Result<ForgetReport> {
    let target = location.target.as_ref();
    // The records decide what is kept; only what the kept points need is read further.
    let read = location.summaries().await?;
    if let Some(damaged) = read.damaged_summary() {
        return Err(EngineError::damaged(format!(
            "{damaged}. forget deletes nothing while a point cannot be read (it cannot tell what that point needs): remove or restore that point object, then run forget again"
        )));
    }
    let times: Vec<(String, DateTime<Utc>)> = read
        .readable
        .iter()
        .map(|p| (p.id.clone(), p.time))
        .collect();
    let (kept, forgotten) = apply_policy(&times, policy);
    let retained: Vec<&str> = (times.iter())
        .map(|(id, _)| id.as_str())
        .filter(|id| kept.iter().any(|k| k.id == *id))
        .collect();
    let locked_at = match lock {
        Some(lock) => lock.stored_at().await?,
        None => None,
    };
    let objects = target
        .list("")
        .await
        .map_err(|e| EngineError::storage("listing the backup location", e))?;
    let listing: std::collections::BTreeMap<String, u64> = objects
        .iter()
        .filter(|o| !o.key.starts_with(layout::LOCKS_DIR))
        .map(|o| (o.key.clone(), o.size))
        .collect();
    let before: u64 = listing.values().sum();
    let forgotten_keys: Vec<String> = forgotten.iter().map(|id| layout::point_key(id)).collect();
    let unreferenced = match prune {
        true => unreferenced(location, &listing, &retained, &forgotten_keys).await?,
        false => vec![],
    };
    // Written after this run took the lock: by a run whose lock it took over, or by someone
    // else. Not this prune's to judge.
    let dated: std::collections::BTreeMap<&str, DateTime<Utc>> = objects
        .iter()
        .filter_map(|o| Some((o.key.as_str(), o.modified?)))
        .collect();
    let is_recent = |key: &String| matches!((locked_at, dated.get(key.as_str())), (Some(l), Some(m)) if *m >= l - RECENT_MARGIN);
    let (later, doomed): (Vec<String>, Vec<String>) = unreferenced.into_iter().partition(is_recent);
    let forgotten_bytes: u64 = forgotten_keys.iter().filter_map(|k| listing.get(k)).sum();
    let pruned_bytes: u64 = doomed.iter().filter_map(|k| listing.get(k)).sum();
    let report = ForgetReport {
        target: location.describe(),
        dry_run: lock.is_none(),
        kept,
        forgotten: forgotten.clone(),
        pruned_objects: doomed.len() as u64,
        pruned_bytes,
        pruned_later: later.len() as u64,
        stored_bytes_before: before,
        stored_bytes_after: before - pruned_bytes - forgotten_bytes,
        lock_waited_secs: 0.0,
        warnings: non_monotonic_times(&times).into_iter().collect(),
    };
    let Some(lock) = lock else {
        return Ok(report);
    };
    let known: BTreeSet<&str> = location.ids.iter().map(String::as_str).collect();
    unchanged_points(location, &known, lock).await?;
    delete_all(target, &forgotten_keys).await?;
    unchanged_points(location, &known, lock).await?;
    delete_all(target, &doomed).await?;
    Ok(report)
}

/// What a prune may delete: the objects of `listing` that no point of `retained` needs, read
/// whole (a kept point that cannot be read whole stops the prune).
async fn unreferenced(
    location: &Location,
    listing: &std::collections::BTreeMap<String, u64>,
    retained: &[&str],
    forgotten_keys: &[String],
) -> Result<Vec<String>> {
    let needed = location.needed_by(retained).await.map_err(|e| match e.kind() {
        ErrorKind::Damaged => EngineError::damaged(format!(
            "{}. forget deletes nothing while a kept point cannot be read whole: restore what it names, then run forget again",
            e.message()
        )),
        _ => e,
    })?;
    Ok(garbage(
        listing,
        &needed,
        forgotten_keys,
        !retained.is_empty(),
    ))
}

/// How much earlier than this run's lock object an object may be dated and still count as
/// written after it (store clocks round to the second or the millisecond).
const RECENT_MARGIN: chrono::Duration = chrono::Duration::seconds(2);

/// Fails unless this run still holds its lock and the location holds no point it did not read.
async fn unchanged_points(location: &Location, known: &BTreeSet<&str>, lock: &Lock) -> Result<()> {
    lock.confirm_held().await?;
    let now = Location::read(location.target.clone()).await?;
    if let Some(new) = now.ids.iter().find(|id| !known.contains(id.as_str())) {
        return Err(EngineError::new(
            crate::error::ErrorKind::LockHeld,
            format!(
                "restore point {new} appeared in {} while forget ran (written by a run whose lock was taken over): forget stopped before deleting what it might need; run forget again",
                location.describe()
            ),
        ));
    }
    Ok(())
}

async fn delete_all(target: &dyn Target, keys: &[String]) -> Result<()> {
    for key in keys {
        target
            .delete(key)
            .await
            .map_err(|e| EngineError::storage(key, e))?;
    }
    Ok(())
}

/// Stored objects that are not `needed` (by a retained point, or as the root mirror of the
/// newest one): esbackup's own objects and database files, never anything else, never a lock.
fn garbage(
    listing: &std::collections::BTreeMap<String, u64>,
    needed: &BTreeSet<String>,
    forgotten_points: &[String],
    have_points: bool,
) -> Vec<String> {
    listing
        .keys()
        .filter(|k| !needed.contains(*k) && !forgotten_points.contains(k))
        .filter(|k| is_prunable(k, have_points))
        .cloned()
        .collect()
}

/// Kinds of objects prune may delete when no point needs them.
fn is_prunable(key: &str, have_points: bool) -> bool {
    let own_objects = [layout::ACTIVE_DIR, layout::DATA_DIR, layout::PAGES_DIR];
    if own_objects.iter().any(|dir| key.starts_with(dir)) {
        return true;
    }
    if key == layout::LEGACY_MANIFEST {
        return have_points;
    }
    if key.starts_with(layout::META_DIR) {
        return false;
    }
    !matches!(classify(key), Kind::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    fn points(times: &[DateTime<Utc>]) -> Vec<(String, DateTime<Utc>)> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("p{i:02}"), *t))
            .collect()
    }

    fn kept_ids(kept: &[Kept]) -> Vec<&str> {
        kept.iter().map(|k| k.id.as_str()).collect()
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let ps = points(&(0..10).map(|h| at(2026, 11, 1, h)).collect::<Vec<_>>());
        let (kept, forgotten) = apply_policy(
            &ps,
            &KeepPolicy {
                last: 3,
                ..Default::default()
            },
        );
        assert_eq!(kept_ids(&kept), ["p09", "p08", "p07"]);
        assert_eq!(forgotten.len(), 7);
    }

    #[test]
    fn daily_keeps_the_newest_point_of_each_day_and_the_oldest_while_counts_remain() {
        // Two points a day for 3 days.
        let ps = points(
            &[1, 2, 3]
                .map(|d| [1, 20].map(|h| at(2026, 11, d, h)))
                .concat(),
        );
        let daily = |n| KeepPolicy {
            daily: n,
            ..Default::default()
        };
        let (kept, _) = apply_policy(&ps, &daily(2));
        assert_eq!(kept_ids(&kept), ["p05", "p03"]);
        let (kept, _) = apply_policy(&ps, &daily(10));
        // Newest of each day, plus the oldest point (counts were left).
        assert_eq!(kept_ids(&kept), ["p05", "p03", "p01", "p00"]);
    }

    #[test]
    fn within_is_relative_to_the_newest_point_and_rules_combine() {
        let ps = points(&[(1, 1), (10, 1), (11, 28), (11, 30)].map(|(m, d)| at(2026, m, d, 0)));
        let policy = KeepPolicy {
            within: Some(Duration::from_secs(3 * 86_400)),
            monthly: 1,
            ..Default::default()
        };
        let (kept, forgotten) = apply_policy(&ps, &policy);
        assert_eq!(kept_ids(&kept), ["p03", "p02"]);
        assert_eq!(forgotten, ["p01", "p00"]);
        assert!(kept[1].reasons.iter().any(|r| r.starts_with("within")));
    }

    #[test]
    fn the_newest_point_is_always_kept() {
        let ps = points(&[at(2026, 1, 1, 0), at(2026, 1, 2, 0)]);
        let (kept, _) = apply_policy(
            &ps,
            &KeepPolicy {
                within: Some(Duration::from_secs(1)),
                ..Default::default()
            },
        );
        assert_eq!(kept_ids(&kept), ["p01"]);
    }

    #[test]
    fn prune_deletes_only_what_no_retained_point_needs_and_never_foreign_files() {
        let mut p = crate::point::tests::sample();
        p.files.insert(
            "chunk-000001.000000".into(),
            crate::point::FileRef {
                size: 10,
                content: crate::point::Content::Object {
                    stored_size: None,
                    key: "chunk-000001.000000".into(),
                    md5: "m".into(),
                },
                chunk: None,
                stamp: None,
            },
        );
        let listing: std::collections::BTreeMap<String, u64> = [
            ("chunk-000001.000000", 10),
            ("chunk-000002.000000", 10),
            (".esbackup/active/x", 428),
            (".esbackup/active/old", 10),
            (".esbackup/data/index/scavenging/scavenging.db/r", 5),
            (".esbackup/locks/r.1.json", 5),
            (".esbackup/points/p.json", 5),
            ("writer.chk", 8),
            ("notes.txt", 3),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let needed = crate::location::needed_by_points(&[&p]);
        let doomed = garbage(&listing, &needed, &[], true);
        assert_eq!(
            doomed,
            [
                ".esbackup/active/old",
                ".esbackup/data/index/scavenging/scavenging.db/r",
                "chunk-000002.000000"
            ]
        );
    }
}
