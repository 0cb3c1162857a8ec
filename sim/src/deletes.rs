//! Stream deletions as the server writes them (docs/FORMAT.md §1.3, "Deletions"): a hard delete
//! is the stream's tombstone, one Prepare with StreamDelete and no Commit after it; a soft delete
//! or truncation is a `$metadata` event in the metastream `$$<stream>` carrying `$tb`, `$maxAge`
//! or `$maxCount`. Random appends leave deleted and truncated streams alone afterwards.

use std::io;

use esbackup_engine::format::checkpoint;

use crate::hash;
use crate::node::{Node, Unchased};
use crate::ptable_writer::IndexEntry;
use crate::records::{self, Prepare};

/// A record the node wrote: where it starts, where the next one starts, and its .NET ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    pub position: i64,
    pub next_position: i64,
    pub ticks: i64,
}

impl Node {
    /// Hard-deletes `stream`: writes its tombstone (`StorageWriterService.cs:547-564`,
    /// `LogRecord.DeleteTombstone`).
    pub fn hard_delete(&mut self, stream: &str) -> io::Result<Written> {
        let flags = records::FLAG_STREAM_DELETE
            | records::FLAG_TX_BEGIN
            | records::FLAG_TX_END
            | records::FLAG_IS_COMMITTED;
        let expected = records::TOMBSTONE_EXPECTED_VERSION;
        let written =
            self.write_single(stream, flags, expected, records::STREAM_DELETED_TYPE, b"")?;
        self.streams.insert(stream.to_string(), i64::MAX);
        Ok(written)
    }

    /// Soft-deletes `stream`: `$tb` = `long.MaxValue` in its metadata (`:565-597`).
    pub fn soft_delete(&mut self, stream: &str) -> io::Result<Written> {
        self.set_metadata(stream, records::SOFT_DELETE_METADATA)
    }

    /// Writes `json` as the metadata of `stream`: a `$metadata` event in `$$<stream>`, numbered
    /// after the metastream's last event.
    pub fn set_metadata(&mut self, stream: &str, json: &str) -> io::Result<Written> {
        let meta = records::metastream(stream);
        let next = *self.streams.get(&meta).unwrap_or(&0);
        let flags = records::FLAG_DATA
            | records::FLAG_TX_BEGIN
            | records::FLAG_TX_END
            | records::FLAG_IS_COMMITTED
            | records::FLAG_IS_JSON;
        let written = self.write_single(
            &meta,
            flags,
            next - 1,
            records::METADATA_TYPE,
            json.as_bytes(),
        )?;
        self.streams.insert(meta, next + 1);
        Ok(written)
    }

    /// True when random appends may write to `stream`: it has no tombstone and no metadata
    /// (deleted or truncated streams are left as they are).
    pub(crate) fn writable(&self, stream: &str) -> bool {
        self.streams.get(stream) != Some(&i64::MAX)
            && !self.streams.contains_key(&records::metastream(stream))
    }

    /// Writes one Prepare committed at once (its own transaction, no Commit after it, as the
    /// server writes deletes and metadata), completing the chunk first if it does not fit; then
    /// `writer.chk`, the chaser and the index.
    fn write_single(
        &mut self,
        stream: &str,
        flags: u16,
        expected_version: i64,
        event_type: &str,
        data: &[u8],
    ) -> io::Result<Written> {
        self.flush_deferred()?;
        self.finish_roll()?;
        let (event_id, correlation_id, ticks) = (self.guid(), self.guid(), self.tick());
        let build = |pos: i64| {
            let p = Prepare {
                log_position: pos,
                flags,
                transaction_position: pos,
                transaction_offset: 0,
                expected_version,
                stream: stream.to_string(),
                event_id,
                correlation_id,
                ticks,
                event_type: event_type.to_string(),
                data: data.to_vec(),
                metadata: Vec::new(),
            };
            records::frame(&p.encode())
        };
        let mut position = self.write_position();
        let mut bytes = build(position);
        if bytes.len() as u64 > self.active.as_ref().map_or(0, |a| a.remaining()) {
            self.begin_roll()?;
            self.finish_roll()?;
            position = self.write_position();
            bytes = build(position);
        }
        let active = self.active.as_mut().expect("active chunk");
        active.append(&bytes)?;
        active.flush()?;
        let next_position = active.position();
        self.write_checkpoint(checkpoint::WRITER, next_position)?;
        self.unchased.push_back(Unchased {
            post: next_position,
            entries: vec![IndexEntry {
                stream_hash: hash::stream_hash(stream),
                version: expected_version.saturating_add(1),
                position,
            }],
            last_prepare: position,
            commit: position,
        });
        self.catch_up_index()?;
        Ok(Written {
            position,
            next_position,
            ticks,
        })
    }
}
