//! A simulated node: its state, creation, the chaser feeding the index, delayed deletions and
//! `settle`. The writer lives in `writer.rs`, `open` in `open.rs`, the random steps in
//! `steps.rs`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use esbackup_engine::format::checkpoint;
use esbackup_engine::format::chunk::ChunkName;

use crate::chunk_writer::{self, ActiveChunk};
use crate::controlled_scavenge::ScavengeControl;
use crate::index::Index;
use crate::layout;
use crate::payload::Payload;
use crate::ptable_writer::IndexEntry;
use crate::records;
use crate::scavenge::ChunkJob;
use crate::side_files::{DuckDb, ExistenceFilter, ScavengeDb};
use crate::SimConfig;

/// The five db checkpoints as they are on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoints {
    pub writer: i64,
    pub chaser: i64,
    pub epoch: i64,
    pub proposal: i64,
    pub truncate: i64,
}

/// A completed chunk file the node knows as the latest version of `start..=end`.
#[derive(Clone, Debug)]
pub(crate) struct ChunkMeta {
    pub start: u32,
    pub end: u32,
    pub version: u32,
    pub physical: u64,
    pub scavenged: bool,
}

impl ChunkMeta {
    pub fn path(&self, db: &Path) -> PathBuf {
        db.join(
            ChunkName {
                start: self.start,
                version: self.version,
            }
            .to_string(),
        )
    }
}

/// A written transaction the chaser has not passed yet.
#[derive(Debug)]
pub(crate) struct Unchased {
    pub post: i64,
    pub entries: Vec<IndexEntry>,
    pub last_prepare: i64,
    pub commit: i64,
}

/// Completion of the active chunk spread over steps: completed → next created → writer.chk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Roll {
    Completed { next: u32 },
    Created,
}

/// Files to delete once `due` steps have run (readers of old versions release them late).
#[derive(Debug)]
pub(crate) struct Deletion {
    pub due: u64,
    pub paths: Vec<PathBuf>,
}

/// A simulated EventStoreDB / KurrentDB node writing real files.
pub struct Node {
    pub(crate) cfg: SimConfig,
    pub(crate) db: PathBuf,
    pub(crate) index_dir: PathBuf,
    pub(crate) rng: StdRng,
    pub(crate) cps: Checkpoints,
    pub(crate) active: Option<ActiveChunk>,
    pub(crate) roll: Option<Roll>,
    pub(crate) chunks: BTreeMap<u32, ChunkMeta>,
    pub(crate) streams: HashMap<String, i64>,
    pub(crate) unchased: VecDeque<Unchased>,
    /// Data was appended and flushed but `writer.chk`/`chaser.chk` not yet written.
    pub(crate) deferred: bool,
    pub(crate) index: Index,
    pub(crate) chunk_job: Option<ChunkJob>,
    /// Set when scavenges run only when asked (`controlled_scavenge.rs`).
    pub(crate) control: Option<ScavengeControl>,
    pub(crate) deletions: Vec<Deletion>,
    pub(crate) leftovers: Vec<PathBuf>,
    pub(crate) existence: Option<ExistenceFilter>,
    pub(crate) scavenge_db: Option<ScavengeDb>,
    pub(crate) duck: Option<DuckDb>,
    pub(crate) epoch_number: i64,
    pub(crate) steps: u64,
    pub(crate) ticks: i64,
    /// The payload of the newest simulator event `open` found in the log.
    pub(crate) logged_payload: Option<Payload>,
}

