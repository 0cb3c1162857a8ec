//! A backup run: capture a live node's files in the vendor's order, store what the location
//! lacks, and record the result as a new restore point.
//!
//! [`backup`] reads top-down as the procedure:
//! 1. check the source is a database and the target a backup location (nothing written yet);
//! 2. take the location's lock (waiting for a running one up to `--lock-wait`), then read the
//!    location again: everything below decides on what was read with the lock held;
//! 3. read the previous point (an esbackup 0.1 location's state is stored as one first) and
//!    number this run's point after the newest;
//! 4. capture the source: the index (`indexmap` loop, tables opened), the files beside it, every
//!    other file of the two folders (listed), the checkpoints (chaser, epoch, writer, proposal),
//!    then the chunk files;
//! 5. plan: for every file, keep the previous point's copy, append to a growing chunk, or store
//!    it (`plan.rs`; `--dry-run` stops here and reports the plan);
//! 6. store the files (an other file that changed while it was read is left out, by name),
//!    confirm the new objects, update the root mirror;
//! 7. write the new point, if the run still holds its lock.
//!
//! An interrupted run leaves every earlier point as it was: points are written last and name
//! only objects that are never overwritten (see `plan.rs`).

mod execute;
mod plan;
mod probe;
mod report;

pub(crate) use execute::mirror as write_mirror;
pub(crate) use plan::Mirror;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

pub use crate::source::other_files::Skipped;
pub use report::{BackupReport, Uploaded};

use crate::error::{EngineError, Result};
use crate::forget::KeepPolicy;
use crate::guard;
use crate::legacy;
use crate::location::Location;
use crate::lock::{Lock, LockOptions};
use crate::metered::Metered;
use crate::point::{new_point_id, new_run_id, tool_version, Point, FORMAT};
use crate::progress::{NoProgress, Progress};
use crate::source::{self, SourceDirs};
use crate::stop::Stop;
use crate::target::Target;
use plan::{Captured, Policy};

/// What to back up and how.
#[derive(Clone)]
pub struct BackupOptions {
    pub db: PathBuf,
    /// Defaults to `<db>/index`.
    pub index: Option<PathBuf>,
    /// Store every file again instead of trusting what the location holds.
    pub full: bool,
    /// Report what would be stored; change nothing.
    pub dry_run: bool,
    /// Copy the KurrentDB secondary index (`kurrent.ddb`); only safe on a stopped node.
    pub include_secondary_index: bool,
    /// Files sent at once; `None`: [`DEFAULT_CONCURRENCY`] to object stores (each file in
    /// flight holds part buffers), [`DEFAULT_LOCAL_CONCURRENCY`] to a local folder (copied in
    /// the kernel, holding little; 8 files fill the run's 8 MD5 lanes).
    pub concurrency: Option<usize>,
    /// How long to wait for a missing `indexmap` to reappear.
    pub indexmap_wait: Duration,
    /// How many times `indexmap` may change under the capture before the run gives up.
    pub index_rounds: u32,
    pub lock: LockOptions,
    /// A retention policy applied after the point is stored (the config's `retention:`).
    pub retention: Option<Retention>,
    pub progress: Arc<dyn Progress>,
    /// Ends the run early, lock released, with an [`crate::ErrorKind::Interrupted`] error (see
    /// [`Stop`]).
    pub stop: Stop,
    /// The node's state as its admin API reported it (`leader`, `follower`,
    /// `readonlyreplica`…), recorded in the point; `None` when not asked.
    pub node_state: Option<String>,
}

/// The retention policy a backup applies after a successful run.
#[derive(Clone, Debug)]
pub struct Retention {
    pub policy: KeepPolicy,
    /// Also delete what no kept point needs.
    pub prune: bool,
}

/// Files sent at once to an object store unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Files sent at once to a local folder unless told otherwise.
pub const DEFAULT_LOCAL_CONCURRENCY: usize = 8;

impl BackupOptions {
    pub fn new(db: impl Into<PathBuf>) -> BackupOptions {
        BackupOptions {
            db: db.into(),
            index: None,
            full: false,
            dry_run: false,
            include_secondary_index: false,
            concurrency: None,
            indexmap_wait: Duration::from_secs(30),
            index_rounds: 20,
            lock: LockOptions::default(),
            retention: None,
            progress: Arc::new(NoProgress),
            stop: Stop::new(),
            node_state: None,
        }
    }
}

