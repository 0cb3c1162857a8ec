//! Restore to a log position, a moment, or just before a stream's deletion: which point to
//! restore from, the record boundary `truncate.chk` gets, and the files the node then needs.
//!
//! A node started with `truncate.chk` below its writer checkpoint truncates its log there
//! (docs/FORMAT.md, "Truncation at start-up and the index"). So a point whose log reaches the
//! position, restored with `truncate.chk` at a record boundary at or before it, gives back the
//! log exactly up to that boundary. What is chosen, before anything is written:
//!
//! - **the point**: the earliest one whose log reaches the position and holds the chunk the
//!   position falls in unscavenged — the server truncates a scavenged chunk from its start,
//!   which would lose more than asked; none such is bad usage, naming what can be reached;
//! - **the boundary**: the end of the last record that ends at or before the position, and at
//!   which no transaction begun in that chunk is still waiting for its commit;
//! - **the files** (docs/FORMAT.md §T.6): the point's, without the chunk files from the
//!   boundary on (the truncator would refuse a file beyond the writer chunk), with `writer.chk`
//!   and `chaser.chk` at the boundary (the truncator's 256 MiB `MaxTruncation` guard then always
//!   passes); the index tables and scavenge state of the newest point taken before the log
//!   reached the boundary, so that the node re-indexes only from there (an index at or beyond
//!   the boundary makes the node copy the whole index aside and rebuild it from 0; a scavenge
//!   state from after it could make the next scavenge drop the events the restore brings
//!   back), or none (the node rebuilds them); no secondary index (it has no truncation of its
//!   own: the node rebuilds it).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::format::checkpoint;
use crate::format::chunk::{ChunkHeader, ChunkName, HEADER_LEN};
use crate::format::indexmap::{self, IndexMap};
use crate::format::record::PrepareFlags;
use crate::layout::{classify, Kind, INDEX_DIR};
use crate::location::Location;
use crate::log::{point_records, Bound, LogFilter, RecordKind};
use crate::point::{Content, FileRef, Point};
use crate::status::PointSummary;
use crate::target::Target;

/// How far into the log to restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upto {
    /// Up to and including the last record that ends at or before this log position.
    Position(i64),
    /// Up to the last record whose own time is before this moment.
    Before(DateTime<Utc>),
    /// Up to just before the newest record that deleted (or truncated) this stream.
    BeforeStreamDelete(String),
}

/// What a restore to a position chose, for its report.
#[derive(Clone, Debug, Serialize)]
pub struct Cut {
    /// The log position asked for (resolved from the time or the deletion).
    pub asked: i64,
    /// The record boundary `truncate.chk` is set to.
    pub boundary: i64,
    /// Why this point, in a sentence.
    pub why: String,
}

/// The point to restore (without the chunks the truncation removes) and where it is cut.
pub(crate) async fn choose(location: &Location, upto: &Upto) -> Result<(Point, Cut)> {
    let points = location.summaries().await?.readable;
    let Some(newest) = points.last() else {
        return Err(location.no_backup());
    };
    let asked = resolve(location, &points, upto).await?;
    if asked < 0 || asked > newest.writer {
        return Err(EngineError::invalid_input(format!(
            "log position {asked} is not in the backup: the newest point {} ends at {} (the nearest position that can be reached)",
            newest.id, newest.writer
        )));
    }
    let target = location.target.as_ref();
    let mut scavenged = Vec::new();
    for summary in points.iter().filter(|p| p.writer >= asked) {
        let point = location.point(&summary.id).await?;
        let Some((key, file, start)) = chunk_at(&point, asked) else {
            continue;
        };
        if is_scavenged(target, &key, file).await? {
            scavenged.push((key, start));
            continue;
        }
        let boundary = boundary(location, &point, start, asked).await?;
        let index = index_below(location, &points, boundary).await?;
        let why = format!(
            "point {} is the earliest whose log reaches {asked} with {key} unscavenged; index tables: {}",
            point.id,
            index.as_ref().map_or("none (the node rebuilds its index)".to_string(), |p| format!("point {}'s", p.id))
        );
        let cut = Cut {
            asked,
            boundary,
            why,
        };
        return Ok((cut_point(point, boundary, index.as_ref()), cut));
    }
    Err(unreachable(asked, &scavenged, newest))
}

