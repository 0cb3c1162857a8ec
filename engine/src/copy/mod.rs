//! `esbackup copy`: restore points, and exactly the objects they need, from one location to
//! another, between any two targets (a folder, S3, Azure, GCS, a library user's own).
//!
//! # What holds
//!
//! - **The destination is a location of its own**: every copied point is whole there (its
//!   objects, its pages, its record), with the root mirror of its newest point, so `list`,
//!   `verify` and `restore` work on it with the source gone, and `forget` there (its own
//!   retention) touches nothing at the source.
//! - **Locks**: a copy is a writer at the destination (it holds the destination's lock, as
//!   `backup` and `forget` do, and reads the destination's points and objects only once it
//!   holds it) and a reader at the source (no lock, as `restore`: what a point names is
//!   immutable there; a point forgotten at the source meanwhile stops the copy before that
//!   point is written, and says so).
//! - **Checked bytes**: each object is checked against the MD5 its point records on the way
//!   (`send`), and sent only to a key no destination point names — a key a destination point
//!   names with the same MD5 is kept (incremental: a second copy sends nothing), one it names
//!   with another MD5 is another history, refused.
//! - **Interrupted anywhere**: per point, its objects, `sync`, the lock confirmed, the root
//!   mirror (for the newest), then its point (pages, record), `sync`. A copy killed at any
//!   moment leaves the destination's points as they were plus whole copied points; a rerun
//!   sends what is missing and writes the rest.

mod mirror;
mod select;
mod send;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::{stream, StreamExt, TryStreamExt};
use serde::Serialize;

use select::choose;
pub use select::Selection;

use crate::backup::{write_mirror, DEFAULT_CONCURRENCY};
use crate::error::{EngineError, ErrorKind, Result};
use crate::guard;
use crate::location::Location;
use crate::lock::{Lock, LockOptions};
use crate::md5_lanes::Md5Lanes;
use crate::metered::{Metered, Traffic};
use crate::point::{new_run_id, run_order, FileRef, NeededObject, Point};
use crate::progress::{NoProgress, Progress};
use crate::stop::Stop;
use crate::target::{list_sizes, Target};
use mirror::Vouched;
use send::Mover;

/// How to copy.
#[derive(Clone)]
pub struct CopyOptions {
    pub points: Selection,
    /// Say what would be copied; write nothing (and take no lock).
    pub dry_run: bool,
    /// Objects sent at once.
    pub concurrency: usize,
    /// The destination's lock.
    pub lock: LockOptions,
    /// Folder of the temporary files objects are checked in before they are sent (one per
    /// object in flight, as large as the object; unnamed, so nothing is left behind).
    pub spool: PathBuf,
    pub progress: Arc<dyn Progress>,
    /// Ends the copy early, lock released (see [`crate::Stop`]).
    pub stop: Stop,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            points: Selection::default(),
            dry_run: false,
            concurrency: DEFAULT_CONCURRENCY,
            lock: LockOptions::default(),
            spool: std::env::temp_dir(),
            progress: Arc::new(NoProgress),
            stop: Stop::default(),
        }
    }
}

/// What a copy did (or would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CopyReport {
    pub from: String,
    pub to: String,
    pub dry_run: bool,
    /// Points copied (or that would be), in run order.
    pub copied: Vec<String>,
    /// Selected points the destination held already.
    pub present: Vec<String>,
    /// Selected points a `forget` at the source removed while the copy ran (not copied).
    pub forgotten: Vec<String>,
    /// Objects sent (or that would be), and their bytes.
    pub objects_sent: u64,
    pub bytes_sent: u64,
    /// Objects the copied points need that the destination held already.
    pub objects_kept: u64,
    /// Requests to the source, and what the destination was sent (points and mirror included).
    pub source_requests: u64,
    pub destination: Traffic,
    pub lock_waited_secs: f64,
    pub duration_secs: f64,
}

