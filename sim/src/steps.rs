//! [`Node::step`]: one random mutation chosen by the seeded RNG. Multi-step operations keep their
//! state in the node (a roll of the active chunk, an index job, a chunk job, a stream-existence
//! flush, deferred checkpoints, delayed deletions) so concurrent readers see every stage.

use std::fs;
use std::io;

use rand::Rng;

use esbackup_engine::format::chunk::ChunkName;

use crate::node::{ChunkMeta, Node};
use crate::scavenge::{ChunkJob, JobKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Append,
    Roll,
    CompleteEarly,
    Epoch,
    Chase,
    Index,
    ChunkJob,
    Scavenge,
    Merge,
    Replicate,
    Deletions,
    Existence,
    Duck,
    Leftover,
    ForceVerify,
    ArchiveRemove,
    Controlled,
}

impl Node {
    /// Performs one random mutation chosen by the seeded RNG and describes it. Kinds (only
    /// those applicable right now are drawn, appends most often):
    /// * append a transaction of 1–4 events (sometimes leaving `writer.chk` behind the data
    ///   until the next step; if it does not fit, the active chunk is completed instead);
    /// * one stage of a chunk roll: next chunk created via temp + rename, then `writer.chk`;
    /// * early completion of the active chunk (a scavenge point), a new epoch, the chaser
    ///   catching up;
    /// * one piece of index work: start a memtable flush or a level merge, write a piece of the
    ///   growing PTable (bloom filter pages before its MD5), write `indexmap.<guid>.indexmap.tmp`,
    ///   delete `indexmap`, move the temp file in;
    /// * start or advance a scavenge, merge or follower raw replication (temp file, body and
    ///   completion, switch-in under `chunk-S.(max+1)`; rarely abandoned like a crash);
    /// * delayed deletion of replaced chunks and PTables, archive-mode removal of the oldest
    ///   chunk, a stream-existence flush half, a `kurrent.ddb` WAL append or checkpoint, a stray
    ///   `*.tmp` file, toggling `index/.forceverify`.
    pub fn step(&mut self) -> io::Result<String> {
        self.steps += 1;
        self.flush_deferred()?;
        let kind = self.choose();
        let desc = match kind {
            Kind::Append => {
                let n = self.rng.gen_range(1..=4);
                let defer = self.rng.gen_bool(0.15);
                let d = self.append_transaction(n, defer, false)?;
                if !defer && self.roll.is_none() && self.rng.gen_bool(0.75) {
                    self.chase(i64::MAX)?;
                }
                d
            }
            Kind::Roll => self.roll_step()?,
            Kind::CompleteEarly => format!("early completion: {}", self.begin_roll()?),
            Kind::Epoch => self.write_epoch()?,
            Kind::Chase => {
                self.chase(i64::MAX)?;
                format!("chaser -> {}", self.cps.chaser)
            }
            Kind::Index => {
                let with_bloom = self.rng.gen_bool(0.85);
                let pieces = self.rng.gen_range(2..=5);
                let guid = self.guid().to_string();
                match self
                    .index
                    .advance(self.cfg.memtable_entries, || guid, with_bloom, pieces)?
                {
                    Some(p) => {
                        self.schedule_deletion(p.obsolete);
                        p.description
                    }
                    None => "index: idle".into(),
                }
            }
            Kind::ChunkJob => self.chunk_job_step()?,
            Kind::Scavenge | Kind::Merge | Kind::Replicate => self.start_chunk_job(kind)?,
            Kind::Deletions => format!("deleted {} delayed file(s)", self.run_deletions(false)?),
            Kind::Existence => {
                let pos = self.cps.chaser;
                self.existence.as_mut().unwrap().flush_step(pos)?
            }
            Kind::Duck => self.duck.as_ref().unwrap().step(&mut self.rng)?,
            Kind::Leftover => self.leftover_tmp()?,
            Kind::ForceVerify => {
                let p = self.index_dir.join(".forceverify");
                if p.exists() {
                    fs::remove_file(&p)?;
                    "index/.forceverify removed".into()
                } else {
                    fs::write(&p, b"")?;
                    "index/.forceverify created".into()
                }
            }
            Kind::ArchiveRemove => self.archive_remove()?,
            Kind::Controlled => self.controlled_scavenge_step()?,
        };
        self.sync_controlled_scavenge();
        Ok(desc)
    }

