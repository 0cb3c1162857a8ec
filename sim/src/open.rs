//! [`Node::open`]: continuing an existing database after the server's startup work (truncation,
//! removal of temp files, old versions, the excessive chunk and unused index files), and
//! rebuilding the in-memory state (stream versions, memtable) from the log.

use std::fs;
use std::io;
use std::path::Path;

use esbackup_engine::format::checkpoint;
use esbackup_engine::format::chunk::{self, ChunkName};
use esbackup_engine::format::{indexmap, record};

use crate::chunk_writer::{self, ActiveChunk};
use crate::index::Index;
use crate::layout::{self, Slot};
use crate::node::{invalid, Checkpoints, ChunkMeta, Node, Unchased};
use crate::payload::Payload;
use crate::ptable_writer::IndexEntry;
use crate::records::{self, Prepare};
use crate::truncation::{self, LogCheckpoints};
use crate::{hash, SimConfig};

impl Node {
    /// Continues a database (made by this simulator or restored from a backup of one), doing
    /// the server's startup work first: truncation when `truncate.chk` ≠ -1, removal of temp
    /// files, old versions and the excessive chunk, and of index files the indexmap doesn't use.
    pub fn open(db: &Path, cfg: SimConfig) -> io::Result<Node> {
        let read = |name: &str, default: i64| match checkpoint::read(&db.join(name)) {
            Ok(v) => Ok(v),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(default),
            Err(e) => Err(e),
        };
        let mut lc = LogCheckpoints {
            writer: checkpoint::read(&db.join(checkpoint::WRITER))?,
            chaser: read(checkpoint::CHASER, 0)?,
            epoch: read(checkpoint::EPOCH, -1)?,
            truncate: read(checkpoint::TRUNCATE, -1)?,
        };
        let proposal = read(checkpoint::PROPOSAL, -1)?;
        let mut files = layout::scan(db)?;
        let chunk_size = files
            .iter()
            .find_map(|f| f.info.as_ref().ok().map(|i| i.header.chunk_size))
            .unwrap_or(cfg.chunk_size);
        let mut node = Node::empty(db, cfg, lc.writer as u64 ^ 0x0b5e_55ed)?;
        node.cfg.chunk_size = chunk_size;
        if lc.truncate != -1 {
            let plan =
                truncation::plan(&files, chunk_size, lc.writer, lc.truncate, node.cfg.archive);
            if !plan.errors.is_empty() {
                return Err(invalid(plan.errors.join("; ")));
            }
            truncation::apply_to_disk(&files, &plan, chunk_size)?;
            lc = truncation::lower(lc, plan.truncate_to);
            checkpoint::write(&db.join(checkpoint::EPOCH), lc.epoch)?;
            checkpoint::write(&db.join(checkpoint::CHASER), lc.chaser)?;
            checkpoint::write(&db.join(checkpoint::WRITER), lc.writer)?;
            checkpoint::write(&db.join(checkpoint::TRUNCATE), -1)?;
            files = layout::scan(db)?;
        }
        if lc.chaser > lc.writer || lc.epoch > lc.writer {
            return Err(invalid(format!("checkpoints beyond the writer: {lc:?}")));
        }
        node.cps = Checkpoints {
            writer: lc.writer,
            chaser: lc.chaser,
            epoch: lc.epoch,
            proposal,
            truncate: -1,
        };
        node.epoch_number = proposal.max(0);
        node.open_log(&files)?;
        node.open_index()?;
        node.open_side_files()?;
        node.rebuild_from_log()?;
        node.chase(i64::MAX)?;
        if node.cps.epoch == -1 {
            node.write_epoch()?;
            node.chase(i64::MAX)?;
        }
        Ok(node)
    }