/// Copies the points `opts.points` selects from `from` to `to` (see the module documentation).
pub async fn copy(
    from: Arc<dyn Target>,
    to: Arc<dyn Target>,
    opts: &CopyOptions,
) -> Result<CopyReport> {
    let started = Instant::now();
    let from = Arc::new(Metered::new(from));
    let to = Arc::new(Metered::new(to));
    let source = Location::open(from.clone()).await?;
    if source.ids.is_empty() {
        return Err(match source.legacy {
            Some(_) => EngineError::invalid_input(format!(
                "{} is a location of esbackup 0.1, which has no restore points yet: run one `esbackup backup` into it (it stores its state as a point), then copy",
                source.describe()
            )),
            None => source.no_backup(),
        });
    }
    let destination = Location::open(to.clone()).await?;
    guard::copy_destination(&source, &destination).await?;
    let chosen = choose(&source.ids, &destination.ids, &opts.points)?;
    let mut report = if chosen.send.is_empty() {
        // Nothing to write, so no lock to take: an idle copy is two listings.
        CopyReport {
            from: source.describe(),
            to: destination.describe(),
            dry_run: opts.dry_run,
            present: chosen.present,
            ..CopyReport::default()
        }
    } else if opts.dry_run {
        copy_locked(&source, &destination, opts, None).await?
    } else {
        let lock = Lock::acquire(to.clone(), &new_run_id(), "copy", &opts.lock).await?;
        let result = opts.stop.or_interrupted("the copy", async {
            guard::not_the_source(from.as_ref(), to.as_ref(), lock.key()).await?;
            // `open` again: an `init` may have made the destination encoded meanwhile.
            let destination = Location::open(to.clone()).await?;
            guard::copy_destination(&source, &destination).await?;
            copy_locked(&source, &destination, opts, Some(&lock)).await
        });
        let result = result.await;
        let waited = lock.waited();
        if let Err(e) = lock.release().await {
            tracing::warn!("could not remove the lock: {e}");
        }
        let mut report = result?;
        report.lock_waited_secs = waited.as_secs_f64();
        report
    };
    report.source_requests = from.traffic().requests;
    report.destination = to.traffic();
    report.duration_secs = started.elapsed().as_secs_f64();
    Ok(report)
}

/// What the destination holds, as read under its lock, and kept up to date as points arrive.
struct Held {
    /// Every object, key → size.
    sizes: BTreeMap<String, u64>,
    /// What the destination's points need each key to hold.
    vouched: Vouched,
    /// Its newest point.
    newest: Option<Point>,
}

impl Held {
    async fn read(destination: &Location) -> Result<Held> {
        let target = destination.target.as_ref();
        let sizes = list_sizes(target)
            .await
            .map_err(|e| EngineError::storage("listing the copy's destination", e))?;
        let points = destination.points().await?;
        if let Some(d) = points.damaged.first() {
            return Err(EngineError::damaged(format!(
                "restore point {} at the destination {} cannot be read ({}): the copy cannot tell what it needs, so it wrote nothing. Run `esbackup verify` there",
                d.id,
                target.describe(),
                d.problem
            )));
        }
        let mut held = Held {
            sizes,
            vouched: Vouched::new(),
            newest: points.readable.last().cloned(),
        };
        for p in &points.readable {
            held.vouch(p);
        }
        Ok(held)
    }

    fn vouch(&mut self, point: &Point) {
        for o in data_objects(point) {
            self.vouched.insert(o.key.clone(), o);
        }
    }

    /// The objects of `point` to send, and how many the destination holds already.
    fn to_send(&self, point: &Point) -> Result<(Vec<NeededObject>, u64)> {
        let mut send = Vec::new();
        let mut kept = 0;
        for o in data_objects(point) {
            match self.vouched.get(&o.key) {
                Some(v) if v.md5 != o.md5 || v.size != o.size => {
                    return Err(EngineError::wrong_location(format!(
                        "the destination's restore points need {} to hold other bytes (MD5 {}) than the source's point {} (MD5 {}): the destination holds another history; copy into an empty location",
                        o.key, v.md5, point.id, o.md5
                    )))
                }
                Some(v) if self.sizes.get(&o.key) == Some(&v.stored_size) => kept += 1,
                // Named by no destination point (or lost there): sent whole.
                _ => send.push(o),
            }
        }
        Ok((send, kept))
    }
}