    fn choose(&mut self) -> Kind {
        let mut kinds: Vec<(u32, Kind)> = Vec::new();
        if self.roll.is_some() {
            kinds.push((40, Kind::Roll));
        } else {
            kinds.push((45, Kind::Append));
            kinds.push((1, Kind::Epoch));
            if self.active.as_ref().is_some_and(|a| a.write_pos > 0) {
                kinds.push((1, Kind::CompleteEarly));
            }
        }
        if !self.unchased.is_empty() {
            kinds.push((6, Kind::Chase));
        }
        if self.index.is_busy() {
            kinds.push((30, Kind::Index));
        } else if self.index.has_work(self.cfg.memtable_entries) {
            kinds.push((12, Kind::Index));
        }
        if self.chunk_job.is_some() {
            kinds.push((20, Kind::ChunkJob));
        } else if self.controlled_chunk_due().is_some() {
            kinds.push((20, Kind::Controlled));
        } else if self.cfg.scavenge {
            if !self.scavenge_candidates().is_empty() {
                kinds.push((3, Kind::Scavenge));
            }
            if !self.cfg.archive && !self.merge_candidates().is_empty() {
                kinds.push((2, Kind::Merge));
            }
            if !self.replicate_candidates().is_empty() {
                kinds.push((1, Kind::Replicate));
            }
        }
        if self.deletions.iter().any(|d| d.due <= self.steps) {
            kinds.push((12, Kind::Deletions));
        }
        if let Some(f) = &self.existence {
            kinds.push((if f.is_flushing() { 20 } else { 4 }, Kind::Existence));
        }
        if self.duck.is_some() {
            kinds.push((3, Kind::Duck));
        }
        kinds.push((1, Kind::Leftover));
        kinds.push((1, Kind::ForceVerify));
        if self.cfg.archive && self.chunk_job.is_none() && self.archive_candidate().is_some() {
            kinds.push((2, Kind::ArchiveRemove));
        }
        let total: u32 = kinds.iter().map(|k| k.0).sum();
        let mut pick = self.rng.gen_range(0..total);
        for (w, k) in kinds {
            if pick < w {
                return k;
            }
            pick -= w;
        }
        Kind::Append
    }

    fn end_position(&self, m: &ChunkMeta) -> i64 {
        (m.end as i64 + 1) * self.cfg.chunk_size as i64
    }

    /// Completed chunks the chaser has fully passed (the server scavenges only those).
    fn scavenge_candidates(&self) -> Vec<ChunkMeta> {
        self.chunks
            .values()
            .filter(|m| self.end_position(m) <= self.cps.chaser)
            .cloned()
            .collect()
    }

    /// Runs of adjacent chunks whose records fit in one chunk.
    fn merge_candidates(&self) -> Vec<Vec<ChunkMeta>> {
        let ms = self.scavenge_candidates();
        let mut out = Vec::new();
        for i in 0..ms.len() {
            let mut run = vec![ms[i].clone()];
            let mut size = ms[i].physical;
            for next in &ms[i + 1..] {
                let last = run.last().unwrap();
                if next.start != last.end + 1 || size + next.physical > self.cfg.chunk_size as u64 {
                    break;
                }
                size += next.physical;
                run.push(next.clone());
            }
            if run.len() > 1 {
                out.push(run);
            }
        }
        out
    }

    /// Unscavenged `.000000` chunks a follower could receive as a raw scavenged `.000001`.
    fn replicate_candidates(&self) -> Vec<ChunkMeta> {
        self.scavenge_candidates()
            .into_iter()
            .filter(|m| m.version == 0 && !m.scavenged)
            .collect()
    }

    fn archive_candidate(&self) -> Option<ChunkMeta> {
        let first = self.chunks.values().next()?;
        (self.chunks.len() >= 2 && self.end_position(first) <= self.cps.chaser)
            .then(|| first.clone())
    }

