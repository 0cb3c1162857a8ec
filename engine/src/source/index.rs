//! The index part of the vendor procedure, made safe on a live node: read `indexmap`, open
//! exactly the PTables (and bloom filters) it names, and read `indexmap` again; loop while it
//! changed. An open file stays readable even when a merge deletes it afterwards, so the tables
//! captured here are the ones the captured `indexmap` names, whatever the node does next.
//!
//! A table named by an `indexmap` that stayed the same was complete before that `indexmap` was
//! written, so a table that then fails its own MD5 (checked while it uploads) is damaged on disk.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use bytes::Bytes;

use super::{open_failure, SourceDirs};
use crate::error::{EngineError, Result};
use crate::format::indexmap::{self, IndexMap};
use crate::format::ptable;
use crate::layout::index_key;

/// An index file opened during the capture.
#[derive(Clone, Debug)]
pub(crate) struct OpenedFile {
    pub key: String,
    pub path: std::path::PathBuf,
    pub file: Arc<File>,
    pub len: u64,
}

/// A PTable named by the captured `indexmap`, with its bloom filter when it has one.
#[derive(Clone, Debug)]
pub(crate) struct CapturedTable {
    pub table: OpenedFile,
    pub bloom: Option<OpenedFile>,
}

/// What the index capture found.
#[derive(Clone, Debug, Default)]
pub(crate) struct IndexCapture {
    /// The `indexmap` bytes, when the index folder has an index.
    pub indexmap: Option<Bytes>,
    pub tables: Vec<CapturedTable>,
    /// How many times `indexmap` was read before it held still.
    pub rounds: u32,
}

/// How long to wait for a missing `indexmap`, and how often it may change under the capture.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IndexLimits {
    pub indexmap_wait: Duration,
    pub rounds: u32,
}

pub(crate) async fn capture(dirs: &SourceDirs, limits: IndexLimits) -> Result<IndexCapture> {
    capture_with(dirs, limits, |path| std::fs::read(path).map(Bytes::from)).await
}

/// [`capture`], reading `indexmap` with `read` (tests make it change at will).
async fn capture_with(
    dirs: &SourceDirs,
    limits: IndexLimits,
    mut read: impl FnMut(&Path) -> io::Result<Bytes>,
) -> Result<IndexCapture> {
    if !dirs.has_index()? {
        return Ok(IndexCapture::default());
    }
    let path = dirs.index.join(indexmap::FILE_NAME);
    let rounds = limits.rounds.max(1);
    for round in 1..=rounds {
        let Some(before) = read_indexmap(&path, limits.indexmap_wait, &mut read).await? else {
            return Err(EngineError::source_changing(format!(
                "{} stayed missing for {:?} although the index folder holds tables: is the node rebuilding its index? Try again later",
                path.display(),
                limits.indexmap_wait
            )));
        };
        let opened = open_tables(dirs, &before);
        let after = read_indexmap(&path, limits.indexmap_wait, &mut read).await?;
        if after.as_ref() != Some(&before) {
            tracing::info!("the index changed during round {round}; reading it again");
            continue;
        }
        // The same indexmap before and after: what it says (or fails to say) is the index.
        let tables = opened?;
        return Ok(IndexCapture {
            indexmap: Some(before),
            tables,
            rounds: round,
        });
    }
    Err(EngineError::source_changing(format!(
        "the index changed {rounds} times while it was captured: the node is merging index tables heavily; try again later"
    )))
}

