//! The state of one backup run and the operations every phase shares: uploading a file with its
//! consistency checks, skipping what the backup already holds, recording manifest entries.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::Utc;
use md5::{Digest, Md5};

use super::{BackupOptions, BackupReport, Tally};
use crate::error::{EngineError, Result};
use crate::format::chunk::ChunkInfo;
use crate::format::{checkpoint, md5_of_reader};
use crate::manifest::{
    tool_version, Checkpoints, ChunkEntry, CompletedRun, FileEntry, Manifest, RunState,
};
use crate::source::SourceDirs;
use crate::target::{list_sizes, Target, TargetError, Upload};

/// How many times a file that changed length during its copy is copied again.
const COPY_ATTEMPTS: u32 = 3;

/// Why copying one local file failed.
pub(crate) enum CopyFailure {
    /// The file is gone (deleted or renamed away).
    Vanished,
    Error(EngineError),
}

impl From<EngineError> for CopyFailure {
    fn from(e: EngineError) -> Self {
        CopyFailure::Error(e)
    }
}

#[derive(Default)]
pub(crate) struct Stats {
    pub uploaded: Tally,
    pub skipped: Tally,
    pub deleted: Tally,
    pub uploaded_keys: Vec<String>,
    pub deleted_keys: Vec<String>,
}

pub(crate) struct Run {
    pub target: Arc<dyn Target>,
    pub dirs: SourceDirs,
    pub opts: BackupOptions,
    pub run_id: String,
    /// The lock object this run holds (none in a dry run).
    pub lock_key: Option<String>,
    pub started: chrono::DateTime<Utc>,
    /// Key → size of every object in the backup when the run started, kept up to date.
    pub remote: Mutex<BTreeMap<String, u64>>,
    pub previous: Option<Manifest>,
    /// The new manifest's files.
    pub files: Mutex<BTreeMap<String, FileEntry>>,
    pub stats: Mutex<Stats>,
    pub checkpoints: Checkpoints,
    pub chunk_size: u32,
    pub beyond_writer: Vec<String>,
    pub superseded: Vec<String>,
    pub index_rounds: u32,
    /// Set once the index phase captured an indexmap (so stale tables may be pruned).
    pub indexmap: Option<Bytes>,
    /// The stream-existence checkpoint, captured before its `.dat`.
    pub stream_existence_chk: Option<Bytes>,
    /// Checkpoint files captured, as (key, bytes), in write order.
    pub captured: Vec<(String, Bytes)>,
    pub notes: Vec<String>,
}

impl Run {
    /// Lists the backup and marks the manifest "running" before anything else is written.
    pub async fn start(
        target: Arc<dyn Target>,
        dirs: SourceDirs,
        opts: &BackupOptions,
        previous: Option<Manifest>,
        run_id: String,
        lock_key: Option<String>,
    ) -> Result<Run> {
        let remote = list_sizes(target.as_ref()).await?;
        let run = Run {
            target,
            dirs,
            opts: opts.clone(),
            run_id,
            lock_key,
            started: Utc::now(),
            remote: Mutex::new(remote),
            previous,
            files: Mutex::default(),
            stats: Mutex::default(),
            checkpoints: Checkpoints::default(),
            chunk_size: 0,
            beyond_writer: vec![],
            superseded: vec![],
            index_rounds: 0,
            indexmap: None,
            stream_existence_chk: None,
            captured: vec![],
            notes: vec![],
        };
        let mut marker = run.manifest(RunState::Running, None);
        if let Some(prev) = &run.previous {
            // Keep what the backup holds until this run knows better.
            marker.files = prev.files.clone();
            marker.checkpoints = prev.checkpoints;
            marker.last_completed = prev.last_completed.clone();
        }
        marker.store(run.target.as_ref()).await?;
        Ok(run)
    }

    /// All phases, in the order that keeps the backup restorable.
    pub async fn execute(&mut self) -> Result<()> {
        self.backup_index().await?;
        self.capture_checkpoints()?;
        self.backup_chunks().await?;
        self.write_checkpoints_and_indexmap().await?;
        self.backup_secondary_index().await?;
        self.prune().await?;
        self.confirm().await
    }

    /// Lists the backup once more: the run completes only if every file it records is there
    /// with the size it recorded.
    async fn confirm(&self) -> Result<()> {
        if self.opts.dry_run {
            return Ok(());
        }
        let stored = list_sizes(self.target.as_ref()).await?;
        if let Some(lock) = self.lock_key.as_ref().filter(|k| !stored.contains_key(*k)) {
            return Err(EngineError::LockHeld(format!(
                "this run's lock {lock} was removed by another run (stale timeout or --break-lock) while it ran: run the backup again"
            )));
        }
        for (key, entry) in self.files.lock().unwrap().iter() {
            match stored.get(key) {
                Some(&size) if size == entry.size => {}
                found => {
                    return Err(EngineError::Storage(TargetError::Permanent(format!(
                        "{key} was stored ({} bytes) but the store now lists {}: the store lost or changed it; run the backup again",
                        entry.size,
                        found.map_or("nothing".into(), |s| format!("{s} bytes"))
                    ))))
                }
            }
        }
        Ok(())
    }