/// Runs one backup of `opts.db` into `target` and stores a restore point.
pub async fn backup(target: Arc<dyn Target>, opts: &BackupOptions) -> Result<BackupReport> {
    let started = Instant::now();
    let metered = Arc::new(Metered::new(target));
    let target: Arc<dyn Target> = metered.clone();
    let source = SourceDirs::new(&opts.db, opts.index.as_deref());
    source.validate()?;
    // Refusals before the lock is taken (nothing is written to a wrong target). Whether the
    // location is encoded is decided under the lock (an `init` may run meanwhile); a dry run,
    // which takes none, looks now.
    let location = match opts.dry_run {
        true => Location::open(target.clone()).await?,
        false => Location::read(target.clone()).await?,
    };
    guard::backup_target(&location, &source).await?;

    let lock = match opts.dry_run {
        true => None,
        false => Some(Lock::acquire(target.clone(), &new_run_id(), "backup", &opts.lock).await?),
    };
    let outcome = opts.stop.or_interrupted("the backup", async {
        // What the run decides on is read with the lock held.
        let location = match lock {
            // `Location::open` again: an `init` may have made the location encoded meanwhile.
            Some(_) => Location::open(target.clone()).await?,
            None => location,
        };
        run(&location, &source, opts, lock.as_ref()).await
    });
    let outcome = outcome.await;
    let waited = lock.as_ref().map_or(Duration::ZERO, Lock::waited);
    if let Some(lock) = lock {
        if let Err(e) = lock.release().await {
            tracing::warn!("could not remove the lock: {e}");
        }
    }
    opts.progress.finish();
    let mut report = outcome?;
    report.lock_waited_secs = waited.as_secs_f64();
    if !opts.dry_run {
        report.uploaded = metered.traffic().into();
    }
    report.duration_secs = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The procedure, with the lock held (none in a dry run).
async fn run(
    location: &Location,
    source: &SourceDirs,
    opts: &BackupOptions,
    lock: Option<&Lock>,
) -> Result<BackupReport> {
    let target = &location.target;
    let aborted_uploads = match lock {
        Some(_) => abort_stale_uploads(target.as_ref()).await,
        None => 0,
    };
    let previous = previous_point(location, opts.dry_run).await?;
    same_database(source, previous.as_ref(), opts.full)?;

    // Numbered now, with the lock held: points are ordered by these numbers, not by clocks.
    let seq = location.next_seq();
    let run_id = new_point_id(seq);
    let time = Utc::now();
    let warnings = clock_warnings(time, previous.as_ref());
    let captured = capture(source, opts).await?;
    let probes = probe::probe(location, &captured, previous.as_ref()).await?;
    let policy = Policy {
        full: opts.full,
        run_id: run_id.clone(),
    };
    let mut plan = plan::plan(&captured, previous.as_ref(), &probes, &policy);
    let report_of = |plan: &plan::BackupPlan| {
        let mut report = report::planned(plan, &captured, previous.as_ref(), opts);
        report.target = target.describe();
        report.aborted_uploads = aborted_uploads;
        report.warnings.extend(warnings.iter().cloned());
        report
    };
    let Some(lock) = lock else {
        return Ok(report_of(&plan)); // --dry-run: the plan is the report
    };
    let head = PointHead {
        id: run_id,
        seq,
        time,
        reusable_pages: reusable_pages(previous.as_ref(), opts.full),
    };
    let (point, repaired) =
        store_run(location, source, opts, lock, &captured, &mut plan, head).await?;
    let mut report = report_of(&plan);
    report.bytes_added = point.bytes_added;
    report.plain_added = point.plain_added;
    report.point = Some(point.id);
    if repaired > 0 {
        report.notes.push(format!(
            "{repaired} root cop(ies) of the newest point's files were missing or damaged and were rewritten"
        ));
    }
    if let Some(r) = &opts.retention {
        // The point is stored: a failing retention is reported, not a failed backup.
        match apply_retention(target, r, lock).await {
            Ok(forgot) => report.retention = Some(forgot),
            Err(e) => report
                .notes
                .push(format!("the retention policy was not applied: {e}")),
        }
    }
    Ok(report)
}

/// A warning when this host's clock is behind the newest point's recorded time.
fn clock_warnings(time: chrono::DateTime<Utc>, previous: Option<&Point>) -> Vec<String> {
    let Some(newest) = previous.map(|p| p.time).filter(|newest| time < *newest) else {
        return Vec::new();
    };
    let warning = format!(
        "this host's clock ({}) is behind the newest restore point's time ({}): the point is still the newest (points are ordered by run), but --at and the --keep-hourly/daily/... rules see the time as recorded; check the clock (NTP)",
        time.to_rfc3339(),
        newest.to_rfc3339()
    );
    tracing::warn!("{warning}");
    vec![warning]
}

/// The new point's identity, taken with the lock held, and the previous point's pages it may
/// name without storing them again.
struct PointHead {
    id: String,
    seq: u64,
    time: chrono::DateTime<Utc>,
    reusable_pages: BTreeMap<String, u64>,
}

/// The previous point's pages: read whole and checked against their MD5s when this run
/// loaded that point, with the lock held (a `--full` run trusts none).
fn reusable_pages(previous: Option<&Point>, full: bool) -> BTreeMap<String, u64> {
    match previous.filter(|_| !full) {
        Some(p) => (p.pages.iter())
            .map(|page| (page.key.clone(), page.stored_size))
            .collect(),
        None => BTreeMap::new(),
    }
}

/// Stores the planned files, the root mirror and then the point, in that order; returns the
/// point and how many root copies were repaired.
async fn store_run(
    location: &Location,
    source: &SourceDirs,
    opts: &BackupOptions,
    lock: &Lock,
    captured: &Captured,
    plan: &mut plan::BackupPlan,
    head: PointHead,
) -> Result<(Point, usize)> {
    let target = &location.target;
    let concurrency = opts.concurrency.unwrap_or(match target.local_root() {
        Some(_) => DEFAULT_LOCAL_CONCURRENCY,
        None => DEFAULT_CONCURRENCY,
    });
    let repaired = match target.encodes() {
        true => {
            // Only esbackup reads an encoding location: it keeps no plain root copy.
            plan.mirrors.clear();
            0
        }
        false => {
            let repairs = probe::mirror_repairs(target.as_ref(), plan).await?;
            let repaired = repairs.len();
            plan.mirrors.extend(repairs);
            repaired
        }
    };
    let stored = execute::store_files(target, plan, concurrency, &opts.progress).await?;
    plan.leave_out(stored.skipped);
    execute::confirm(target.as_ref(), &stored.new_objects).await?;
    // A run whose lock was taken over writes nothing more.
    lock.confirm_held().await?;
    execute::mirror(target.as_ref(), &plan.mirrors).await?;
    let mut point = Point {
        format: FORMAT,
        id: head.id,
        seq: head.seq,
        time: head.time,
        finished: Utc::now(),
        tool_version: tool_version(),
        host: crate::lock::host_name(),
        source_db: source.db.display().to_string(),
        source_index: source.index.display().to_string(),
        chunk_size: captured.chunks.chunk_size,
        checkpoints: captured.checkpoints.values,
        bytes_added: stored.new_objects.iter().map(|(_, n)| n).sum(),
        plain_added: target
            .encodes()
            .then(|| plain_bytes(&stored.files, &stored.new_objects)),
        notes: plan.point_notes(),
        files: stored.files,
        pages: Vec::new(),
        node_state: opts.node_state.clone(),
        log_times: log_times(captured).await,
    };
    store_point(target.as_ref(), &mut point, lock, &head.reusable_pages).await?;
    Ok((point, repaired))
}

/// The own times of the captured log's first and last records (two small reads, off the
/// runtime).
async fn log_times(captured: &Captured) -> Option<crate::source::log_times::LogTimes> {
    let chunks = captured.chunks.clone();
    let writer = captured.checkpoints.values.writer;
    tokio::task::spawn_blocking(move || crate::source::log_times::capture(&chunks, writer))
        .await
        .ok()
        .flatten()
}

/// Writes the point, last; removes it again if the lock turns out to have been taken over
/// meanwhile (the other run may be pruning what it names).
async fn store_point(
    target: &dyn Target,
    point: &mut Point,
    lock: &Lock,
    reusable_pages: &BTreeMap<String, u64>,
) -> Result<()> {
    let sync = |e| EngineError::storage("making the stored files durable", e);
    target.sync().await.map_err(sync)?;
    point.store(target, reusable_pages).await?;
    target.sync().await.map_err(sync)?;
    if let Err(e) = lock.confirm_held().await {
        let _ = target.delete(&point.key()).await;
        return Err(e);
    }
    Ok(())
}

/// Forgets (and prunes) per `retention`, with this run's lock.
async fn apply_retention(
    target: &Arc<dyn Target>,
    retention: &Retention,
    lock: &Lock,
) -> Result<crate::forget::ForgetReport> {
    let location = Location::read(target.clone()).await?;
    crate::forget::forget_locked(&location, &retention.policy, retention.prune, Some(lock)).await
}

/// The latest readable point (a damaged newest point is skipped with a warning: this run stores
/// what the older one lacks). A completed esbackup 0.1 state is first stored as a point (not in
/// a dry run), so that this run may change the root it lives in.
async fn previous_point(location: &Location, dry_run: bool) -> Result<Option<Point>> {
    match &location.legacy {
        Some(m) if location.ids.is_empty() => match m.as_point(&location.describe()) {
            Ok(point) if dry_run => Ok(Some(point)),
            Ok(point) => legacy::store_as_point(location.target.as_ref(), point)
                .await
                .map(Some),
            // An interrupted 0.1 run left no consistent state: start a new history.
            Err(_) => Ok(None),
        },
        _ => location.newest_readable().await,
    }
}

/// Captures the source in the vendor's order: index, side files, the other files,
/// checkpoints, chunks.
async fn capture(dirs: &SourceDirs, opts: &BackupOptions) -> Result<Captured> {
    let limits = source::index::IndexLimits {
        indexmap_wait: opts.indexmap_wait,
        rounds: opts.index_rounds,
    };
    let index = source::index::capture(dirs, limits).await?;
    let side = source::side_files::capture(dirs, opts.include_secondary_index)?;
    let other = source::other_files::capture(dirs)?;
    let checkpoints = source::checkpoints::capture(dirs)?;
    let chunks = source::chunks::capture(dirs, &checkpoints.values)?;
    Ok(Captured {
        index,
        side,
        other,
        checkpoints,
        chunks,
    })
}

/// Refuses a source whose chunks carry other ids than the same chunks in the previous point
/// (ids never change, not even when a chunk is completed): another node or database, or a node
/// restored from an older point. Checked before anything is written.
fn same_database(source: &SourceDirs, previous: Option<&Point>, full: bool) -> Result<()> {
    let Some(previous) = previous.filter(|_| !full) else {
        return Ok(());
    };
    for name in source.chunk_names()? {
        let key = name.to_string();
        let Some(stored) = previous.files.get(&key).and_then(|f| f.chunk.as_ref()) else {
            continue;
        };
        let Ok(info) = crate::format::chunk::ChunkInfo::read(&source.chunk_path(&name)) else {
            continue;
        };
        if stored.id != info.header.chunk_id.to_string() {
            return Err(EngineError::not_a_database(format!(
                "{} holds a backup of another database: {key} has chunk id {} here but {} in restore point {}. Use another target location; or, if this node was restored from a backup, run with --full to start a new history there",
                previous.source_db, info.header.chunk_id, stored.id, previous.id
            )));
        }
    }
    Ok(())
}

/// How old an incomplete upload or staging file must be before a run holding the lock removes
/// it: every writer but lock attempts (which take milliseconds) needs the lock, so anything
/// older is a dead run's.
pub(crate) const LEFTOVER_MIN_AGE: Duration = Duration::from_secs(60);

/// Aborts incomplete uploads and removes staging files of killed runs (best effort: a failure
/// is only logged).
async fn abort_stale_uploads(target: &dyn Target) -> u64 {
    match target.abort_stale_uploads(LEFTOVER_MIN_AGE).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("could not abort incomplete uploads of earlier runs: {e}");
            0
        }
    }
}

/// The plain bytes of the objects `new` (key, stored size) that `files` name.
fn plain_bytes(files: &BTreeMap<String, crate::point::FileRef>, new: &[(String, u64)]) -> u64 {
    let new: std::collections::BTreeSet<&str> = new.iter().map(|(k, _)| k.as_str()).collect();
    let objects: BTreeMap<String, u64> = files
        .values()
        .flat_map(|f| f.objects())
        .filter(|o| new.contains(o.key.as_str()))
        .map(|o| (o.key, o.size))
        .collect();
    objects.values().sum()
}