/// Opens every table `bytes` names. Errors are judged only once the indexmap held still.
fn open_tables(dirs: &SourceDirs, bytes: &[u8]) -> Result<Vec<CapturedTable>> {
    let map = IndexMap::parse(bytes).map_err(|e| {
        EngineError::not_a_database(format!(
            "{} is damaged ({e}): start the node with an empty `.forceverify` file in its index folder so it rebuilds the index, then back up again",
            dirs.index.join(indexmap::FILE_NAME).display()
        ))
    })?;
    let mut tables = Vec::with_capacity(map.tables.len());
    for t in &map.tables {
        let path = dirs.index.join(&t.file);
        let table = open(&index_key(&t.file), &path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => EngineError::not_a_database(format!(
                "{} names table {}, which is not in {}: the node's index is damaged; start the node with an empty `.forceverify` file in its index folder so it rebuilds the index, then back up again",
                dirs.index.join(indexmap::FILE_NAME).display(),
                t.file,
                dirs.index.display()
            )),
            _ => open_failure(&path, e),
        })?;
        let bloom_name = format!("{}{}", t.file, ptable::BLOOM_SUFFIX);
        let bloom_path = dirs.index.join(&bloom_name);
        // Bloom filters are optional: a missing one only costs the server some speed.
        let bloom = match open(&index_key(&bloom_name), &bloom_path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(open_failure(&bloom_path, e)),
        };
        tables.push(CapturedTable { table, bloom });
    }
    Ok(tables)
}

fn open(key: &str, path: &Path) -> io::Result<OpenedFile> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    Ok(OpenedFile {
        key: key.to_string(),
        path: path.to_path_buf(),
        file: Arc::new(file),
        len,
    })
}

/// Reads `indexmap`, waiting (with backoff) while it is missing, as the server deletes it
/// before moving the new one in. `None` if it stays missing.
async fn read_indexmap(
    path: &Path,
    wait: Duration,
    read: &mut impl FnMut(&Path) -> io::Result<Bytes>,
) -> Result<Option<Bytes>> {
    let deadline = Instant::now() + wait;
    // 5 ms doubling up to 500 ms: the server's gap between delete and move is short.
    let mut delays = backon::ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(5))
        .with_max_delay(Duration::from_millis(500))
        .without_max_times()
        .build();
    loop {
        match read(path) {
            Ok(bytes) => return Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                let delay = delays.next().unwrap_or(Duration::from_millis(500));
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(EngineError::io(path.display(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::format::indexmap::IndexMap;

    fn index_dir() -> (tempfile::TempDir, SourceDirs, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let dirs = SourceDirs::new(dir.path(), None);
        std::fs::create_dir_all(&dirs.index).unwrap();
        let map = IndexMap {
            version: 2,
            prepare_checkpoint: 10,
            commit_checkpoint: 10,
            max_auto_merge_level: Some(i32::MAX),
            tables: vec![],
        }
        .encode();
        std::fs::write(dirs.index.join("indexmap"), &map).unwrap();
        (dir, dirs, map)
    }

    fn limits(rounds: u32) -> IndexLimits {
        IndexLimits {
            indexmap_wait: Duration::from_millis(50),
            rounds,
        }
    }

    /// Captures with 7 rounds while the n-th read of `indexmap` (from 1) finds its
    /// `prepare_checkpoint` moved by `moved(n)`; also returns the number of reads.
    async fn capture_moving(moved: impl Fn(u32) -> i64) -> (Result<IndexCapture>, u32) {
        let (_dir, dirs, map) = index_dir();
        let mut reads = 0u32;
        let got = capture_with(&dirs, limits(7), |_| {
            reads += 1;
            let mut m = IndexMap::parse(&map).unwrap();
            m.prepare_checkpoint += moved(reads);
            Ok(m.encode().into())
        })
        .await;
        (got, reads)
    }

    #[tokio::test]
    async fn an_indexmap_that_keeps_changing_gives_up_after_its_rounds() {
        let (got, reads) = capture_moving(|n| n as i64).await;
        let err = got.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SourceChanging, "{err}");
        assert_eq!(reads, 14, "two reads per round, bounded");
    }

    #[tokio::test]
    async fn an_indexmap_that_holds_still_is_captured_in_the_round_it_does() {
        // Changes during rounds 1 and 2, then holds still.
        let (got, _) = capture_moving(|n| (n.min(5) / 2) as i64).await;
        assert_eq!(got.unwrap().rounds, 3);
    }

    #[tokio::test]
    async fn a_damaged_indexmap_is_reported_as_such_at_once() {
        let (_dir, dirs, mut map) = index_dir();
        map[3] ^= 1;
        let err = capture_with(&dirs, limits(20), |_| Ok(map.clone().into()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotADatabase, "{err}");
        assert!(err.to_string().contains("MD5"), "{err}");
    }
}