    fn start_chunk_job(&mut self, kind: Kind) -> io::Result<String> {
        let run: Vec<ChunkMeta> = match kind {
            Kind::Scavenge => {
                let c = self.scavenge_candidates();
                vec![c[self.rng.gen_range(0..c.len())].clone()]
            }
            Kind::Merge => {
                let c = self.merge_candidates();
                c[self.rng.gen_range(0..c.len())].clone()
            }
            _ => {
                let c = self.replicate_candidates();
                vec![c[self.rng.gen_range(0..c.len())].clone()]
            }
        };
        let job_kind = match kind {
            Kind::Scavenge => JobKind::Scavenge,
            Kind::Merge => JobKind::Merge,
            _ => JobKind::Replicate,
        };
        self.begin_chunk_job(job_kind, run)
    }

    /// Starts a chunk job of `job_kind` over the chunks of `run` (stage 1).
    pub(crate) fn begin_chunk_job(
        &mut self,
        job_kind: JobKind,
        run: Vec<ChunkMeta>,
    ) -> io::Result<String> {
        let (start, end) = (run[0].start, run.last().unwrap().end);
        let sources = run.iter().map(|m| m.path(&self.db)).collect();
        let ids = [self.guid(), self.guid(), self.guid()];
        let job = ChunkJob::start(
            &self.db,
            job_kind,
            start,
            end,
            sources,
            self.cfg.chunk_size,
            self.cfg.legacy_v3_headers,
            ids,
        )?;
        if job_kind != JobKind::Replicate {
            if let Some(db) = &self.scavenge_db {
                db.begin(&mut self.rng)?;
            }
        }
        let desc = format!(
            "{job_kind:?} of chunks {start}..={end} started: {}",
            crate::index::file_name(&job.tmp)
        );
        self.chunk_job = Some(job);
        Ok(desc)
    }

    fn chunk_job_step(&mut self) -> io::Result<String> {
        let mut job = self.chunk_job.take().expect("a chunk job");
        if job.is_written() {
            return self.switch_in(job);
        }
        if job.kind != JobKind::Replicate && self.rng.gen_bool(0.05) {
            let tmp = job.tmp.clone();
            self.leftovers.push(tmp.clone());
            if let Some(db) = &self.scavenge_db {
                db.end()?;
            }
            return Ok(format!(
                "{:?} abandoned (crash): {} left behind",
                job.kind,
                crate::index::file_name(&tmp)
            ));
        }
        let kept = job.write(&mut self.rng, 0.6)?;
        let desc = format!(
            "{:?}: wrote {} ({kept} records kept, {} bytes)",
            job.kind,
            crate::index::file_name(&job.tmp),
            fs::metadata(&job.tmp)?.len()
        );
        self.chunk_job = Some(job);
        Ok(desc)
    }

    /// A stray temp file like a crash leaves behind (the server deletes them at startup).
    fn leftover_tmp(&mut self) -> io::Result<String> {
        let g = self.guid();
        let next = self.active.as_ref().map_or(0, |a| a.header.start) + 1;
        let (path, bytes) = match self.rng.gen_range(0..4) {
            0 => (
                self.db.join(format!(
                    "{}.{g}.tmp",
                    ChunkName {
                        start: next,
                        version: 0
                    }
                )),
                vec![0u8; 4096],
            ),
            1 => (self.db.join(format!("{g}.scavenge.tmp")), vec![0u8; 4096]),
            2 => (self.db.join(format!("write-attempt-{g}.tmp")), Vec::new()),
            _ => (
                self.index_dir.join(format!("indexmap.{g}.indexmap.tmp")),
                b"00000000000000000000000000000000\n2\n".to_vec(),
            ),
        };
        fs::write(&path, bytes)?;
        let desc = format!("left a stray {}", crate::index::file_name(&path));
        self.leftovers.push(path);
        Ok(desc)
    }

    /// Archive mode: the oldest local chunk is in the archive; remove it locally.
    fn archive_remove(&mut self) -> io::Result<String> {
        let Some(m) = self.archive_candidate() else {
            return Ok("archive: nothing to remove".into());
        };
        self.chunks.remove(&m.start);
        let mut paths = Vec::new();
        for entry in fs::read_dir(&self.db)? {
            let entry = entry?;
            if let Some(n) = entry.file_name().to_str().and_then(ChunkName::parse) {
                if (m.start..=m.end).contains(&n.start) {
                    paths.push(entry.path());
                }
            }
        }
        let n = paths.len();
        self.schedule_deletion(paths);
        Ok(format!(
            "archive: chunks {}..={} are archived; {n} local file(s) to remove",
            m.start, m.end
        ))
    }
}
