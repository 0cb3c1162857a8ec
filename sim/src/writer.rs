//! The node's writer: transactions of Prepare + Commit records appended in place, epochs, and
//! the roll of a full chunk (complete → create the next → move `writer.chk`).

use std::fs;
use std::io;

use rand::Rng;
use uuid::Uuid;

use esbackup_engine::format::checkpoint;

use crate::chunk_writer::{self, ActiveChunk};
use crate::hash;
use crate::node::{new_guid, ChunkMeta, Node, Roll, Unchased};
use crate::payload::{self, Payload};
use crate::ptable_writer::IndexEntry;
use crate::records::{self, Epoch, Prepare};

impl Node {
    /// Appends `events` events (Prepare + Commit records, in transactions of up to 4 events),
    /// completing chunks as they fill, moving the chaser to the writer and running any index
    /// work (memtable flush, merges) to the end.
    pub fn append(&mut self, events: usize) -> io::Result<()> {
        self.flush_deferred()?;
        self.finish_roll()?;
        let mut left = events;
        while left > 0 {
            let n = left.min(self.rng.gen_range(1..=4));
            self.append_transaction(n, false, true)?;
            left -= n;
        }
        self.catch_up_index()
    }

    /// Moves the chaser to the writer and runs any index work (memtable flush, merges) to
    /// the end.
    pub(crate) fn catch_up_index(&mut self) -> io::Result<()> {
        self.chase(i64::MAX)?;
        let mut obsolete = Vec::new();
        let rng = &mut self.rng;
        self.index.run_to_idle(
            self.cfg.memtable_entries,
            || new_guid(rng).to_string(),
            &mut obsolete,
        )?;
        self.schedule_deletion(obsolete);
        Ok(())
    }

    /// Current write position of the log (in memory; may be ahead of `writer.chk`).
    pub(crate) fn write_position(&self) -> i64 {
        match (&self.active, self.roll) {
            (Some(a), _) => a.position(),
            (None, Some(Roll::Completed { next })) => next as i64 * self.cfg.chunk_size as i64,
            (None, _) => self.cps.writer,
        }
    }

    pub(crate) fn new_active_chunk(&mut self, number: u32) -> io::Result<()> {
        let id = self.guid();
        let tmp = self.guid();
        let header = chunk_writer::header(
            self.cfg.chunk_size,
            number,
            number,
            false,
            id,
            self.cfg.legacy_v3_headers,
        );
        self.active = Some(ActiveChunk::create(&self.db, header, tmp)?);
        Ok(())
    }

    /// Writes data whose checkpoints a previous step held back.
    pub(crate) fn flush_deferred(&mut self) -> io::Result<()> {
        if self.deferred {
            self.deferred = false;
            let pos = self.write_position();
            self.write_checkpoint(checkpoint::WRITER, pos)?;
        }
        Ok(())
    }

    /// Completes the active chunk (footer, MD5, truncate, read-only) and starts the roll.
    pub(crate) fn begin_roll(&mut self) -> io::Result<String> {
        let active = self.active.take().expect("an active chunk to complete");
        let (start, path) = (active.header.start, active.path.clone());
        let physical = active.complete()?;
        self.chunks.insert(
            start,
            ChunkMeta {
                start,
                end: start,
                version: 0,
                physical,
                scavenged: false,
            },
        );
        self.roll = Some(Roll::Completed { next: start + 1 });
        Ok(format!(
            "completed {} ({} bytes of records, {} bytes on disk)",
            crate::index::file_name(&path),
            physical,
            fs::metadata(&path)?.len()
        ))
    }

    /// One stage of a roll: create the next chunk, then move `writer.chk` to its start.
    pub(crate) fn roll_step(&mut self) -> io::Result<String> {
        match self.roll {
            Some(Roll::Completed { next }) => {
                self.new_active_chunk(next)?;
                self.roll = Some(Roll::Created);
                Ok(format!("created chunk {next} via temp file + rename"))
            }
            Some(Roll::Created) => {
                self.roll = None;
                let pos = self.write_position();
                self.write_checkpoint(checkpoint::WRITER, pos)?;
                Ok(format!("writer.chk -> {pos} (start of the new chunk)"))
            }
            None => Ok("no roll in progress".into()),
        }
    }

    pub(crate) fn finish_roll(&mut self) -> io::Result<()> {
        while self.roll.is_some() {
            self.roll_step()?;
        }
        Ok(())
    }

