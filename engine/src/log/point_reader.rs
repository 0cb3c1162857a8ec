//! The records of one restore point in log order: its chunk files one after the other (the
//! versions the server would use), each read as it streams in, filtered.

use std::collections::{BTreeMap, VecDeque};

use super::chunk_reader::{ChunkFile, ChunkReader, Context};
use super::describe::describe;
use super::{Bound, LogFilter, LogRecord, RecordKind};
use crate::error::Result;
use crate::layout::{classify, Kind};
use crate::point::Point;

/// Transactions whose stream a later Commit record is told: the newest ones only (a Commit
/// follows its transaction closely; an older one is shown without a stream).
const REMEMBERED_TRANSACTIONS: usize = 4096;

pub(crate) struct PointReader {
    ctx: Context,
    chunks: VecDeque<ChunkFile>,
    current: Option<ChunkReader>,
    filter: LogFilter,
    /// Stream of each transaction begun, by its position.
    transactions: BTreeMap<i64, String>,
    done: bool,
}

impl PointReader {
    pub fn new(ctx: Context, point: &Point, filter: LogFilter) -> PointReader {
        PointReader {
            ctx,
            chunks: chunk_files(point).into(),
            current: None,
            filter,
            transactions: BTreeMap::new(),
            done: false,
        }
    }

    /// The next record the filter lets through, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<LogRecord>> {
        while !self.done {
            let Some(reader) = self.current.as_mut() else {
                self.open_next().await?;
                continue;
            };
            let Some(raw) = reader.next().await? else {
                self.current = None;
                continue;
            };
            let place = reader.place();
            let mut rec = describe(&raw.payload, raw.position, raw.framed_len, place.file())
                .map_err(|why| place.damaged(raw.offset, why))?;
            if let Some(Bound::Position(to)) = self.filter.to {
                if rec.position >= to {
                    self.done = true;
                    return Ok(None);
                }
            }
            self.follow_transaction(&mut rec);
            if self.filter.matches(&rec) {
                return Ok(Some(rec));
            }
        }
        Ok(None)
    }

    /// Opens the next chunk file that can hold records the filter wants; done when none can.
    async fn open_next(&mut self) -> Result<()> {
        let size = self.ctx.chunk_size as i64;
        while let Some(chunk) = self.chunks.pop_front() {
            let (start, end) = (
                chunk.name.start as i64 * size,
                (chunk.end() as i64 + 1) * size,
            );
            let beyond = start >= self.ctx.writer
                || matches!(self.filter.to, Some(Bound::Position(to)) if start >= to);
            if beyond {
                break;
            }
            if matches!(self.filter.from, Some(Bound::Position(from)) if end <= from) {
                continue;
            }
            self.current = Some(ChunkReader::open(&self.ctx, &chunk).await?);
            return Ok(());
        }
        self.done = true;
        Ok(())
    }

    /// Remembers the stream of a transaction that begins, and tells a Commit its stream.
    fn follow_transaction(&mut self, rec: &mut LogRecord) {
        let Some(tx) = rec.transaction_position else {
            return;
        };
        match (rec.kind, &rec.stream) {
            (RecordKind::Prepare, Some(stream)) => {
                if let std::collections::btree_map::Entry::Vacant(e) = self.transactions.entry(tx) {
                    e.insert(stream.clone());
                    if self.transactions.len() > REMEMBERED_TRANSACTIONS {
                        self.transactions.pop_first();
                    }
                }
            }
            (RecordKind::Commit, _) => rec.stream = self.transactions.remove(&tx),
            _ => {}
        }
    }
}

/// The chunk files of `point` the server would use, in log order: for each start number the
/// highest version; a file starting inside an earlier one's range (merged away) is left out.
pub(crate) fn chunk_files(point: &Point) -> Vec<ChunkFile> {
    let mut highest: BTreeMap<u32, ChunkFile> = BTreeMap::new();
    for (key, file) in &point.files {
        let Kind::Chunk(name) = classify(key) else {
            continue;
        };
        if highest
            .get(&name.start)
            .is_none_or(|c| c.name.version < name.version)
        {
            let chunk = ChunkFile {
                name,
                key: key.clone(),
                file: file.clone(),
            };
            highest.insert(name.start, chunk);
        }
    }
    let mut kept: Vec<ChunkFile> = Vec::new();
    for chunk in highest.into_values() {
        if kept
            .last()
            .is_some_and(|last| chunk.name.start <= last.end())
        {
            continue;
        }
        kept.push(chunk);
    }
    kept
}
