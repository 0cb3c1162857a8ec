//! The index part of the vendor procedure, made safe on a live node: snapshot `indexmap`, copy
//! exactly the PTables it names (each after its MD5 verifies), and loop while `indexmap`
//! changes. The snapshot itself is written later, after `chaser.chk` (see `log.rs`).

use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};

use super::run::{CopyFailure, Run};
use crate::error::{EngineError, Result};
use crate::format::indexmap::{self, IndexMap};
use crate::format::ptable;
use crate::layout::{self, index_key};

/// What happened to one table of a snapshot.
enum TableOutcome {
    Stored,
    /// Gone: the index changed under the copy.
    Changed,
    /// Present but failing its MD5: damaged, unless the index changed meanwhile.
    Damaged(String),
}

impl Run {
    pub(crate) async fn backup_index(&mut self) -> Result<()> {
        if !self.dirs.has_index()? {
            self.note(format!(
                "no index in {} yet (no indexmap): index tables skipped",
                self.dirs.index.display()
            ));
            return self.backup_index_extras().await;
        }
        let rounds = self.opts.index_rounds.max(1);
        for round in 1..=rounds {
            self.index_rounds = round;
            let Some(snapshot) = self.read_indexmap().await? else {
                return Err(EngineError::SourceChanging(format!(
                    "{} stayed missing for {:?}: is the node rebuilding its index? Try again later",
                    self.dirs.index.join(indexmap::FILE_NAME).display(),
                    self.opts.indexmap_wait
                )));
            };
            let map = match IndexMap::parse(&snapshot) {
                Ok(map) => map,
                Err(e) => {
                    tracing::info!("indexmap unreadable ({e}); reading it again");
                    continue;
                }
            };
            let outcomes: Vec<TableOutcome> = stream::iter(map.tables.iter())
                .map(|t| self.copy_table(&t.file))
                .buffer_unordered(self.opts.concurrency.max(1))
                .try_collect()
                .await?;
            let changed = outcomes.iter().any(|o| matches!(o, TableOutcome::Changed));
            let again = self.read_indexmap().await?;
            if !changed && again.as_ref() == Some(&snapshot) {
                // A table the unchanged indexmap names was whole before the indexmap was
                // written: if it fails its MD5 now, it is damaged on disk.
                if let Some(TableOutcome::Damaged(why)) = outcomes
                    .iter()
                    .find(|o| matches!(o, TableOutcome::Damaged(_)))
                {
                    return Err(EngineError::NotADatabase(format!(
                        "index table {why} although indexmap names it: the node's index is damaged; start the node with an empty `.forceverify` file in its index folder so it checks and rebuilds its tables, then back up again"
                    )));
                }
                self.indexmap = Some(snapshot);
                return self.backup_index_extras().await;
            }
            tracing::info!("the index changed during round {round}; copying it again");
        }
        Err(EngineError::SourceChanging(format!(
            "the index changed {rounds} times while it was copied: the node is merging index tables heavily; try again later"
        )))
    }

    /// Reads `indexmap`, waiting (with backoff) while it is missing, as the server deletes it
    /// before moving the new one in. `None` if it stays missing.
    async fn read_indexmap(&self) -> Result<Option<Bytes>> {
        let path = self.dirs.index.join(indexmap::FILE_NAME);
        let deadline = Instant::now() + self.opts.indexmap_wait;
        let mut delay = Duration::from_millis(5);
        loop {
            match std::fs::read(&path) {
                Ok(bytes) => return Ok(Some(bytes.into())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(EngineError::io(path.display(), e)),
            }
        }
    }

    /// Stores one PTable (and its bloom filter) unless the backup has it.
    async fn copy_table(&self, table: &str) -> Result<TableOutcome> {
        let key = index_key(table);
        let path = self.dirs.index.join(table);
        if !self.opts.full {
            if let Some(size) = self.remote_size(&key) {
                let entry = match self.previous_entry(&key) {
                    Some(e) if e.size == size => e,
                    _ => match self.entry_from_local(&key, None) {
                        Ok(e) => e,
                        Err(_) => return Ok(TableOutcome::Changed),
                    },
                };
                self.keep(&key, entry);
                self.copy_bloom(table).await?;
                return Ok(TableOutcome::Stored);
            }
        }
        match ptable::verify(&path) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                tracing::info!("{table}: {why}");
                return Ok(TableOutcome::Damaged(format!("{}: {why}", path.display())));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(TableOutcome::Changed),
            Err(e) => return Err(EngineError::io(path.display(), e)),
        }
        match self.upload_file(&key, &path, false).await {
            Ok(_) => {}
            Err(CopyFailure::Vanished) => return Ok(TableOutcome::Changed),
            Err(CopyFailure::Error(e)) => return Err(e),
        }
        self.copy_bloom(table).await?;
        Ok(TableOutcome::Stored)
    }

    /// Bloom filters are optional: one that is missing is skipped.
    async fn copy_bloom(&self, table: &str) -> Result<()> {
        let name = format!("{table}{}", ptable::BLOOM_SUFFIX);
        let key = index_key(&name);
        let path = self.dirs.index.join(&name);
        if !path.exists() {
            return Ok(());
        }
        if !self.opts.full {
            if let (Some(size), Some(entry)) = (self.remote_size(&key), self.previous_entry(&key)) {
                if entry.size == size {
                    self.keep(&key, entry);
                    return Ok(());
                }
            }
        }
        match self.upload_file(&key, &path, false).await {
            Ok(_) | Err(CopyFailure::Vanished) => Ok(()),
            Err(CopyFailure::Error(e)) => Err(e),
        }
    }

    /// Stream-existence filter data (its checkpoint is captured first and written with the
    /// database checkpoints) and the scavenge database.
    async fn backup_index_extras(&mut self) -> Result<()> {
        let chk_path = self.dirs.index.join(layout::STREAM_EXISTENCE_CHK);
        self.stream_existence_chk = match std::fs::read(&chk_path) {
            Ok(b) => Some(b.into()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(EngineError::io(chk_path.display(), e)),
        };
        let dat = layout::STREAM_EXISTENCE_DAT;
        self.sync_mutable(&index_key(dat), &self.dirs.index.join(dat))
            .await?;
        self.backup_scavenge_db().await
    }

    /// `scavenging.db` with its `-wal`/`-shm` when present. A stale WAL in the backup is
    /// deleted before a new database is stored, so the two never mismatch.
    async fn backup_scavenge_db(&self) -> Result<()> {
        let db = self.dirs.index.join(layout::SCAVENGING_DB);
        if !db.exists() {
            return Ok(());
        }
        for side in [layout::SCAVENGING_WAL, layout::SCAVENGING_SHM] {
            let key = index_key(side);
            if !self.dirs.index.join(side).exists() && self.remote_size(&key).is_some() {
                self.delete(&key).await?;
            }
        }
        for file in [
            layout::SCAVENGING_DB,
            layout::SCAVENGING_WAL,
            layout::SCAVENGING_SHM,
        ] {
            self.sync_mutable(&index_key(file), &self.dirs.index.join(file))
                .await?;
        }
        Ok(())
    }
}