    /// Writes one transaction of `events` events to one stream. When it does not fit, the
    /// chunk is completed: fully (`finish_roll`) or, in step mode, the roll is left pending and
    /// nothing is written. Returns a description.
    pub(crate) fn append_transaction(
        &mut self,
        events: usize,
        defer: bool,
        finish_roll: bool,
    ) -> io::Result<String> {
        let stream = self.pick_stream();
        let first = *self.streams.get(&stream).unwrap_or(&0);
        let budget = self.cfg.chunk_size as usize / (16 * events.max(1));
        let max_data = budget.clamp(8, 600);
        let correlation = self.guid();
        let (clock, mut causation) = (self.ticks, correlation);
        let mut specs = Vec::new();
        for i in 0..events {
            let id = self.guid();
            let ctx = payload::Context {
                stream: &stream,
                number: first + i as i64,
                correlation,
                causation,
                ticks: clock,
                budget,
            };
            let event = match self.cfg.payload {
                Payload::Letters => payload::letters(&mut self.rng, max_data),
                Payload::Json => payload::json(&mut self.rng, &ctx),
                Payload::Random => payload::random(&mut self.rng, &ctx),
            };
            causation = id;
            specs.push((id, event));
        }
        let ticks = self.tick();
        let build = |base: i64| {
            let mut bytes = Vec::new();
            let mut entries = Vec::new();
            let mut last_prepare = base;
            let hash = hash::stream_hash(&stream);
            for (i, (id, event)) in specs.iter().enumerate() {
                let pos = base + bytes.len() as i64;
                let mut flags = records::FLAG_DATA | records::FLAG_IS_COMMITTED;
                if event.is_json {
                    flags |= records::FLAG_IS_JSON;
                }
                if i == 0 {
                    flags |= records::FLAG_TX_BEGIN;
                }
                if i + 1 == specs.len() {
                    flags |= records::FLAG_TX_END;
                }
                let p = Prepare {
                    log_position: pos,
                    flags,
                    transaction_position: base,
                    transaction_offset: i as i32,
                    expected_version: first + i as i64 - 1,
                    stream: stream.clone(),
                    event_id: *id,
                    correlation_id: correlation,
                    ticks,
                    event_type: event.event_type.to_string(),
                    data: event.data.clone(),
                    metadata: event.metadata.clone(),
                };
                bytes.extend(records::frame(&p.encode()));
                entries.push(IndexEntry {
                    stream_hash: hash,
                    version: first + i as i64,
                    position: pos,
                });
                last_prepare = pos;
            }
            let commit = base + bytes.len() as i64;
            bytes.extend(records::frame(&records::commit(
                commit,
                base,
                first,
                correlation,
                ticks,
            )));
            (bytes, entries, last_prepare, commit)
        };
        let mut base = self.write_position();
        let mut txn = build(base);
        if txn.0.len() as u64 > self.active.as_ref().map_or(0, |a| a.remaining()) {
            let done = self.begin_roll()?;
            if !finish_roll {
                return Ok(format!("{done} (next transaction does not fit)"));
            }
            self.finish_roll()?;
            base = self.write_position();
            txn = build(base);
        }
        let (bytes, entries, last_prepare, commit) = txn;
        let active = self.active.as_mut().expect("active chunk");
        active.append(&bytes)?;
        active.flush()?;
        let post = active.position();
        self.streams.insert(stream.clone(), first + events as i64);
        self.unchased.push_back(Unchased {
            post,
            entries,
            last_prepare,
            commit,
        });
        if defer {
            self.deferred = true;
        } else {
            self.write_checkpoint(checkpoint::WRITER, post)?;
        }
        Ok(format!(
            "appended {events} event(s) to {stream} at {base}..{post}{}",
            if defer {
                " (writer.chk not yet moved)"
            } else {
                ""
            }
        ))
    }

    /// A stream to append to: a random one of 24 accounts and 200 orders, never one that was
    /// deleted or truncated (`deletes.rs`).
    fn pick_stream(&mut self) -> String {
        for _ in 0..1000 {
            let stream = if self.rng.gen_bool(0.7) {
                format!("account-{}", self.rng.gen_range(0..24))
            } else {
                format!("order-{}", self.rng.gen_range(0..200))
            };
            if self.writable(&stream) {
                return stream;
            }
        }
        (0..)
            .map(|n| format!("stream-{n}"))
            .find(|s| self.writable(s))
            .expect("a free stream name")
    }

    /// Writes a new epoch: `proposal.chk`, the System record, `writer.chk`, then `epoch.chk`.
    pub(crate) fn write_epoch(&mut self) -> io::Result<String> {
        let number = self.epoch_number + 1;
        self.write_checkpoint(checkpoint::PROPOSAL, number)?;
        let epoch = |pos: i64, id: Uuid, leader: Uuid, ticks: i64, prev: i64| Epoch {
            position: pos,
            number,
            id,
            prev_position: prev,
            leader_instance_id: leader,
            ticks,
        };
        let (id, leader, ticks, prev) = (self.guid(), self.guid(), self.tick(), self.cps.epoch);
        let mut pos = self.write_position();
        let mut bytes = records::frame(&epoch(pos, id, leader, ticks, prev).encode());
        if bytes.len() as u64 > self.active.as_ref().map_or(0, |a| a.remaining()) {
            self.begin_roll()?;
            self.finish_roll()?;
            pos = self.write_position();
            bytes = records::frame(&epoch(pos, id, leader, ticks, prev).encode());
        }
        let active = self.active.as_mut().expect("active chunk");
        active.append(&bytes)?;
        active.flush()?;
        let post = active.position();
        self.write_checkpoint(checkpoint::WRITER, post)?;
        self.write_checkpoint(checkpoint::EPOCH, pos)?;
        self.epoch_number = number;
        self.unchased.push_back(Unchased {
            post,
            entries: Vec::new(),
            last_prepare: -1,
            commit: -1,
        });
        Ok(format!("epoch {number} written at {pos}"))
    }
}