/// The log position `upto` names, read from the newest point's records where it takes them.
async fn resolve(location: &Location, points: &[PointSummary], upto: &Upto) -> Result<i64> {
    let newest = points.last().expect("a point");
    let filter = match upto {
        Upto::Position(p) => return Ok(*p),
        Upto::Before(t) => LogFilter {
            // Records well before the points taken before `t` need not be read.
            from: (points.iter())
                .filter(|p| p.time < *t - chrono::Duration::minutes(1))
                .map(|p| Bound::Position(p.writer))
                .next_back(),
            ..LogFilter::default()
        },
        Upto::BeforeStreamDelete(stream) => LogFilter {
            stream: Some(stream.clone()),
            deletes: true,
            ..LogFilter::default()
        },
    };
    let point = location.point(&newest.id).await?;
    let mut records = point_records(location.target.clone(), &point, filter);
    let mut found = None;
    while let Some(rec) = records.next().await {
        let rec = rec?;
        match upto {
            Upto::Before(t) if rec.time >= *t => return Ok(rec.position),
            Upto::BeforeStreamDelete(_) => found = Some(rec.position),
            _ => {}
        }
    }
    match (upto, found) {
        (Upto::BeforeStreamDelete(_), Some(p)) => Ok(p),
        (Upto::BeforeStreamDelete(stream), None) => Err(EngineError::invalid_input(format!(
            "the newest point {} holds no deletion of stream {stream:?} (see `esbackup log --deletes`)",
            newest.id
        ))),
        // Every record is before the moment: the whole log of the newest point.
        _ => Ok(newest.writer),
    }
}

/// The chunk file of `point` that holds log position `p`, and its first position.
fn chunk_at(point: &Point, p: i64) -> Option<(String, &FileRef, i64)> {
    let size = point.chunk_size as i64;
    point.files.iter().find_map(|(key, f)| {
        let name = ChunkName::parse(key)?;
        let end = f.chunk.as_ref().map_or(name.start, |c| c.end) as i64;
        let (start, end) = (name.start as i64 * size, (end + 1) * size);
        (start <= p && p < end).then(|| (key.clone(), f, start))
    })
}

/// Whether the stored chunk is a scavenged (or merged) one, as its header says. A growing
/// chunk never is.
async fn is_scavenged(target: &dyn Target, key: &str, file: &FileRef) -> Result<bool> {
    let Content::Object { key: stored, .. } = &file.content else {
        return Ok(false);
    };
    let read = async {
        let parts: Vec<bytes::Bytes> = target
            .get(stored, Some(0..HEADER_LEN))
            .await?
            .try_collect()
            .await?;
        Ok::<_, crate::target::TargetError>(parts.concat())
    };
    let bytes = read.await.map_err(|e| EngineError::storage(stored, e))?;
    let header: &[u8; HEADER_LEN as usize] = bytes.as_slice().try_into().map_err(|_| {
        EngineError::damaged(format!("{key} ({stored}): shorter than a chunk header"))
    })?;
    let header = ChunkHeader::decode(header)
        .map_err(|e| EngineError::damaged(format!("{key} ({stored}): {e}")))?;
    Ok(header.is_scavenged)
}

