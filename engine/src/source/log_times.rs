//! The own times of the first and the last record of the captured log, for `list --json`: what
//! `restore --before` and `--at` are compared with, told beside the point's positions.
//!
//! A record is framed as `[len: i32][payload][len: i32]` (docs/FORMAT.md §1.3), so the last one
//! is found from its end: the 4 bytes before the writer (or before the data end of the chunk
//! the writer has just left) are its length. Two small reads, never a walk of the log; what
//! does not decode (a chunk completed meanwhile, an odd file) gives no time rather than an
//! error: the times only inform.

use std::fs::File;
use std::os::unix::fs::FileExt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::chunks::{ChunkSet, SourceChunk};
use crate::format::chunk::HEADER_LEN;
use crate::format::record::{decode, ticks_to_time};

/// The own times of a point's first and last log records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogTimes {
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

/// The server's largest record (docs/FORMAT.md §1.3).
const MAX_RECORD: u64 = 16 << 20;

/// The times of the first record of the oldest chunk and the last record before `writer`.
pub(crate) fn capture(chunks: &ChunkSet, writer: i64) -> Option<LogTimes> {
    let first = chunks.chunks.first()?;
    let first = time_at(first, 0)?;
    let cs = chunks.chunk_size as i64;
    let last = chunks.chunks.iter().rev().find_map(|c| {
        let start = c.info.header.start_position();
        let end = match &c.info.footer {
            Some(f) if start + cs <= writer => f.physical_data_size as i64,
            _ => writer - start,
        };
        (end > 0 && start < writer).then(|| last_time(c, end as u64))?
    })?;
    Some(LogTimes { first, last })
}

/// The time of the record that starts at data offset `at` of `chunk`.
fn time_at(chunk: &SourceChunk, at: u64) -> Option<DateTime<Utc>> {
    let file = File::open(&chunk.path).ok()?;
    let len = read_i32(&file, HEADER_LEN + at)?;
    record_time(&file, HEADER_LEN + at + 4, len)
}

/// The time of the record that ends at data offset `end` of `chunk`.
fn last_time(chunk: &SourceChunk, end: u64) -> Option<DateTime<Utc>> {
    let file = File::open(&chunk.path).ok()?;
    let len = read_i32(&file, HEADER_LEN + end.checked_sub(4)?)?;
    let payload = (HEADER_LEN + end).checked_sub(4 + len)?;
    (read_i32(&file, payload.checked_sub(4)?)? == len).then_some(())?;
    record_time(&file, payload, len)
}

fn record_time(file: &File, at: u64, len: u64) -> Option<DateTime<Utc>> {
    let mut payload = vec![0u8; len as usize];
    file.read_exact_at(&mut payload, at).ok()?;
    ticks_to_time(decode(&payload).ok()?.ticks())
}

/// A record length at `at`: positive and at most the server's largest record.
fn read_i32(file: &File, at: u64) -> Option<u64> {
    let mut b = [0u8; 4];
    file.read_exact_at(&mut b, at).ok()?;
    let n = i32::from_le_bytes(b);
    (n > 0 && n as u64 <= MAX_RECORD).then_some(n as u64)
}
