//! Verify a backup without restoring it: the manifest says the run completed, every file it
//! lists is stored with the right size, the checkpoints and chunk ranges make a database; with
//! `read_data`, every file is read back and re-hashed, and chunk footers, PTables and the
//! `indexmap` are checked against their own MD5s.

use std::sync::Arc;

use futures::{stream, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::fetch::{fetch, own_check};
use crate::format::indexmap::{self, IndexMap};
use crate::layout::{classify, index_key, Kind};
use crate::manifest::{Checkpoints, FileEntry, Manifest, RunState};
use crate::retry::{RetryPolicy, RetryTarget};
use crate::target::{get_bytes, list_sizes, Target};

#[derive(Clone, Debug)]
pub struct VerifyOptions {
    pub read_data: bool,
    pub concurrency: usize,
    pub retry: RetryPolicy,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            read_data: false,
            concurrency: 4,
            retry: RetryPolicy::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub target: String,
    pub run_id: String,
    pub state: RunState,
    pub read_data: bool,
    pub files: u64,
    pub bytes: u64,
    pub checkpoints: Checkpoints,
    /// Everything wrong; empty when the backup verifies.
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

pub async fn verify(target: Arc<dyn Target>, opts: &VerifyOptions) -> Result<VerifyReport> {
    let target: Arc<dyn Target> = Arc::new(RetryTarget::new(target, opts.retry.clone()));
    let manifest = Manifest::load(target.as_ref()).await?.ok_or_else(|| {
        EngineError::NoBackup(format!(
            "no esbackup backup at {}: nothing to verify",
            target.describe()
        ))
    })?;
    let mut problems = Vec::new();
    if !manifest.is_completed() {
        problems.push(format!(
            "the latest run {} did not complete ({:?}{})",
            manifest.run_id,
            manifest.state,
            manifest
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
    }
    let listing = list_sizes(target.as_ref()).await?;
    for (key, entry) in &manifest.files {
        match listing.get(key) {
            None => problems.push(format!("{key} is missing")),
            Some(&size) if size != entry.size => problems.push(format!(
                "{key} is {size} bytes, the manifest says {}",
                entry.size
            )),
            _ => {}
        }
    }
    problems.extend(structure_problems(&manifest));
    if let Some(p) = indexmap_problem(target.as_ref(), &manifest).await? {
        problems.push(p);
    }
    if opts.read_data {
        let found: Vec<Option<String>> = stream::iter(manifest.files.iter())
            .filter(|(k, _)| futures::future::ready(listing.contains_key(*k)))
            .map(|(k, e)| read_back(target.as_ref(), k, e))
            .buffer_unordered(opts.concurrency.max(1))
            .try_collect()
            .await?;
        problems.extend(found.into_iter().flatten());
    }
    Ok(VerifyReport {
        target: target.describe(),
        run_id: manifest.run_id.clone(),
        state: manifest.state,
        read_data: opts.read_data,
        files: manifest.files.len() as u64,
        bytes: manifest.files.values().map(|e| e.size).sum(),
        checkpoints: manifest.checkpoints,
        problems,
    })
}

/// Checkpoints present and ordered; chunks contiguous up to the writer's chunk.
fn structure_problems(m: &Manifest) -> Vec<String> {
    let mut problems = Vec::new();
    for chk in ["writer.chk", "chaser.chk"] {
        if !m.files.contains_key(chk) {
            problems.push(format!("{chk} is not in the backup"));
        }
    }
    let c = m.checkpoints;
    if c.chaser > c.writer {
        problems.push(format!("chaser {} is beyond writer {}", c.chaser, c.writer));
    }
    if c.epoch > c.writer {
        problems.push(format!("epoch {} is beyond writer {}", c.epoch, c.writer));
    }
    let Some(chunk_size) = m.chunk_size else {
        problems.push("the manifest records no chunk size".into());
        return problems;
    };
    let writer_chunk = (c.writer / chunk_size as i64) as u32;
    let mut ranges: Vec<(u32, u32)> = m
        .files
        .iter()
        .filter_map(|(k, e)| match classify(k) {
            Kind::Chunk(name) => Some((name.start, e.chunk.as_ref().map_or(name.start, |c| c.end))),
            _ => None,
        })
        .collect();
    ranges.sort();
    let mut next = ranges.first().map_or(0, |r| r.0);
    for (start, end) in ranges {
        if start > next {
            problems.push(format!("chunks {next}..{} are missing", start - 1));
        }
        next = next.max(end + 1);
    }
    // Chunks below the writer's chunk must exist; the writer's own only once data is in it.
    let needed = writer_chunk + u32::from(c.writer % chunk_size as i64 != 0);
    if next < needed {
        problems.push(format!(
            "chunks end before chunk {} but the writer checkpoint {} needs them up to chunk {}",
            next,
            c.writer,
            needed - 1
        ));
    }
    problems
}

async fn indexmap_problem(target: &dyn Target, m: &Manifest) -> Result<Option<String>> {
    let key = index_key(indexmap::FILE_NAME);
    if !m.files.contains_key(&key) {
        return Ok(None);
    }
    let bytes = get_bytes(target, &key).await?;
    let map = match IndexMap::parse(&bytes) {
        Ok(map) => map,
        Err(e) => return Ok(Some(format!("{key}: {e}"))),
    };
    if map.commit_checkpoint >= m.checkpoints.chaser && map.commit_checkpoint >= 0 {
        return Ok(Some(format!(
            "indexmap commit checkpoint {} is not below chaser {}",
            map.commit_checkpoint, m.checkpoints.chaser
        )));
    }
    Ok(map
        .tables
        .iter()
        .find(|t| !m.files.contains_key(&index_key(&t.file)))
        .map(|t| format!("indexmap names table {} which the backup lacks", t.file)))
}

/// Reads one file back; returns what is wrong with it, if anything.
async fn read_back(target: &dyn Target, key: &str, entry: &FileEntry) -> Result<Option<String>> {
    let kind = classify(key);
    let hashes = fetch(target, key, None, true, &crate::progress::NoProgress).await?;
    if hashes.len != entry.size || hashes.md5_hex() != entry.md5 {
        return Ok(Some(format!(
            "{key} does not match the hash in the manifest"
        )));
    }
    let small = match kind {
        Kind::IndexMap | Kind::Checkpoint(_) => Some(get_bytes(target, key).await?),
        _ => None,
    };
    if let Some(p) = own_check(&kind, &hashes, small.as_deref()) {
        return Ok(Some(format!("{key}: {p}")));
    }
    if let Some(c) = &entry.chunk {
        if c.completed && hashes.completed_chunk_footer().is_none() {
            return Ok(Some(format!(
                "{key} was stored completed but has no footer"
            )));
        }
    }
    Ok(None)
}
