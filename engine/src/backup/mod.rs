//! Differential (and full) backup of a live node: the vendor's documented procedure, with its
//! remote writes ordered so that a run interrupted at any point leaves a restorable backup.
//!
//! Capture order on the source (what makes the copy consistent on a live node):
//! 1. the index: `indexmap` snapshot, the PTables it names (each verified by its MD5 before it is
//!    stored), looping until `indexmap` stays the same; stream-existence `.chk` before `.dat`;
//!    `scavenging.db`;
//! 2. the checkpoints chaser, epoch, writer, proposal;
//! 3. the chunk files, never one that starts beyond the captured writer's chunk.
//!
//! Write order on the target (what makes an interrupted run restorable): new immutable files
//! first (PTables, chunks — the last chunk is copied to `.old` before it is overwritten), then
//! `writer.chk`, `epoch.chk`, `proposal.chk`, `chaser.chk`, the stream-existence checkpoint and
//! `indexmap` (whose commit checkpoint is below the chaser), then deletions, then the manifest.

mod index;
mod log;
mod prune;
mod run;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::dry_run::DryRunTarget;
use crate::error::{EngineError, Result};
use crate::lock::{Lock, LockOptions};
use crate::manifest::{Checkpoints, Manifest};
use crate::progress::{NoProgress, Progress};
use crate::retry::{RetryPolicy, RetryTarget};
use crate::source::SourceDirs;
use crate::target::Target;

pub(crate) use run::Run;

/// What to back up and how.
#[derive(Clone)]
pub struct BackupOptions {
    pub db: PathBuf,
    /// Defaults to `<db>/index`.
    pub index: Option<PathBuf>,
    /// Copy every file again, ignoring what the backup already holds.
    pub full: bool,
    /// Report what would be done; change nothing.
    pub dry_run: bool,
    /// Copy the KurrentDB secondary index (`kurrent.ddb`); only safe on a stopped node.
    pub include_secondary_index: bool,
    /// Files transferred at once.
    pub concurrency: usize,
    /// How long to wait for a missing `indexmap` to reappear.
    pub indexmap_wait: Duration,
    /// How many times the index may change under the copy before the run gives up.
    pub index_rounds: u32,
    pub lock: LockOptions,
    pub retry: RetryPolicy,
    pub progress: Arc<dyn Progress>,
}

impl BackupOptions {
    pub fn new(db: impl Into<PathBuf>) -> BackupOptions {
        BackupOptions {
            db: db.into(),
            index: None,
            full: false,
            dry_run: false,
            include_secondary_index: false,
            concurrency: 4,
            indexmap_wait: Duration::from_secs(30),
            index_rounds: 20,
            lock: LockOptions::default(),
            retry: RetryPolicy::default(),
            progress: Arc::new(NoProgress),
        }
    }
}

/// Files and bytes.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Tally {
    pub files: u64,
    pub bytes: u64,
}

impl Tally {
    pub(crate) fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}

/// The summary of a backup run (`--json` prints it).
#[derive(Clone, Debug, Serialize)]
pub struct BackupReport {
    pub run_id: String,
    pub target: String,
    pub full: bool,
    pub dry_run: bool,
    pub completed: bool,
    pub uploaded: Tally,
    pub skipped: Tally,
    pub deleted: Tally,
    /// Keys uploaded and deleted, sorted.
    pub uploaded_keys: Vec<String>,
    pub deleted_keys: Vec<String>,
    pub checkpoints: Checkpoints,
    pub chunk_size: u32,
    /// Chunk files not stored because they start beyond the captured writer checkpoint.
    pub beyond_writer: Vec<String>,
    /// Old chunk versions the server would delete at start-up, not stored.
    pub superseded: Vec<String>,
    /// PTables copied; rounds of the indexmap loop.
    pub index_rounds: u32,
    pub notes: Vec<String>,
    pub duration_secs: f64,
}

/// Runs one backup of `opts.db` into `target`.
pub async fn backup(target: Arc<dyn Target>, opts: &BackupOptions) -> Result<BackupReport> {
    let started = Instant::now();
    let dirs = SourceDirs::new(&opts.db, opts.index.as_deref());
    dirs.validate()?;
    let retrying: Arc<dyn Target> = Arc::new(RetryTarget::new(target, opts.retry.clone()));
    let target: Arc<dyn Target> = if opts.dry_run {
        Arc::new(DryRunTarget(retrying))
    } else {
        retrying
    };
    let mut previous = Manifest::load(target.as_ref()).await?;
    if let Some(other) = other_database(&dirs, previous.as_ref()) {
        if !opts.full {
            return Err(EngineError::BadInput(format!(
                "{} holds a backup of another database ({other}): use another target location, or --full to replace it",
                target.describe()
            )));
        }
        // Replacing another database's backup: until this run completes, nothing at the
        // location is a restorable backup of either database.
        previous = None;
    }
    let run_id = new_run_id();
    let lock = if opts.dry_run {
        None
    } else {
        Some(Lock::acquire(target.clone(), &run_id, "backup", &opts.lock).await?)
    };
    let result = async {
        let lock_key = lock.as_ref().map(|l| l.key().to_string());
        let mut run = Run::start(target, dirs, opts, previous, run_id, lock_key).await?;
        let outcome = run.execute().await;
        let report = run.finish(&outcome, started.elapsed().as_secs_f64()).await;
        outcome.and(report)
    }
    .await;
    if let Some(lock) = lock {
        if let Err(e) = lock.release().await {
            tracing::warn!("could not remove the lock: {e}");
        }
    }
    opts.progress.finish();
    result
}

fn new_run_id() -> String {
    format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Says why the backup holds another database, if it does: a chunk stored under the same name
/// with a different chunk id (ids never change, not even when a chunk is completed) means
/// another node or database. Checked before anything is written.
fn other_database(dirs: &SourceDirs, previous: Option<&Manifest>) -> Option<String> {
    let prev = previous?;
    for name in dirs.chunk_names().ok()? {
        let key = name.to_string();
        let Some(stored) = prev.files.get(&key).and_then(|e| e.chunk.as_ref()) else {
            continue;
        };
        let Ok(info) = crate::format::chunk::ChunkInfo::read(&dirs.chunk_path(&name)) else {
            continue;
        };
        if stored.id != info.header.chunk_id.to_string() {
            return Some(format!(
                "{key} differs: chunk id {} here, {} in the backup",
                info.header.chunk_id, stored.id
            ));
        }
    }
    None
}

/// The message for a file that vanished under the copy.
pub(crate) fn vanished(what: &str) -> EngineError {
    EngineError::SourceChanging(format!(
        "{what} disappeared during the backup: a scavenge is probably running. Stop it (DELETE /admin/scavenge/current, and POST /auto-scavenge/pause if auto-scavenge is on), run the backup again, then resume the scavenge. The backup is left restorable."
    ))
}
