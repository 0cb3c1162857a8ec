//! What a run looks up before planning, beyond the capture: whether the stored bytes of each
//! growing chunk are still the file's, and what root objects the previous point does not name
//! hold (left by an interrupted run, or needed by an older point). After planning: which root
//! copies of the new point's files were lost meanwhile ([`mirror_repairs`]).

use std::collections::{BTreeMap, BTreeSet};

use futures::{stream, StreamExt, TryStreamExt};

use super::plan::{Action, BackupPlan, Captured, Mirror, Probes, RootObject};
use crate::error::{EngineError, Result};
use crate::format::chunk::{ChunkHeader, FOOTER_LEN, HEADER_LEN};
use crate::format::MD5_LEN;
use crate::hashing::md5_of_range;
use crate::layout::{classify, Kind, INDEX_DIR};
use crate::location::Location;
use crate::point::{Content, Point};
use crate::target::{Target, TargetError};

/// A root object the plan may write, and what identifies the local file it would hold.
struct Candidate {
    key: String,
    path: std::path::PathBuf,
    handle: Option<std::sync::Arc<std::fs::File>>,
    len: u64,
    /// The chunk id, for chunk files.
    chunk_id: Option<String>,
}

pub(crate) async fn probe(
    location: &Location,
    captured: &Captured,
    previous: Option<&Point>,
) -> Result<Probes> {
    let tails_intact = intact_tails(captured, previous).await;
    let candidates = candidates(captured, previous);
    if candidates.is_empty() {
        return Ok(Probes {
            tails_intact,
            root: BTreeMap::new(),
        });
    }
    let target = location.target.as_ref();
    if target.encodes() {
        // Listed sizes are stored sizes there, and a point records the stored size of each
        // object: adopt nothing, only learn which root names a point needs.
        let listed = list_root(target).await?;
        let present = candidates
            .into_iter()
            .filter(|c| listed.contains_key(&c.key));
        let others = present.map(|c| c.key).collect::<Vec<_>>();
        let root = match others.is_empty() {
            true => BTreeMap::new(),
            false => classify_others(location, others)
                .await?
                .into_iter()
                .collect(),
        };
        return Ok(Probes { tails_intact, root });
    }
    let listed = list_root(target).await?;
    let present: Vec<(Candidate, u64)> = candidates
        .into_iter()
        .filter_map(|c| listed.get(&c.key).map(|&size| (c, size)))
        .collect();
    let checks: Vec<_> = present
        .iter()
        .map(|(c, size)| async move {
            Ok::<_, EngineError>((c.key.clone(), holds(target, c, *size).await?))
        })
        .collect();
    let same: Vec<(String, bool)> = stream::iter(checks)
        .buffer_unordered(8)
        .try_collect()
        .await?;
    let mut root = BTreeMap::new();
    let mut others: Vec<String> = Vec::new();
    for (key, is_same) in same {
        if is_same {
            root.insert(key, RootObject::Same);
        } else {
            others.push(key);
        }
    }
    if !others.is_empty() {
        root.extend(classify_others(location, others).await?);
    }
    Ok(Probes { tails_intact, root })
}

/// The completed chunks and index files the previous point does not store at their own root
/// name: the root objects a plan may write.
fn candidates(captured: &Captured, previous: Option<&Point>) -> Vec<Candidate> {
    let named_at_root = |key: &str| {
        previous.is_some_and(|p| {
            matches!(p.files.get(key).map(|f| &f.content), Some(Content::Object { key: k, .. }) if k == key)
        })
    };
    let chunks = captured.chunks.chunks.iter().filter(|c| !c.is_growing());
    let chunks = chunks.map(|c| Candidate {
        key: c.key(),
        path: c.path.clone(),
        handle: None,
        len: c.info.file_len,
        chunk_id: Some(c.info.header.chunk_id.to_string()),
    });
    let index_files = captured
        .index
        .tables
        .iter()
        .flat_map(|t| std::iter::once(&t.table).chain(t.bloom.as_ref()))
        .map(|f| Candidate {
            key: f.key.clone(),
            path: f.path.clone(),
            handle: Some(f.file.clone()),
            len: f.len,
            chunk_id: None,
        });
    chunks
        .chain(index_files)
        .filter(|c| !named_at_root(&c.key))
        .collect()
}

/// Key → size of the root's chunk and index objects.
async fn list_root(target: &dyn Target) -> Result<BTreeMap<String, u64>> {
    let mut listed = BTreeMap::new();
    for prefix in ["chunk-", INDEX_DIR] {
        for o in target
            .list(prefix)
            .await
            .map_err(|e| EngineError::storage("listing the backup location", e))?
        {
            listed.insert(o.key, o.size);
        }
    }
    Ok(listed)
}

/// Rare: root names that hold another file than the local one. Whether a point needs one
/// decides whether it may be replaced; a damaged point may need any of them, so then none is.
async fn classify_others(
    location: &Location,
    others: Vec<String>,
) -> Result<Vec<(String, RootObject)>> {
    let points = location.points().await?;
    let needed: BTreeSet<String> = points
        .readable
        .iter()
        .flat_map(|p| p.objects().into_iter().map(|o| o.key))
        .collect();
    Ok(others
        .into_iter()
        .map(|key| {
            let state = if needed.contains(&key) || !points.damaged.is_empty() {
                RootObject::Needed
            } else {
                RootObject::Unneeded
            };
            (key, state)
        })
        .collect())
}