/// The stored objects a point's files are rebuilt from (its pages aside: storing the point
/// writes those).
fn data_objects(point: &Point) -> Vec<NeededObject> {
    let mut all: Vec<NeededObject> = point.files.values().flat_map(FileRef::objects).collect();
    all.sort();
    all.dedup_by(|a, b| a.key == b.key);
    all
}

async fn copy_locked(
    source: &Location,
    destination: &Location,
    opts: &CopyOptions,
    lock: Option<&Lock>,
) -> Result<CopyReport> {
    let chosen = choose(&source.ids, &destination.ids, &opts.points)?;
    let mut held = Held::read(destination).await?;
    let mut report = CopyReport {
        from: source.describe(),
        to: destination.describe(),
        dry_run: opts.dry_run,
        present: chosen.present,
        ..CopyReport::default()
    };
    let mover = Mover {
        from: source.target.clone(),
        to: destination.target.clone(),
        spool: opts.spool.clone(),
        lanes: Md5Lanes::new(),
        progress: opts.progress.clone(),
    };
    for id in &chosen.send {
        let point = match source.point(id).await {
            Err(e) if e.kind() == ErrorKind::NoBackup => {
                report.forgotten.push(id.clone());
                continue;
            }
            read => read?,
        };
        let (objects, kept) = held.to_send(&point)?;
        report.objects_kept += kept;
        report.objects_sent += objects.len() as u64;
        report.bytes_sent += objects.iter().map(|o| o.size).sum::<u64>();
        if let Some(lock) = lock {
            opts.progress
                .phase(&format!("copy {id}"), objects.iter().map(|o| o.size).sum());
            let stored = match send_all(&mover, &objects, opts.concurrency).await {
                Ok(stored) => stored,
                Err(e) => {
                    if forgotten_at_source(source, &point).await? {
                        report.forgotten.push(point.id);
                        continue;
                    }
                    return Err(e);
                }
            };
            held.sizes.extend(stored);
            let mut point = point.stored_as(&held.sizes);
            store_point(&mut point, &mut held, &mover, lock).await?;
            held.vouch(&point);
        } else {
            // A dry run: as if the objects had arrived as the source stores them.
            held.sizes
                .extend(objects.iter().map(|o| (o.key.clone(), o.stored_size)));
            held.vouch(&point);
        }
        report.copied.push(point.id);
    }
    opts.progress.finish();
    Ok(report)
}

/// Sends `objects`; returns each one's key and the size the destination holds for it.
async fn send_all(
    mover: &Mover,
    objects: &[NeededObject],
    concurrency: usize,
) -> Result<Vec<(String, u64)>> {
    stream::iter(objects.iter().map(|o| mover.send(o)))
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await
}

/// Writes `point` at the destination once its objects are there: the root mirror first when
/// it is the newest point there, then its pages and record (the point exists from then on).
async fn store_point(point: &mut Point, held: &mut Held, mover: &Mover, lock: &Lock) -> Result<()> {
    let to = mover.to.as_ref();
    let storage = |e| EngineError::storage("syncing the copy's destination", e);
    to.sync().await.map_err(storage)?;
    lock.confirm_held().await?;
    let newer = held
        .newest
        .as_ref()
        .is_none_or(|n| run_order(&point.id) > run_order(&n.id));
    if newer {
        // An encoding destination keeps no plain root copy.
        if !to.encodes() {
            let writes = mirror::writes(point, held.newest.as_ref(), &held.sizes, &held.vouched);
            write_mirror(to, &writes).await?;
        }
        held.newest = Some(point.clone());
    }
    point.store(to, &held.sizes).await?;
    for page in &point.pages {
        held.sizes.insert(page.key.clone(), page.stored_size);
    }
    to.sync().await.map_err(storage)
}

/// Whether `point` is gone from the source: a `forget` there removed it (and may have pruned
/// its objects) while it was copied, which is no damage.
async fn forgotten_at_source(source: &Location, point: &Point) -> Result<bool> {
    match source.target.head(&point.key()).await {
        Err(e) if e.is_not_found() => Ok(true),
        Err(e) => Err(EngineError::storage(point.key(), e)),
        Ok(_) => Ok(false),
    }
}
