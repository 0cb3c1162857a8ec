//! Locations written by esbackup 0.1, before restore points: one `.esbackup/manifest.json`
//! describing the latest run, and the database mirrored at the root (the growing chunk stored
//! whole). Such a location is read as one restore point, and the first backup into it stores
//! that point for real, so the older state stays restorable after later runs change the root.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::error::{EngineError, Result};
use crate::layout::{self, classify, Kind};
use crate::point::{Checkpoints, ChunkRef, Content, FileRef, Point, FORMAT};
use crate::target::{get_bytes, Target};

/// The parts of a 0.1 manifest that matter here.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Manifest {
    pub run_id: String,
    pub state: String,
    pub started: DateTime<Utc>,
    #[serde(default)]
    pub finished: Option<DateTime<Utc>>,
    pub host: String,
    pub source_db: String,
    pub source_index: String,
    #[serde(default)]
    pub chunk_size: Option<u32>,
    pub checkpoints: Checkpoints,
    #[serde(default)]
    pub notes: Vec<String>,
    pub files: BTreeMap<String, Entry>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Entry {
    pub size: u64,
    pub md5: String,
    #[serde(default)]
    pub chunk: Option<ChunkRef>,
}

impl Manifest {
    /// Reads the 0.1 manifest, if the location has one.
    pub async fn load(target: &dyn Target) -> Result<Option<Manifest>> {
        match get_bytes(target, layout::LEGACY_MANIFEST).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                EngineError::damaged(format!(
                    "{} in {} is unreadable: {e}",
                    layout::LEGACY_MANIFEST,
                    target.describe()
                ))
            }),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(EngineError::storage(layout::LEGACY_MANIFEST, e)),
        }
    }

    /// The state of the latest 0.1 run as a restore point whose files are the root objects.
    /// Only a run that completed describes a consistent database.
    pub fn as_point(&self, location: &str) -> Result<Point> {
        if self.state != "completed" {
            return Err(EngineError::no_backup(format!(
                "{location} was written by esbackup 0.1 and its latest run {} did not complete ({}): run a backup (it stores a new restore point), or restore it with esbackup 0.1",
                self.run_id, self.state
            )));
        }
        let chunk_size = self.chunk_size.filter(|&s| s > 0).ok_or_else(|| {
            EngineError::damaged(format!(
                "{} in {location} records no chunk size",
                layout::LEGACY_MANIFEST
            ))
        })?;
        let files = self
            .files
            .iter()
            .filter(|(k, _)| !matches!(classify(k), Kind::OldChunk(_) | Kind::Meta))
            .map(|(k, e)| {
                let content = Content::Object {
                    key: k.clone(),
                    md5: e.md5.clone(),
                    stored_size: None,
                };
                let file = FileRef {
                    size: e.size,
                    content,
                    chunk: e.chunk.clone(),
                    stamp: None,
                };
                (k.clone(), file)
            })
            .collect();
        let finished = self.finished.unwrap_or(self.started);
        let point = Point {
            format: FORMAT,
            id: self.run_id.clone(),
            seq: 0,
            time: finished,
            finished,
            tool_version: "esbackup 0.1".into(),
            host: self.host.clone(),
            source_db: self.source_db.clone(),
            source_index: self.source_index.clone(),
            chunk_size,
            checkpoints: self.checkpoints,
            bytes_added: self.files.values().map(|e| e.size).sum(),
            plain_added: None,
            notes: self.notes.clone(),
            files,
            pages: Vec::new(),
            node_state: None,
            log_times: None,
        };
        point.check().map_err(|why| {
            EngineError::damaged(format!("{} in {location}: {why}", layout::LEGACY_MANIFEST))
        })?;
        Ok(point)
    }
}

/// Whether a root object can be changed by a later run: everything but completed chunks and
/// index tables (immutable by name) is copied out of the way before a 0.1 state becomes a point.
fn changes_in_place(key: &str, file: &FileRef) -> bool {
    match classify(key) {
        Kind::Chunk(_) => !file.chunk.as_ref().is_some_and(|c| c.completed),
        Kind::PTable(_) | Kind::Bloom(_) => false,
        _ => true,
    }
}

/// Stores a 0.1 state as a real restore point: small files that change in place go into the
/// point itself, larger ones are copied (server-side) under `.esbackup/data/`, so that the
/// next runs may overwrite the root. Returns the point as stored.
pub(crate) async fn store_as_point(target: &dyn Target, mut point: Point) -> Result<Point> {
    const INLINE_LIMIT: u64 = 64 * 1024;
    for (key, file) in point.files.iter_mut() {
        if !changes_in_place(key, file) {
            continue;
        }
        let Content::Object {
            key: stored,
            md5,
            stored_size,
        } = &file.content
        else {
            continue;
        };
        if file.size <= INLINE_LIMIT {
            let data = get_bytes(target, stored)
                .await
                .map_err(|e| EngineError::storage(stored, e))?;
            let found = hex::encode(crate::hashing::md5(&data));
            if &found != md5 {
                return Err(EngineError::damaged(format!(
                    "{stored} in {} no longer matches what esbackup 0.1 recorded: run `esbackup backup --full` to start a fresh history",
                    target.describe()
                )));
            }
            file.content = Content::Inline { data };
        } else {
            let copy = layout::data_key(key, &point.id);
            target
                .copy(stored, &copy)
                .await
                .map_err(|e| EngineError::storage(stored, e))?;
            file.content = Content::Object {
                key: copy,
                md5: md5.clone(),
                stored_size: *stored_size,
            };
        }
    }
    point.notes.push(
        "converted from the location's esbackup 0.1 manifest (restore point of its last run)"
            .into(),
    );
    point.store(target, &Default::default()).await?;
    Ok(point)
}
