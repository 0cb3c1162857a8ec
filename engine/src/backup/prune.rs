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
            // Order: index files, then chunks, then `.old` copies (the vendor's last step).
            let rank = match layout::classify(&key) {
                Kind::PTable(_) | Kind::Bloom(_) if index_captured => 0,
                Kind::IndexOther(_) => 0,
                Kind::Chunk(_) => 1,
                Kind::OldChunk(_) => 2,
                Kind::SecondaryIndex(_) if !self.opts.include_secondary_index => 1,
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