/// The last record boundary at or before `asked` in the chunk that starts at `start`, where
/// no transaction begun in that chunk waits for its commit.
async fn boundary(location: &Location, point: &Point, start: i64, asked: i64) -> Result<i64> {
    let filter = LogFilter {
        from: Some(Bound::Position(start)),
        to: Some(Bound::Position(asked)),
        ..LogFilter::default()
    };
    let mut records = point_records(location.target.clone(), point, filter);
    let mut open: BTreeSet<i64> = BTreeSet::new();
    let mut best = start;
    while let Some(rec) = records.next().await {
        let rec = rec?;
        match rec.kind {
            RecordKind::Prepare
                if rec.flags.has(PrepareFlags::TRANSACTION_BEGIN)
                    && !rec.flags.has(PrepareFlags::IS_COMMITTED) =>
            {
                open.insert(rec.transaction_position.unwrap_or(rec.position));
            }
            RecordKind::Commit => {
                open.remove(&rec.transaction_position.unwrap_or(-1));
            }
            _ => {}
        }
        if open.is_empty() && rec.next_position <= asked {
            best = rec.next_position;
        }
    }
    Ok(best)
}

/// The newest point taken before the log reached `boundary` (its writer at or below it) with
/// an `indexmap`: its index tables (commit checkpoint below the boundary) let the node
/// re-index from there, and neither they nor its scavenge state know of anything after the
/// boundary — an index or a state from later could lack entries a scavenge after the boundary
/// removed (docs/FORMAT.md §T.6 7, 9).
async fn index_below(
    location: &Location,
    points: &[PointSummary],
    boundary: i64,
) -> Result<Option<Point>> {
    for summary in points.iter().rev().filter(|p| p.writer <= boundary) {
        let point = location.point(&summary.id).await?;
        let commit = point
            .files
            .get(&format!("{INDEX_DIR}{}", indexmap::FILE_NAME))
            .and_then(|f| match &f.content {
                Content::Inline { data } => IndexMap::parse(data).ok().map(|m| m.commit_checkpoint),
                _ => None,
            });
        if commit.is_some_and(|c| c < boundary) {
            return Ok(Some(point));
        }
    }
    Ok(None)
}

/// What the node needs of `point` to truncate cleanly to `boundary` (see the module doc).
fn cut_point(mut point: Point, boundary: i64, index: Option<&Point>) -> Point {
    let size = point.chunk_size as i64;
    // The index tables and the scavenge state come from `index`, or not at all.
    let from_index = |key: &str| match classify(key) {
        Kind::IndexMap | Kind::PTable(_) | Kind::Bloom(_) => true,
        Kind::IndexOther(rel) => rel.starts_with("scavenging/"),
        _ => false,
    };
    point.files.retain(|key, _| match classify(key) {
        Kind::Chunk(name) => (name.start as i64) * size < boundary,
        Kind::SecondaryIndex(_) => false,
        _ => !from_index(key),
    });
    if let Some(index) = index {
        let tables = index.files.iter().filter(|(key, _)| from_index(key));
        point
            .files
            .extend(tables.map(|(k, f)| (k.clone(), f.clone())));
    }
    for name in [checkpoint::WRITER, checkpoint::CHASER] {
        point.files.insert(name.to_string(), inline(boundary));
    }
    point.checkpoints.writer = boundary;
    point.checkpoints.chaser = boundary;
    point
}

/// A checkpoint file holding `value`.
fn inline(value: i64) -> FileRef {
    FileRef {
        size: checkpoint::CHECKPOINT_LEN as u64,
        content: Content::Inline {
            data: bytes::Bytes::copy_from_slice(&value.to_le_bytes()),
        },
        chunk: None,
        stamp: None,
    }
}

/// Why no point gives `asked` exactly, with what can be reached instead.
fn unreachable(asked: i64, scavenged: &[(String, i64)], newest: &PointSummary) -> EngineError {
    let Some((key, start)) = scavenged.first() else {
        return EngineError::invalid_input(format!(
            "no restore point's log reaches position {asked}; the newest, {}, ends at {}",
            newest.id, newest.writer
        ));
    };
    EngineError::invalid_input(format!(
        "log position {asked} falls in {key}, which every point that reaches it holds scavenged ({} point(s)): the server would truncate that chunk from its start, losing more than asked. Nearest reachable: --position {start} (the chunk's start), or a position past the chunk",
        scavenged.len()
    ))
}