impl Node {
    /// Creates a fresh database: initial checkpoints, chunk 0 (temp + rename), an epoch record
    /// at position 0 with `epoch.chk` pointing at it.
    pub fn create(db: &Path, cfg: SimConfig) -> io::Result<Node> {
        fs::create_dir_all(db)?;
        if !layout::scan(db)?.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already holds chunk files", db.display()),
            ));
        }
        let mut node = Node::empty(db, cfg, 0)?;
        for (name, value) in [
            (checkpoint::WRITER, 0),
            (checkpoint::CHASER, 0),
            (checkpoint::EPOCH, -1),
            (checkpoint::TRUNCATE, -1),
            (checkpoint::PROPOSAL, -1),
        ] {
            checkpoint::write(&db.join(name), value)?;
        }
        node.open_side_files()?;
        node.new_active_chunk(0)?;
        node.epoch_number = -1;
        node.write_epoch()?;
        node.chase(i64::MAX)?;
        Ok(node)
    }

    pub(crate) fn empty(db: &Path, cfg: SimConfig, salt: u64) -> io::Result<Node> {
        let index_dir = cfg.index_dir.clone().unwrap_or_else(|| db.join("index"));
        fs::create_dir_all(&index_dir)?;
        Ok(Node {
            rng: StdRng::seed_from_u64(cfg.seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            db: db.to_path_buf(),
            index: Index::new(index_dir.clone()),
            index_dir,
            cfg,
            cps: Checkpoints {
                writer: 0,
                chaser: 0,
                epoch: -1,
                proposal: -1,
                truncate: -1,
            },
            active: None,
            roll: None,
            chunks: BTreeMap::new(),
            streams: HashMap::new(),
            unchased: VecDeque::new(),
            deferred: false,
            chunk_job: None,
            control: None,
            deletions: Vec::new(),
            leftovers: Vec::new(),
            existence: None,
            scavenge_db: None,
            duck: None,
            epoch_number: -1,
            steps: 0,
            ticks: records::BASE_TICKS,
            logged_payload: None,
        })
    }

    pub(crate) fn open_side_files(&mut self) -> io::Result<()> {
        if self.cfg.stream_existence {
            self.existence = Some(ExistenceFilter::open_or_create(&self.index_dir)?);
        }
        if self.cfg.scavenging_db {
            self.scavenge_db = Some(ScavengeDb::open_or_create(&self.index_dir)?);
        }
        if self.cfg.secondary_index {
            self.duck = Some(DuckDb::open_or_create(&self.db)?);
        }
        Ok(())
    }

    pub fn db_dir(&self) -> &Path {
        &self.db
    }

    pub fn index_dir(&self) -> &Path {
        &self.index_dir
    }

    /// The db checkpoints as written on disk.
    pub fn checkpoints(&self) -> Checkpoints {
        self.cps
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The logical chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.cfg.chunk_size
    }

    /// What the events appended from now on carry.
    pub fn payload(&self) -> Payload {
        self.cfg.payload
    }

    pub fn set_payload(&mut self, payload: Payload) {
        self.cfg.payload = payload;
    }

    /// The payload of the newest event this simulator appended that [`Node::open`] found in
    /// the log (`None` after `create`, or when the log holds no such event), so that a
    /// reopened database can go on as it was written.
    pub fn logged_payload(&self) -> Option<Payload> {
        self.logged_payload
    }

    pub(crate) fn guid(&mut self) -> Uuid {
        new_guid(&mut self.rng)
    }

    pub(crate) fn tick(&mut self) -> i64 {
        self.ticks += self.rng.gen_range(1..2_000) * 10_000;
        self.ticks
    }

    pub(crate) fn write_checkpoint(&mut self, name: &str, value: i64) -> io::Result<()> {
        checkpoint::write(&self.db.join(name), value)?;
        match name {
            checkpoint::WRITER => self.cps.writer = value,
            checkpoint::CHASER => self.cps.chaser = value,
            checkpoint::EPOCH => self.cps.epoch = value,
            checkpoint::PROPOSAL => self.cps.proposal = value,
            checkpoint::TRUNCATE => self.cps.truncate = value,
            _ => {}
        }
        Ok(())
    }

    /// Moves the chaser over written transactions up to `limit` (never past `writer.chk`),
    /// feeding the memtable and the stream-existence filter.
    pub(crate) fn chase(&mut self, limit: i64) -> io::Result<()> {
        let limit = limit.min(self.cps.writer);
        let mut moved = None;
        while self.unchased.front().is_some_and(|u| u.post <= limit) {
            let u = self.unchased.pop_front().unwrap();
            self.index.add(&u.entries, u.last_prepare, u.commit);
            if let Some(f) = self.existence.as_mut() {
                for e in &u.entries {
                    f.add(e.stream_hash);
                }
            }
            moved = Some(u.post);
        }
        if let Some(pos) = moved {
            self.write_checkpoint(checkpoint::CHASER, pos)?;
        }
        Ok(())
    }

    pub(crate) fn schedule_deletion(&mut self, paths: Vec<PathBuf>) {
        if !paths.is_empty() {
            let due = self.steps + self.rng.gen_range(2..12);
            self.deletions.push(Deletion { due, paths });
        }
    }

    /// Deletes files whose delay has passed (all of them when `all`). Returns how many.
    pub(crate) fn run_deletions(&mut self, all: bool) -> io::Result<usize> {
        let now = self.steps;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deletions)
            .into_iter()
            .partition(|d| all || d.due <= now);
        self.deletions = later;
        let mut n = 0;
        for p in due.into_iter().flat_map(|d| d.paths) {
            chunk_writer::make_writable(&p).ok();
            match fs::remove_file(&p) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Finishes pending deletions and every half-done operation, leaving the directory as a
    /// cleanly stopped node leaves it (still with an active last chunk, chaser at the writer).
    pub fn settle(&mut self) -> io::Result<()> {
        self.flush_deferred()?;
        self.finish_roll()?;
        if let Some(mut job) = self.chunk_job.take() {
            if !job.is_written() {
                job.write(&mut self.rng, 0.6)?;
            }
            self.switch_in(job)?;
        }
        let mut obsolete = Vec::new();
        while self.index.is_busy() {
            let g = self.guid().to_string();
            if let Some(p) = self.index.advance(usize::MAX, || g, true, 2)? {
                obsolete.extend(p.obsolete);
            }
        }
        self.schedule_deletion(obsolete);
        self.chase(i64::MAX)?;
        if let Some(f) = self.existence.as_mut() {
            f.finish()?;
        }
        self.run_deletions(true)?;
        for p in std::mem::take(&mut self.leftovers) {
            chunk_writer::make_writable(&p).ok();
            match fs::remove_file(&p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        self.sync_controlled_scavenge();
        Ok(())
    }

    /// Switches a written chunk job in and records the new chunk and the replaced files.
    pub(crate) fn switch_in(&mut self, job: ChunkJob) -> io::Result<String> {
        let (kind, start, end, physical) = (job.kind, job.start, job.end, job.physical);
        let switched = job.switch_in(&self.db)?;
        self.chunks.retain(|&s, _| !(start..=end).contains(&s));
        self.chunks.insert(
            start,
            ChunkMeta {
                start,
                end,
                version: switched.name.version,
                physical,
                scavenged: true,
            },
        );
        let replaced = switched.replaced.len();
        self.schedule_deletion(switched.replaced);
        self.controlled_chunk_switched(start);
        if kind != crate::scavenge::JobKind::Replicate {
            if let Some(db) = &self.scavenge_db {
                db.end()?;
            }
        }
        Ok(format!(
            "{kind:?}: switched in {} ({replaced} old file(s) to delete later)",
            switched.name
        ))
    }
}

pub(crate) fn new_guid(rng: &mut StdRng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.gen()).into_uuid()
}

pub(crate) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}