    fn open_log(&mut self, files: &[layout::ChunkFile]) -> io::Result<()> {
        let cs = self.cfg.chunk_size as i64;
        let writer = self.cps.writer;
        let mut last = (writer / cs) as u32;
        let last_versions = layout::versions_of(files, last);
        let mut seen = false;
        for slot in layout::enumerate(files, last) {
            match slot {
                Slot::Missing { number } if number < last && (seen || !self.cfg.archive) => {
                    return Err(invalid(format!("chunk #{number} is missing")));
                }
                Slot::Latest { file, start, end } if start < last => {
                    seen = true;
                    let f = &files[file];
                    if !f.is_completed() {
                        if !(last_versions.is_empty() && (start as i64 + 1) * cs == writer) {
                            return Err(invalid(format!("{} is not completed", f.file_name())));
                        }
                        // The chunk filled up exactly; complete it as the server does.
                        ActiveChunk::reopen(&f.path, cs as u64)?.complete()?;
                    }
                    self.chunks
                        .insert(start, meta_of(&f.path, start, end, f.name.version)?);
                }
                Slot::Old { file, start } if start <= last => {
                    chunk_writer::make_writable(&files[file].path).ok();
                    fs::remove_file(&files[file].path)?;
                }
                _ => {}
            }
        }
        match last_versions.first().map(|&i| &files[i]) {
            None if writer != last as i64 * cs => {
                return Err(invalid(format!(
                    "chunk #{last} holding the writer is missing"
                )));
            }
            None => {}
            Some(f) if f.is_scavenged() => {
                if writer != last as i64 * cs {
                    return Err(invalid(format!(
                        "writer.chk points inside {}",
                        f.file_name()
                    )));
                }
                let meta = meta_of(&f.path, last, f.end(), f.name.version)?;
                last = meta.end + 1;
                self.chunks.insert(meta.start, meta);
                let next = self.db.join(
                    ChunkName {
                        start: last,
                        version: 0,
                    }
                    .to_string(),
                );
                if next.exists() {
                    fs::remove_file(next)?;
                }
                self.cps.writer = last as i64 * cs;
                checkpoint::write(&self.db.join(checkpoint::WRITER), self.cps.writer)?;
            }
            Some(f) => {
                let full = chunk::active_file_len(self.cfg.chunk_size);
                if fs::metadata(&f.path)?.len() < full {
                    chunk_writer::make_writable(&f.path)?;
                    fs::OpenOptions::new()
                        .write(true)
                        .open(&f.path)?
                        .set_len(full)?;
                }
                let local = (writer - last as i64 * cs) as u64;
                self.active = Some(ActiveChunk::reopen(&f.path, local)?);
            }
        }
        // Beyond the writer chunk: one version-0 chunk is removed, anything else is fatal.
        let files = layout::scan(&self.db)?;
        for slot in layout::enumerate(&files, last) {
            let (file, start, excessive) = match slot {
                Slot::Latest { file, start, end } => {
                    (file, start, start == last + 1 && start == end)
                }
                Slot::Old { file, start } => (file, start, false),
                Slot::Missing { .. } => continue,
            };
            if start > last {
                if excessive && files[file].name.version == 0 {
                    fs::remove_file(&files[file].path)?;
                } else {
                    return Err(invalid(format!(
                        "Unexpected files: {}",
                        files[file].file_name()
                    )));
                }
            }
        }
        for entry in fs::read_dir(&self.db)? {
            let p = entry?.path();
            if p.extension().is_some_and(|e| e == "tmp") && p.is_file() {
                fs::remove_file(p)?;
            }
        }
        if self.active.is_none() {
            self.new_active_chunk(last)?;
        }
        Ok(())
    }

    fn open_index(&mut self) -> io::Result<()> {
        let loaded = Index::load(self.index_dir.clone());
        self.index = match loaded {
            Ok(i) if i.checkpoints.1 < self.cps.chaser => i,
            _ => {
                let _ = fs::remove_file(self.index_dir.join(indexmap::FILE_NAME));
                Index::new(self.index_dir.clone())
            }
        };
        let mut keep: Vec<String> = vec![indexmap::FILE_NAME.to_string()];
        for level in &self.index.levels {
            for t in level {
                keep.push(t.guid.clone());
                keep.push(format!("{}.bloomfilter", t.guid));
            }
        }
        for entry in fs::read_dir(&self.index_dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type()?.is_file() && !keep.contains(&name) {
                chunk_writer::make_writable(&entry.path()).ok();
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// Re-reads the local log: next event number per stream, the clock, the payload of the
    /// newest event, and the memtable entries for records the indexmap does not cover.
    fn rebuild_from_log(&mut self) -> io::Result<()> {
        let mut sources: Vec<Vec<u8>> = Vec::new();
        for meta in self.chunks.values() {
            sources.push(crate::scavenge::read_records(&meta.path(&self.db))?);
        }
        if let Some(a) = &self.active {
            sources.push(read_prefix(&a.path, a.write_pos)?);
        }
        let (prepare_chk, commit_chk) = self.index.checkpoints;
        for data in &sources {
            let recs = records::walk(data).map_err(invalid)?;
            for rec in recs {
                let payload = rec.payload(data);
                // The clock goes on from the newest record, never back.
                if let Ok(decoded) = record::decode(payload) {
                    self.ticks = self.ticks.max(decoded.ticks());
                    if let record::Payload::Prepare(p) = &decoded {
                        self.logged_payload = Payload::of_event(p).or(self.logged_payload);
                    }
                }
                if let Some((stream, expected)) = Prepare::stream_and_expected_version(payload) {
                    let next = self.streams.entry(stream.clone()).or_insert(0);
                    // A tombstone's expected version is i64::MAX - 1: its stream ends there.
                    *next = (*next).max(expected.saturating_add(2));
                    if rec.log_position > prepare_chk {
                        let e = IndexEntry {
                            stream_hash: hash::stream_hash(&stream),
                            version: expected.saturating_add(1),
                            position: rec.log_position,
                        };
                        self.unchased.push_back(Unchased {
                            post: rec.log_position + rec.framed_len as i64,
                            entries: vec![e],
                            last_prepare: rec.log_position,
                            commit: -1,
                        });
                    }
                } else if rec.kind == records::COMMIT && rec.log_position > commit_chk {
                    self.unchased.push_back(Unchased {
                        post: rec.log_position + rec.framed_len as i64,
                        entries: Vec::new(),
                        last_prepare: -1,
                        commit: rec.log_position,
                    });
                }
            }
        }
        Ok(())
    }
}

fn meta_of(path: &Path, start: u32, end: u32, version: u32) -> io::Result<ChunkMeta> {
    let info = chunk::ChunkInfo::read(path)?;
    Ok(ChunkMeta {
        start,
        end,
        version,
        physical: info
            .footer
            .map_or(0, |f| f.physical_data_size.max(0) as u64),
        scavenged: info.header.is_scavenged,
    })
}

fn read_prefix(path: &Path, len: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; (chunk::HEADER_LEN + len) as usize];
    f.read_exact(&mut buf)?;
    buf.drain(..chunk::HEADER_LEN as usize);
    Ok(buf)
}