/// Root copies of the new point's files (inline ones, and those stored under `.esbackup/data/`)
/// that the root lacks or holds at another size — deleted or damaged since the run that wrote
/// them — and that the plan does not rewrite anyway: the README promises that the root is a
/// plain copy of the newest point. One `head` per such file (checkpoints, `indexmap`, the
/// stream-existence filter, the scavenge database). In the plan's order, `chaser.chk` last.
pub(crate) async fn mirror_repairs(target: &dyn Target, plan: &BackupPlan) -> Result<Vec<Mirror>> {
    let planned: BTreeSet<&str> = plan
        .mirrors
        .iter()
        .map(|m| match m {
            Mirror::Bytes { key, .. } | Mirror::Delete { key } => key.as_str(),
            Mirror::Copy { to, .. } => to.as_str(),
        })
        .collect();
    let mut wanted = Vec::new();
    for f in plan
        .files
        .iter()
        .filter(|f| !planned.contains(f.key.as_str()))
    {
        let content = match &f.action {
            Action::Inline { data, .. } => Some(Content::Inline { data: data.clone() }),
            Action::Keep(r) => Some(r.content.clone()),
            _ => None,
        };
        let mirror = match content {
            Some(Content::Inline { data }) => Mirror::Bytes {
                key: f.key.clone(),
                data,
            },
            Some(Content::Object { key, .. }) if key != f.key => Mirror::Copy {
                from: key,
                to: f.key.clone(),
            },
            _ => continue,
        };
        wanted.push((f.key.clone(), f.size, mirror));
    }
    let heads: Vec<_> = wanted
        .into_iter()
        .map(|(key, size, mirror)| async move {
            match target.head(&key).await {
                Ok(o) if o.size == size => Ok(None),
                Ok(_) => Ok(Some(mirror)),
                Err(e) if e.is_not_found() => Ok(Some(mirror)),
                Err(e) => Err(EngineError::storage(&key, e)),
            }
        })
        .collect();
    let mut repairs: Vec<Mirror> = stream::iter(heads)
        .buffered(8)
        .try_filter_map(|m| async move { Ok(m) })
        .try_collect()
        .await?;
    repairs.sort_by_key(
        |m| matches!(m, Mirror::Bytes { key, .. } if key == crate::format::checkpoint::CHASER),
    );
    Ok(repairs)
}

/// Growing chunks whose stored tail window still hashes the same in the source.
async fn intact_tails(captured: &Captured, previous: Option<&Point>) -> BTreeSet<String> {
    let mut intact = BTreeSet::new();
    let Some(previous) = previous else {
        return intact;
    };
    for c in captured.chunks.chunks.iter().filter(|c| c.is_growing()) {
        let key = c.key();
        let Some(Content::Segments { tail, .. }) = previous.files.get(&key).map(|f| &f.content)
        else {
            continue;
        };
        if let Ok(md5) = md5_of_range(&c.path, None, tail.at, tail.len).await {
            if hex::encode(md5) == tail.md5 {
                intact.insert(key);
            }
        }
    }
    intact
}

/// Whether the stored object `c.key` (of `size` bytes) is the local file: same size, and the
/// same chunk id and footer, or the same trailing MD5 for an index table, or (bloom filters,
/// named after their table's GUID) the same size.
async fn holds(target: &dyn Target, c: &Candidate, size: u64) -> Result<bool> {
    if size != c.len {
        return Ok(false);
    }
    let kind = classify(&c.key);
    let tail_len = match kind {
        Kind::Chunk(_) => FOOTER_LEN,
        Kind::PTable(_) => MD5_LEN,
        _ => return Ok(true),
    };
    if size < tail_len + HEADER_LEN.min(size) {
        return Ok(false);
    }
    let local_tail = read_local(c, size - tail_len, tail_len)?;
    let stored_tail = ranged(target, &c.key, size - tail_len..size).await?;
    if stored_tail != local_tail {
        return Ok(false);
    }
    if let Some(id) = &c.chunk_id {
        let header = ranged(target, &c.key, 0..HEADER_LEN).await?;
        let Ok(header) = <[u8; HEADER_LEN as usize]>::try_from(header.as_slice()) else {
            return Ok(false);
        };
        return Ok(ChunkHeader::decode(&header).is_ok_and(|h| &h.chunk_id.to_string() == id));
    }
    Ok(true)
}

fn read_local(c: &Candidate, at: u64, len: u64) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len as usize];
    let file = match &c.handle {
        Some(h) => h.clone(),
        None => std::sync::Arc::new(
            std::fs::File::open(&c.path).map_err(|e| crate::source::open_failure(&c.path, e))?,
        ),
    };
    file.read_exact_at(&mut buf, at)
        .map_err(|e| crate::source::open_failure(&c.path, e))?;
    Ok(buf)
}

async fn ranged(target: &dyn Target, key: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
    let parts: Vec<bytes::Bytes> = match target.get(key, Some(range)).await {
        Ok(s) => s.try_collect().await,
        Err(e) => Err(e),
    }
    .map_err(|e: TargetError| EngineError::storage(key, e))?;
    Ok(parts.concat())
}
