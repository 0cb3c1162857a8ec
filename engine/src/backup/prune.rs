//! Deletions, last of all writes: files the source no longer has (stale PTables, chunks merged
//! away or superseded, `.old` copies). Only kinds of files esbackup stores are ever deleted.

use super::run::Run;
use crate::error::Result;
use crate::layout::{self, Kind};

impl Run {
    pub(crate) async fn prune(&mut self) -> Result<()> {
        let keep = self.files.lock().unwrap().clone();
        let remote: Vec<String> = self.remote.lock().unwrap().keys().cloned().collect();
        let index_captured = self.indexmap.is_some();
        let mut doomed: Vec<(u8, String)> = Vec::new();
        for key in remote {
            if keep.contains_key(&key) {
                continue;
            }
            // `.old` copies first: their chunk is stored again by now, and a `.old` that outlived
            // its chunk would stand in for it at restore. Then index files, then chunks.
            let rank = match layout::classify(&key) {
                Kind::OldChunk(_) => 0,
                Kind::PTable(_) | Kind::Bloom(_) if index_captured => 1,
                Kind::IndexOther(_) => 1,
                Kind::Chunk(_) => 2,
                Kind::SecondaryIndex(_) if !self.opts.include_secondary_index => 2,
                _ => continue,
            };
            doomed.push((rank, key));
        }
        doomed.sort();
        for (_, key) in doomed {
            self.delete(&key).await?;
        }
        Ok(())
    }
}
