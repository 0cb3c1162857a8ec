//! The log part: capture the checkpoints (chaser, epoch, writer, proposal) before listing and
//! copying chunks; store chunk files; then write the checkpoints and `indexmap` in the order
//! that keeps every intermediate state of the backup consistent.

use std::io;

use futures::{stream, StreamExt, TryStreamExt};

use super::run::{local_md5, CopyFailure, Run};
use crate::error::{EngineError, Result};
use crate::format::checkpoint;
use crate::layout::{self, index_key};
use crate::source::{resolve_chunks, SourceChunk};

impl Run {
    /// Reads the checkpoints in the documented order: chaser, epoch, writer, proposal.
    pub(crate) fn capture_checkpoints(&mut self) -> Result<()> {
        let mut values = [-1i64; 4];
        for (i, name) in checkpoint::BACKED_UP.iter().enumerate() {
            let path = self.dirs.db.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    values[i] = checkpoint::decode(&bytes).map_err(|e| {
                        EngineError::NotADatabase(format!("{}: {e}", path.display()))
                    })?;
                    self.captured.push((name.to_string(), bytes.into()));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if matches!(*name, checkpoint::WRITER | checkpoint::CHASER) {
                        return Err(EngineError::NotADatabase(format!(
                            "{} is missing: {} is not a complete database",
                            path.display(),
                            self.dirs.db.display()
                        )));
                    }
                }
                Err(e) => return Err(EngineError::io(path.display(), e)),
            }
        }
        for name in layout::EXTRA_CHECKPOINTS {
            if let Ok(bytes) = std::fs::read(self.dirs.db.join(name)) {
                self.captured.push((name.to_string(), bytes.into()));
            }
        }
        let [chaser, epoch, writer, proposal] = values;
        if chaser > writer {
            return Err(EngineError::NotADatabase(format!(
                "chaser.chk ({chaser}) is beyond writer.chk ({writer}) in {}: the database is inconsistent",
                self.dirs.db.display()
            )));
        }
        self.checkpoints = crate::manifest::Checkpoints {
            writer,
            chaser,
            epoch,
            proposal,
        };
        Ok(())
    }

    /// Lists the chunk files (after the checkpoints were captured) and stores those the backup
    /// lacks, never one that starts beyond the captured writer's chunk.
    pub(crate) async fn backup_chunks(&mut self) -> Result<()> {
        let names = self.dirs.chunk_names()?;
        let (kept, superseded) = resolve_chunks(&self.dirs, &names).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                super::vanished("a chunk file")
            } else {
                EngineError::NotADatabase(e.to_string())
            }
        })?;
        self.superseded = superseded.iter().map(|n| n.to_string()).collect();
        let chunk_size = kept
            .first()
            .map(|c| c.info.header.chunk_size)
            .ok_or_else(|| {
                EngineError::NotADatabase(format!(
                    "{} has no chunk files left",
                    self.dirs.db.display()
                ))
            })?;
        if let Some(odd) = kept.iter().find(|c| c.info.header.chunk_size != chunk_size) {
            return Err(EngineError::NotADatabase(format!(
                "{} says chunk size {} but {} says {chunk_size}: mixed databases in {}",
                odd.name,
                odd.info.header.chunk_size,
                kept[0].name,
                self.dirs.db.display()
            )));
        }
        self.chunk_size = chunk_size;
        let writer_chunk = (self.checkpoints.writer / chunk_size as i64) as u32;
        let (store, beyond): (Vec<SourceChunk>, Vec<SourceChunk>) =
            kept.into_iter().partition(|c| c.name.start <= writer_chunk);
        self.beyond_writer = beyond.iter().map(|c| c.key()).collect();
        self.check_coverage(&store, writer_chunk)?;
        let total = store.iter().map(|c| c.info.file_len).sum();
        self.opts.progress.phase("chunks", total);
        stream::iter(store.iter())
            .map(|c| self.backup_chunk(c))
            .buffer_unordered(self.opts.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// The chunks must cover the log from the first one (a node with archiving may have dropped
    /// older ones) up to the writer checkpoint: the server refuses a gap below the writer.
    fn check_coverage(&self, store: &[SourceChunk], writer_chunk: u32) -> Result<()> {
        let mut next = store.first().map_or(0, |c| c.name.start);
        for chunk in store {
            if chunk.name.start > next {
                return Err(EngineError::NotADatabase(format!(
                    "{} has no chunk {next} although the writer checkpoint is beyond it: the database is damaged, or a scavenge is replacing chunks (stop it and run again)",
                    self.dirs.db.display()
                )));
            }
            next = next.max(chunk.info.header.end + 1);
        }
        let writer = self.checkpoints.writer;
        let needed = writer_chunk + u32::from(writer % self.chunk_size as i64 != 0);
        if next < needed {
            return Err(EngineError::NotADatabase(format!(
                "writer.chk ({writer}) points into chunk {} but {} has chunks only up to {}: the database is incomplete",
                needed - 1,
                self.dirs.db.display(),
                next as i64 - 1
            )));
        }
        Ok(())
    }

    async fn backup_chunk(&self, chunk: &SourceChunk) -> Result<()> {
        let key = chunk.key();
        let path = self.dirs.chunk_path(&chunk.name);
        let id = chunk.info.header.chunk_id.to_string();
        let stored = self.previous_entry(&key);
        let remote_size = self.remote_size(&key);
        if chunk.info.is_completed() && !self.opts.full {
            // A completed chunk never changes: the backup's copy is good if the manifest says
            // it stored this very chunk completed. Without such an entry (a run was killed
            // after storing it) it is copied again: the stored copy may be an active version.
            if let Some(entry) = stored.as_ref().filter(|e| {
                remote_size == Some(chunk.info.file_len)
                    && e.size == chunk.info.file_len
                    && e.chunk.as_ref().is_some_and(|c| c.completed && c.id == id)
            }) {
                self.keep(&key, entry.clone());
                return Ok(());
            }
        } else if !chunk.info.is_completed() {
            let md5 = local_md5(&path)
                .map_err(|e| EngineError::io(path.display(), e))?
                .ok_or_else(|| super::vanished(&key))?;
            if let Some(entry) = self.holds_same(&key, chunk.info.file_len, &md5) {
                self.keep(&key, entry);
                return Ok(());
            }
        }
        let overwrites_copy_in_progress = remote_size.is_some()
            && !stored
                .as_ref()
                .and_then(|e| e.chunk.as_ref())
                .is_some_and(|c| c.completed && c.id == id);
        if overwrites_copy_in_progress {
            // The vendor's `.old` step: keep the last backed-up version until prune.
            self.target
                .copy(&key, &format!("{key}{}", layout::OLD_SUFFIX))
                .await?;
            self.remote
                .lock()
                .unwrap()
                .insert(format!("{key}{}", layout::OLD_SUFFIX), remote_size.unwrap());
        }
        match self.upload_file(&key, &path, true).await {
            Ok(_) => Ok(()),
            Err(CopyFailure::Vanished) => Err(super::vanished(&path.display().to_string())),
            Err(CopyFailure::Error(e)) => Err(e),
        }
    }

    /// Writes the captured checkpoints — writer first and chaser last, so chaser ≤ writer and
    /// epoch ≤ writer hold at every moment — then the stream-existence checkpoint and the
    /// `indexmap` snapshot, whose commit checkpoint is below the chaser just written.
    pub(crate) async fn write_checkpoints_and_indexmap(&mut self) -> Result<()> {
        const ORDER: [&str; 4] = [
            checkpoint::WRITER,
            checkpoint::EPOCH,
            checkpoint::PROPOSAL,
            checkpoint::CHASER,
        ];
        let mut captured = self.captured.clone();
        captured.sort_by_key(|(name, _)| ORDER.iter().position(|o| o == name).unwrap_or(2));
        for (name, bytes) in captured {
            self.upload_bytes(&name, bytes).await?;
        }
        if let Some(chk) = self.stream_existence_chk.clone() {
            self.upload_bytes(&index_key(layout::STREAM_EXISTENCE_CHK), chk)
                .await?;
        }
        if let Some(map) = self.indexmap.clone() {
            self.upload_bytes(&index_key(crate::format::indexmap::FILE_NAME), map)
                .await?;
        }
        Ok(())
    }

    /// KurrentDB's secondary index (DuckDB) is changed in place and cannot be copied from a
    /// live node; it is copied only when asked (node stopped).
    pub(crate) async fn backup_secondary_index(&mut self) -> Result<()> {
        let present: Vec<&str> = layout::SECONDARY_INDEX
            .into_iter()
            .filter(|f| self.dirs.db.join(f).exists())
            .collect();
        if present.is_empty() {
            return Ok(());
        }
        if !self.opts.include_secondary_index {
            self.note(format!(
                "secondary index {} not copied: it changes in place and cannot be copied consistently from a live node (vendor docs), so a restored node lacks it. To include it, stop the node and pass --include-secondary-index",
                present.join(", ")
            ));
            return Ok(());
        }
        for file in present {
            self.sync_mutable(file, &self.dirs.db.join(file)).await?;
        }
        Ok(())
    }
}
