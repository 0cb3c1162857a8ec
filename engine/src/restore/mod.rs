//! Restore one restore point into a folder (the node must be stopped).
//!
//! [`restore`] reads top-down:
//! 1. refuse a destination that is, contains or lies inside the backup location, or is a
//!    backup location itself; pick the point (`--point`, `--at`, else the latest);
//! 2. check that every object the point needs is stored with its recorded size — a damaged
//!    location fails here, naming what is missing, before the destination is touched;
//! 3. lock the destination folder (one restore at a time), refuse it if it holds files (unless
//!    `force`), and download every data file under a temporary name, each byte checked against
//!    the MD5 the point recorded;
//! 4. write `writer.chk`, move the data files into place, write the other checkpoints, and set
//!    `truncate.chk` := `chaser.chk` last (the vendor's restore step).
//!
//! Until step 4 the folder holds no database file the server would open; a failed restore
//! removes everything it wrote.

mod destination;
mod execute;
mod plan;
mod position;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::guard;
use crate::location::Location;
use crate::point::Point;
use crate::progress::{NoProgress, Progress};
use crate::source::SourceDirs;
use crate::tally::Tally;
use crate::target::Target;

pub(crate) use execute::PARTIAL_SUFFIX;
pub(crate) use plan::missing;
pub use position::{Cut, Upto};

/// Which restore point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Which {
    /// The newest point.
    #[default]
    Latest,
    /// The point with this id.
    Id(String),
    /// The newest point taken at or before this time.
    At(DateTime<Utc>),
}

#[derive(Clone)]
pub struct RestoreOptions {
    pub db: PathBuf,
    /// Defaults to `<db>/index`.
    pub index: Option<PathBuf>,
    pub point: Which,
    /// Restore the log only up to here (a position, a moment, before a stream's deletion):
    /// the point is then chosen for it (see `position`), not by `point`.
    pub upto: Option<Upto>,
    /// Restore into folders that hold files (their database files are removed first).
    pub force: bool,
    /// Files transferred at once.
    pub concurrency: usize,
    pub progress: Arc<dyn Progress>,
}

/// Files a restore (and `verify --read-data`) fetches at once: more than a backup sends, since
/// each file's MD5 takes one of the restore's 8 SIMD MD5 lanes (see `md5_lanes`), and a
/// restore is the run someone waits for. (S3 restore of 2 GiB here, against 4 at once: wall
/// 4.4-5.9 s -> 4.1-4.7 s, client CPU 1.5-1.6 -> 0.9-1.1 s user, peak RSS 40-45 -> 56-61 MiB.)
pub const DEFAULT_RESTORE_CONCURRENCY: usize = 8;

