//! Replacing completed chunks (docs/FORMAT.md §5, §1.1 followers): scavenge of one chunk, merge of
//! adjacent chunks, and a raw-replicated scavenged chunk on a follower. Each is a job of three
//! stages (temp file created, body written and completed, switched in under a new version) so
//! readers see every intermediate state.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::Rng;
use uuid::Uuid;

use esbackup_engine::format::chunk::{self, ChunkHeader, ChunkInfo, ChunkName, HEADER_LEN};

use crate::chunk_writer;
use crate::records::{self, SYSTEM};

/// Which replacement a job makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// `<guid>.scavenge.tmp` → `chunk-S.(v+1)`, old version deleted later.
    Scavenge,
    /// `<guid>.merge.scavenge.tmp` → `chunk-S.(v+1)` covering S..=E, the others deleted later.
    Merge,
    /// `<guid>.tmp` → `chunk-S.000001`, the local `.000000` removed at once (follower).
    Replicate,
}

#[derive(Debug)]
enum Stage {
    Created(File),
    Written,
}

/// A chunk replacement in progress.
#[derive(Debug)]
pub struct ChunkJob {
    pub kind: JobKind,
    pub start: u32,
    pub end: u32,
    /// The latest-version files whose records are copied.
    pub sources: Vec<PathBuf>,
    pub tmp: PathBuf,
    header: ChunkHeader,
    stage: Stage,
    /// Physical data size of the output, known once written.
    pub physical: u64,
}

/// The result of switching a job's output in.
#[derive(Debug)]
pub struct Switched {
    pub name: ChunkName,
    /// Files that the new one replaces (to delete later, or already deleted for `Replicate`).
    pub replaced: Vec<PathBuf>,
}

impl ChunkJob {
    /// Stage 1: creates the preallocated temp file (through its own `.<guid>.tmp`).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        db: &Path,
        kind: JobKind,
        start: u32,
        end: u32,
        sources: Vec<PathBuf>,
        chunk_size: u32,
        legacy_v3: bool,
        ids: [Uuid; 3],
    ) -> io::Result<ChunkJob> {
        let tmp = db.join(match kind {
            JobKind::Scavenge => format!("{}.scavenge.tmp", ids[0]),
            JobKind::Merge => format!("{}.merge.scavenge.tmp", ids[0]),
            JobKind::Replicate => format!("{}.tmp", ids[0]),
        });
        let header = chunk_writer::header(chunk_size, start, end, true, ids[1], legacy_v3);
        let file = chunk_writer::create_preallocated(
            &tmp,
            &header,
            chunk::active_file_len(chunk_size),
            ids[2],
        )?;
        Ok(ChunkJob {
            kind,
            start,
            end,
            sources,
            tmp,
            header,
            stage: Stage::Created(file),
            physical: 0,
        })
    }

    pub fn is_written(&self) -> bool {
        matches!(self.stage, Stage::Written)
    }

    /// Stage 2: copies the kept records (epochs always kept), appends the posmap and completes
    /// the temp file. Returns the number of records kept.
    pub fn write(&mut self, rng: &mut StdRng, keep_ratio: f64) -> io::Result<usize> {
        let Stage::Created(file) = std::mem::replace(&mut self.stage, Stage::Written) else {
            return Ok(0);
        };
        let base = self.header.start_position();
        let mut out = Vec::new();
        let mut posmap = Vec::new();
        let mut logical_end = 0i64;
        for src in &self.sources {
            let data = read_records(src)?;
            let recs =
                records::walk(&data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            for (i, rec) in recs.iter().enumerate() {
                let last_chance = posmap.is_empty() && i + 1 == recs.len();
                let always = rec.kind == SYSTEM || records::kept_by_scavenge(rec.payload(&data));
                if !always && !last_chance && !rng.gen_bool(keep_ratio) {
                    continue;
                }
                posmap.push((out.len() as i32, rec.log_position - base));
                out.extend_from_slice(&data[rec.offset..rec.offset + rec.framed_len]);
                logical_end = rec.log_position + rec.framed_len as i64 - base;
            }
        }
        self.physical = out.len() as u64;
        chunk_writer::write_scavenged_body(
            &file,
            &self.tmp,
            &self.header,
            &out,
            &posmap,
            logical_end,
        )?;
        Ok(posmap.len())
    }

    /// Stage 3: renames the temp file to `chunk-S.(highest version + 1)`. For a follower's
    /// raw replication the replaced `.000000` is deleted immediately.
    pub fn switch_in(self, db: &Path) -> io::Result<Switched> {
        let mut replaced = Vec::new();
        let mut max_version = None;
        for entry in fs::read_dir(db)? {
            let entry = entry?;
            let Some(n) = entry.file_name().to_str().and_then(ChunkName::parse) else {
                continue;
            };
            if n.start == self.start {
                max_version = max_version.max(Some(n.version));
            }
            if (self.start..=self.end).contains(&n.start) {
                replaced.push(entry.path());
            }
        }
        let name = ChunkName {
            start: self.start,
            version: max_version.map_or(1, |v| v + 1),
        };
        fs::rename(&self.tmp, db.join(name.to_string()))?;
        if self.kind == JobKind::Replicate {
            for p in replaced.drain(..) {
                chunk_writer::make_writable(&p).ok();
                fs::remove_file(p)?;
            }
        }
        Ok(Switched { name, replaced })
    }
}

/// The framed records of a completed chunk (its data area up to the physical size).
pub fn read_records(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let info = ChunkInfo::read_from(&mut file)?;
    let physical = info
        .footer
        .map_or(0, |f| f.physical_data_size.max(0) as u64);
    let mut buf = vec![0u8; (HEADER_LEN + physical) as usize];
    io::Seek::seek(&mut file, io::SeekFrom::Start(0))?;
    file.read_exact(&mut buf)?;
    buf.drain(..HEADER_LEN as usize);
    Ok(buf)
}