    /// Writes the final manifest (completed, or failed with the error) and builds the report.
    /// A run is not reported as completed unless its manifest was stored.
    pub async fn finish(&mut self, outcome: &Result<()>, secs: f64) -> Result<BackupReport> {
        let completed = outcome.is_ok();
        let state = if completed {
            RunState::Completed
        } else {
            RunState::Failed
        };
        let error = outcome.as_ref().err().map(|e| e.to_string());
        let mut manifest = self.manifest(state, error);
        if !completed {
            // Files this run did not get to are still as the last manifest said.
            if let Some(prev) = &self.previous {
                let remote = self.remote.lock().unwrap();
                for (k, v) in &prev.files {
                    if remote.get(k) == Some(&v.size) {
                        manifest.files.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                if !self.files.lock().unwrap().contains_key(checkpoint::WRITER) {
                    manifest.checkpoints = prev.checkpoints;
                }
            }
        }
        if let Err(e) = manifest.store(self.target.as_ref()).await {
            if completed {
                return Err(e);
            }
            tracing::warn!("could not write the manifest: {e}");
        }
        let mut stats = self.stats.lock().unwrap();
        stats.uploaded_keys.sort();
        stats.deleted_keys.sort();
        Ok(BackupReport {
            run_id: self.run_id.clone(),
            target: self.target.describe(),
            full: self.opts.full,
            dry_run: self.opts.dry_run,
            completed,
            uploaded: stats.uploaded,
            skipped: stats.skipped,
            deleted: stats.deleted,
            uploaded_keys: stats.uploaded_keys.clone(),
            deleted_keys: stats.deleted_keys.clone(),
            checkpoints: self.checkpoints,
            chunk_size: self.chunk_size,
            beyond_writer: self.beyond_writer.clone(),
            superseded: self.superseded.clone(),
            index_rounds: self.index_rounds,
            notes: self.notes.clone(),
            duration_secs: secs,
        })
    }

    fn manifest(&self, state: RunState, error: Option<String>) -> Manifest {
        let completed = state == RunState::Completed;
        let finished = (state != RunState::Running).then(Utc::now);
        Manifest {
            format: crate::manifest::FORMAT_VERSION,
            tool_version: tool_version(),
            run_id: self.run_id.clone(),
            state,
            full: self.opts.full,
            started: self.started,
            finished,
            error,
            host: crate::lock::host_name(),
            source_db: self.dirs.db.display().to_string(),
            source_index: self.dirs.index.display().to_string(),
            chunk_size: (self.chunk_size > 0).then_some(self.chunk_size),
            checkpoints: self.checkpoints,
            last_completed: if completed {
                Some(CompletedRun {
                    run_id: self.run_id.clone(),
                    finished: Utc::now(),
                    checkpoints: self.checkpoints,
                })
            } else {
                self.previous
                    .as_ref()
                    .and_then(|p| p.last_completed.clone())
            },
            notes: self.notes.clone(),
            files: self.files.lock().unwrap().clone(),
        }
    }

    pub fn remote_size(&self, key: &str) -> Option<u64> {
        self.remote.lock().unwrap().get(key).copied()
    }

    pub fn previous_entry(&self, key: &str) -> Option<FileEntry> {
        self.previous.as_ref()?.files.get(key).cloned()
    }

    /// Records a file the backup keeps as it is.
    pub fn keep(&self, key: &str, entry: FileEntry) {
        self.stats.lock().unwrap().skipped.add(entry.size);
        self.files.lock().unwrap().insert(key.into(), entry);
    }

    /// True when the backup holds `key` with exactly the content hashed in `md5`.
    pub fn holds_same(&self, key: &str, size: u64, md5: &str) -> Option<FileEntry> {
        let entry = self.previous_entry(key)?;
        (!self.opts.full
            && self.remote_size(key) == Some(size)
            && entry.size == size
            && entry.md5 == md5)
            .then_some(entry)
    }

    /// Uploads a local file; copies it again if it changed under the copy: its length changed,
    /// or, for a chunk, it was completed meanwhile (a chunk filled to within 256 bytes keeps its
    /// preallocated length when completed, so the footer is compared too). A chunk's manifest
    /// entry describes the file as it was throughout the copy.
    pub async fn upload_file(
        &self,
        key: &str,
        path: &Path,
        is_chunk: bool,
    ) -> Result<FileEntry, CopyFailure> {
        for _ in 0..COPY_ATTEMPTS {
            let before = file_state(path, is_chunk)?;
            let progress = self.opts.progress.clone();
            let body =
                Upload::file(path, before.0).with_progress(Arc::new(move |n| progress.advance(n)));
            let put = self.target.put(key, body.clone()).await;
            match (put, file_state(path, is_chunk)) {
                (_, Err(CopyFailure::Vanished)) => return Err(CopyFailure::Vanished),
                (_, Ok(after)) if after != before || body.read_failure().is_some() => {
                    tracing::info!("{key} changed during the copy; copying it again");
                    continue;
                }
                (_, Err(e)) => return Err(e),
                (Err(e), _) => return Err(storage(key, e)),
                (Ok(()), _) => {}
            }
            let md5 = if self.opts.dry_run {
                String::new()
            } else {
                hex::encode(body.md5().ok_or_else(|| {
                    EngineError::Storage(TargetError::Permanent(format!(
                        "the target did not read all of {key}"
                    )))
                })?)
            };
            let entry = FileEntry {
                size: before.0,
                md5,
                chunk: before.1,
            };
            self.record_upload(key, entry.clone());
            return Ok(entry);
        }
        Err(EngineError::SourceChanging(format!(
            "{} kept changing while it was copied",
            path.display()
        ))
        .into())
    }

    /// Uploads bytes held in memory (checkpoints, the captured indexmap).
    pub async fn upload_bytes(&self, key: &str, data: Bytes) -> Result<()> {
        let md5 = hex::encode(Md5::digest(&data));
        let size = data.len() as u64;
        if let Some(entry) = self.holds_same(key, size, &md5) {
            self.keep(key, entry);
            return Ok(());
        }
        self.target.put(key, Upload::bytes(data)).await?;
        self.record_upload(
            key,
            FileEntry {
                size,
                md5,
                chunk: None,
            },
        );
        Ok(())
    }

    /// Uploads a file that changes in place unless the backup already holds the same bytes.
    /// Returns `false` when the file does not exist.
    pub async fn sync_mutable(&self, key: &str, path: &Path) -> Result<bool> {
        let md5 = match local_md5(path) {
            Ok(Some(md5)) => md5,
            Ok(None) => return Ok(false),
            Err(e) => return Err(EngineError::io(path.display(), e)),
        };
        let size = local_len(path).map_err(|_| vanished_io(path))?;
        if let Some(entry) = self.holds_same(key, size, &md5) {
            self.keep(key, entry);
            return Ok(true);
        }
        match self.upload_file(key, path, false).await {
            Ok(_) => Ok(true),
            Err(CopyFailure::Vanished) => Ok(false),
            Err(CopyFailure::Error(e)) => Err(e),
        }
    }

    fn record_upload(&self, key: &str, entry: FileEntry) {
        self.opts.progress.file_done(key, entry.size);
        let mut stats = self.stats.lock().unwrap();
        stats.uploaded.add(entry.size);
        stats.uploaded_keys.push(key.to_string());
        drop(stats);
        self.remote.lock().unwrap().insert(key.into(), entry.size);
        self.files.lock().unwrap().insert(key.into(), entry);
    }

    /// Deletes an object of the backup.
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.target.delete(key).await?;
        if let Some(size) = self.remote.lock().unwrap().remove(key) {
            let mut stats = self.stats.lock().unwrap();
            stats.deleted.add(size);
            stats.deleted_keys.push(key.to_string());
        }
        Ok(())
    }

    /// Entry for a file the backup already holds but the previous manifest does not describe:
    /// hashes the local copy, which is the same file by name and size.
    pub fn entry_from_local(&self, key: &str, chunk: Option<ChunkEntry>) -> Result<FileEntry> {
        let path = self.dirs.path_of_key(key);
        let md5 = local_md5(&path)
            .map_err(|e| EngineError::io(path.display(), e))?
            .ok_or_else(|| vanished_io(&path))?;
        Ok(FileEntry {
            size: local_len(&path).map_err(|_| vanished_io(&path))?,
            md5,
            chunk,
        })
    }

    pub fn note(&mut self, note: String) {
        tracing::info!("{note}");
        self.notes.push(note);
    }
}

fn vanished_io(path: &Path) -> EngineError {
    super::vanished(&path.display().to_string())
}

pub(crate) fn storage(key: &str, e: TargetError) -> CopyFailure {
    CopyFailure::Error(EngineError::Storage(match e {
        TargetError::Permanent(m) => TargetError::Permanent(format!("{key}: {m}")),
        other => other,
    }))
}

/// A file's length and, for a chunk, what its header and footer say.
fn file_state(path: &Path, is_chunk: bool) -> Result<(u64, Option<ChunkEntry>), CopyFailure> {
    if !is_chunk {
        return Ok((local_len(path)?, None));
    }
    match ChunkInfo::read(path) {
        Ok(info) => Ok((
            info.file_len,
            Some(ChunkEntry {
                id: info.header.chunk_id.to_string(),
                end: info.header.end,
                completed: info.is_completed(),
            }),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(CopyFailure::Vanished),
        Err(e) => Err(EngineError::NotADatabase(e.to_string()).into()),
    }
}

pub(crate) fn local_len(path: &Path) -> Result<u64, CopyFailure> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(CopyFailure::Vanished),
        Err(e) => Err(EngineError::io(path.display(), e).into()),
    }
}

/// MD5 (hex) of a local file, `None` when it does not exist.
pub(crate) fn local_md5(path: &Path) -> io::Result<Option<String>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    match md5_of_reader(&mut file, len) {
        Ok(md5) => Ok(Some(hex::encode(md5))),
        // It shrank while being read: it changed, so it matches no stored hash.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Some(String::new())),
        Err(e) => Err(e),
    }
}