impl RestoreOptions {
    pub fn new(db: impl Into<PathBuf>) -> RestoreOptions {
        RestoreOptions {
            db: db.into(),
            index: None,
            point: Which::Latest,
            upto: None,
            force: false,
            concurrency: DEFAULT_RESTORE_CONCURRENCY,
            progress: Arc::new(NoProgress),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    pub target: String,
    pub db: String,
    pub index: String,
    /// The restore point restored, and the time it restores to.
    pub point: String,
    pub time: DateTime<Utc>,
    pub restored: Tally,
    pub writer: i64,
    pub chaser: i64,
    /// `truncate.chk` as written (= chaser, or the boundary of a restore to a position).
    pub truncate: i64,
    /// A restore to a position: what was asked, the boundary and why this point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut: Option<Cut>,
    /// Things the operator should know (e.g. `--at` over point times that go backwards).
    pub warnings: Vec<String>,
    pub duration_secs: f64,
}

pub async fn restore(target: Arc<dyn Target>, opts: &RestoreOptions) -> Result<RestoreReport> {
    let started = Instant::now();
    let dest = SourceDirs::new(&opts.db, opts.index.as_deref());
    let location = Location::open(target.clone()).await?;
    guard::restore_destination(&location, &dest)?;
    if !location.has_backup() {
        return Err(location.no_backup());
    }
    let (point, warnings, cut) = match &opts.upto {
        None => {
            let (point, warnings) = choose_with_warnings(&location, &opts.point).await?;
            (point, warnings, None)
        }
        Some(upto) => {
            let (point, cut) = position::choose(&location, upto).await?;
            let note = format!(
                "the node truncates its log to {} at its first start and then exits with code 0 (KurrentDB's truncation): start it again",
                cut.boundary
            );
            (point, vec![note], Some(cut))
        }
    };
    let listing = crate::target::list_sizes(target.as_ref())
        .await
        .map_err(|e| EngineError::storage("listing the backup location", e))?;
    let missing = plan::missing(&point, &listing);
    if !missing.is_empty() {
        still_there(target.as_ref(), &point).await?;
        return Err(EngineError::damaged(format!(
            "restore point {} cannot be restored: {} object(s) it needs are missing or damaged at {}: {}. Run `esbackup verify`; restore another point with --point or --at",
            point.id,
            missing.len(),
            target.describe(),
            summarise(&missing)
        )));
    }
    let _held = destination::lock(&dest.db)?;
    destination::prepare(&dest, opts.force)?;
    let mut plan = plan::plan(&point);
    if let Some(cut) = &cut {
        plan.truncate = cut.boundary;
    }
    opts.progress.phase("restore", plan.bytes());
    let restored = execute::restore(&target, &dest, &plan, opts).await;
    opts.progress.finish();
    let restored = match restored {
        Ok(r) => r,
        Err(e) => {
            still_there(target.as_ref(), &point).await?;
            return Err(e);
        }
    };
    Ok(RestoreReport {
        target: target.describe(),
        db: dest.db.display().to_string(),
        index: dest.index.display().to_string(),
        point: point.id.clone(),
        time: point.time,
        restored,
        writer: point.checkpoints.writer,
        chaser: point.checkpoints.chaser,
        truncate: plan.truncate,
        cut,
        warnings,
        duration_secs: started.elapsed().as_secs_f64(),
    })
}

/// Fails with "forgotten meanwhile" when `point` is no longer at the location: a concurrent
/// `forget --prune` removed it (and its objects), which is not damage.
async fn still_there(target: &dyn Target, point: &Point) -> Result<()> {
    match target.head(&point.key()).await {
        Err(e) if e.is_not_found() => Err(EngineError::no_backup(format!(
            "restore point {} was forgotten (`forget`) while this restore ran: restore another point (`esbackup list`)",
            point.id
        ))),
        _ => Ok(()),
    }
}

/// The point `which` names.
pub(crate) async fn choose(location: &Location, which: &Which) -> Result<Point> {
    Ok(choose_with_warnings(location, which).await?.0)
}

/// The point `which` names, and what the operator should know about the choice.
pub(crate) async fn choose_with_warnings(
    location: &Location,
    which: &Which,
) -> Result<(Point, Vec<String>)> {
    match which {
        Which::Latest => Ok((location.require_latest().await?, vec![])),
        Which::Id(id) => Ok((location.point(id).await?, vec![])),
        Which::At(at) => {
            // Chosen by the points' records; only the chosen point is read whole.
            let read = location.summaries().await?;
            let points = read.readable;
            let times: Vec<(String, DateTime<Utc>)> =
                points.iter().map(|p| (p.id.clone(), p.time)).collect();
            let mut warnings: Vec<String> = crate::forget::non_monotonic_times(&times)
                .into_iter()
                .collect();
            warnings.extend(
                read.damaged
                    .iter()
                    .map(|d| format!("skipped: {}", d.problem)),
            );
            let Some(chosen) = pick_at(&times, *at) else {
                return Err(EngineError::invalid_input(format!(
                    "{} has no restore point at or before {}: the oldest is {} (see `esbackup list`)",
                    location.describe(),
                    at.to_rfc3339(),
                    points
                        .first()
                        .map_or("none".into(), |p| p.time.to_rfc3339())
                )));
            };
            Ok((location.point(chosen).await?, warnings))
        }
    }
}

/// The id of the point with the latest recorded time at or before `at` (of equal times, the
/// one taken last); `points` (ids and times) are in run order.
pub(crate) fn pick_at(points: &[(String, DateTime<Utc>)], at: DateTime<Utc>) -> Option<&str> {
    points
        .iter()
        .enumerate()
        .filter(|(_, (_, time))| *time <= at)
        .max_by(|(i, (_, a)), (j, (_, b))| a.cmp(b).then(i.cmp(j)))
        .map(|(_, (id, _))| id.as_str())
}

fn summarise(items: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        text.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_picks_the_newest_point_not_after_the_time() {
        let t0 = Utc::now();
        let points: Vec<(String, DateTime<Utc>)> = (0..3)
            .map(|i| (format!("p{i}"), t0 + chrono::Duration::hours(i)))
            .collect();
        assert_eq!(
            pick_at(&points, t0 + chrono::Duration::minutes(90)),
            Some("p1")
        );
        assert_eq!(
            pick_at(&points, t0 + chrono::Duration::hours(2)),
            Some("p2")
        );
        assert_eq!(pick_at(&points, t0), Some("p0"));
        assert!(pick_at(&points, t0 - chrono::Duration::seconds(1)).is_none());
    }
}
