//! The log records a restore point holds, read straight from the backup location (no restore):
//! position, time, stream, event number, type and flags of each, and the stream deletions among
//! them — what an operator looks for to choose the position or time to restore to.
//!
//! [`records`] picks the point and returns its records as a stream, in log order. Each chunk
//! file is streamed with [`Target::get`] and its records are taken one at a time: memory holds
//! one record (at most 16 MiB, the server's limit) and what the store sent beyond it, never a
//! chunk. Only the records up to the point's writer checkpoint count; the bytes are untrusted,
//! and what does not parse is [`ErrorKind::Damaged`](crate::ErrorKind::Damaged), naming the
//! chunk, its stored object and the byte offset.

mod chunk_reader;
mod describe;
mod incoming;
mod point_reader;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::{Serialize, Serializer};

use crate::error::Result;
use crate::format::record::PrepareFlags;
use crate::location::Location;
use crate::point::Point;
use crate::restore::{choose, Which};
use crate::target::Target;
use chunk_reader::Context;
use point_reader::PointReader;

pub use describe::{METADATA_EVENT_TYPE, METASTREAM_PREFIX};

/// A stream of records, in log order.
pub type RecordStream = BoxStream<'static, Result<LogRecord>>;

/// What kind of record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// An event, a tombstone or a transaction marker.
    Prepare,
    /// Commits the transaction that began at its `transaction_position`.
    Commit,
    /// An epoch.
    System,
}

/// One record of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogRecord {
    /// Its log position (where it starts).
    pub position: i64,
    /// Where the next record starts: the boundary just after this one.
    pub next_position: i64,
    pub kind: RecordKind,
    /// Its own timestamp (.NET ticks, UTC).
    pub time: DateTime<Utc>,
    /// The stream of a Prepare; of a Commit, the stream of the transaction it commits when that
    /// transaction began shortly before (in the records read).
    pub stream: Option<String>,
    /// A Prepare's event number where it says it (committed at once; `i64::MAX` for a
    /// tombstone), a Commit's first event number.
    pub event_number: Option<i64>,
    /// A Prepare's event type; `epoch` for an epoch record.
    pub event_type: Option<String>,
    /// A Prepare's flags, by name (`data`, `transaction_begin`, `transaction_end`,
    /// `stream_delete`, `committed`, `json`, `redacted`, `property_metadata`).
    #[serde(serialize_with = "flag_names")]
    pub flags: PrepareFlags,
    /// Where the transaction of a Prepare or Commit began.
    pub transaction_position: Option<i64>,
    /// The stream deletion or truncation this record makes.
    pub deletion: Option<Deletion>,
    /// The chunk file it is in.
    pub chunk: String,
}

fn flag_names<S: Serializer>(flags: &PrepareFlags, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(flags.names())
}

/// A stream deletion or truncation (see `describe` for what the server writes for each).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Deletion {
    /// The stream deleted or truncated (not its metastream).
    pub stream: String,
    pub kind: DeletionKind,
    /// The metadata's `$tb`: events before this number are gone (`i64::MAX`: all of them).
    pub truncate_before: Option<i64>,
    /// The metadata's `$maxAge`: events older than this are gone.
    pub max_age_secs: Option<i64>,
    /// The metadata's `$maxCount`: only the newest this many events are kept.
    pub max_count: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletionKind {
    /// A hard delete: the stream's tombstone (it can never be written again).
    Tombstone,
    /// A soft delete: `$tb` set to `i64::MAX` in the stream's metadata.
    SoftDelete,
    /// `$tb`, `$maxAge` or `$maxCount` in the stream's metadata drop some of its events.
    Truncation,
}

/// One end of a range: a log position or a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Position(i64),
    Time(DateTime<Utc>),
}

/// Which records to return. `from` is inclusive, `to` exclusive: `from` A `to` B and `from` B
/// `to` C together are `from` A `to` C.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Records of this stream, of its metastream `$$<stream>` (where its soft deletes and
    /// truncations are written) and the Commits of its transactions.
    pub stream: Option<String>,
    /// Records at or after this position, or with a time at or after this time.
    pub from: Option<Bound>,
    /// Records before this position, or with a time before this time.
    pub to: Option<Bound>,
    /// Only stream deletions and truncations.
    pub deletes: bool,
}

impl LogFilter {
    /// True when `rec` is one this filter asks for.
    pub fn matches(&self, rec: &LogRecord) -> bool {
        if self.deletes && rec.deletion.is_none() {
            return false;
        }
        if let Some(s) = &self.stream {
            let named =
                |name: &str| name == s || name.strip_prefix(METASTREAM_PREFIX) == Some(s.as_str());
            let deleted = rec.deletion.as_ref().is_some_and(|d| d.stream == *s);
            if !(rec.stream.as_deref().is_some_and(named) || deleted) {
                return false;
            }
        }
        let after = match self.from {
            Some(Bound::Position(p)) => rec.position >= p,
            Some(Bound::Time(t)) => rec.time >= t,
            None => true,
        };
        let before = match self.to {
            Some(Bound::Position(p)) => rec.position < p,
            Some(Bound::Time(t)) => rec.time < t,
            None => true,
        };
        after && before
    }
}

/// The records of one restore point.
pub struct LogListing {
    pub target: String,
    /// The point read, its time and writer checkpoint (the end of its log).
    pub point: String,
    pub point_time: DateTime<Utc>,
    pub writer: i64,
    /// Its records that `filter` lets through, in log order.
    pub records: RecordStream,
}

impl LogListing {
    /// The next record, or `None` after the last one.
    pub async fn next(&mut self) -> Option<Result<LogRecord>> {
        self.records.next().await
    }
}

/// The records of the point `which` names (the newest by default) at `target`.
pub async fn records(
    target: Arc<dyn Target>,
    which: &Which,
    filter: LogFilter,
) -> Result<LogListing> {
    let location = Location::open(target.clone()).await?;
    if !location.has_backup() {
        return Err(location.no_backup());
    }
    let point = choose(&location, which).await?;
    Ok(LogListing {
        target: target.describe(),
        point: point.id.clone(),
        point_time: point.time,
        writer: point.checkpoints.writer,
        records: point_records(target, &point, filter),
    })
}

/// The records of `point` (read from `target`, where it is stored) that `filter` lets through.
pub fn point_records(target: Arc<dyn Target>, point: &Point, filter: LogFilter) -> RecordStream {
    let ctx = Context {
        target,
        point: point.id.clone(),
        chunk_size: point.chunk_size,
        writer: point.checkpoints.writer,
    };
    let reader = PointReader::new(ctx, point, filter);
    futures::stream::try_unfold(reader, |mut reader| async move {
        Ok(reader.next().await?.map(|rec| (rec, reader)))
    })
    .boxed()
}
