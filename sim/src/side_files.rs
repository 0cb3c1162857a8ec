//! Files beside the log and the PTables: the stream-existence filter (docs/FORMAT.md §4), the
//! scavenger's SQLite database with its `-wal`/`-shm`, and the DuckDB secondary index
//! `kurrent.ddb` + `kurrent.ddb.wal` (opaque blobs mutated in place).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::Rng;

use esbackup_engine::format::checkpoint;

use crate::bloom::BloomFile;

/// Filter bytes of the simulated stream-existence filter (a 64 KiB-ish file).
pub const EXISTENCE_LOGICAL_BYTES: u64 = 60_000;

/// `index/stream-existence/streamExistenceFilter.{dat,chk}`.
#[derive(Debug)]
pub struct ExistenceFilter {
    pub dat: PathBuf,
    pub chk: PathBuf,
    filter: BloomFile,
    /// A flush in progress: pages still to write and the checkpoint to write after them.
    pending: Option<(Vec<usize>, i64)>,
}

impl ExistenceFilter {
    pub fn dir(index: &Path) -> PathBuf {
        index.join("stream-existence")
    }

    /// Opens the filter, creating a fresh one (checkpoint -1) when missing or of the wrong size.
    pub fn open_or_create(index: &Path) -> io::Result<ExistenceFilter> {
        let dir = Self::dir(index);
        fs::create_dir_all(&dir)?;
        let dat = dir.join("streamExistenceFilter.dat");
        let chk = dir.join("streamExistenceFilter.chk");
        let fresh = BloomFile::new(EXISTENCE_LOGICAL_BYTES);
        let filter = match fs::read(&dat) {
            Ok(b) if b.len() == fresh.bytes().len() && chk.exists() => BloomFile::from_bytes(b),
            _ => {
                fs::write(&dat, fresh.bytes())?;
                checkpoint::write(&chk, -1)?;
                BloomFile::from_bytes(fresh.bytes().to_vec())
            }
        };
        Ok(ExistenceFilter {
            dat,
            chk,
            filter,
            pending: None,
        })
    }

    pub fn add(&mut self, stream_hash: u64) {
        self.filter.add(stream_hash);
    }

    pub fn is_flushing(&self) -> bool {
        self.pending.is_some()
    }

    /// One half of a flush: first call writes some dirty pages in place, the second writes the
    /// rest and then moves the checkpoint to `position`.
    pub fn flush_step(&mut self, position: i64) -> io::Result<String> {
        let file = OpenOptions::new().write(true).open(&self.dat)?;
        match self.pending.take() {
            None => {
                let mut pages = self.filter.take_dirty();
                let first: Vec<usize> = pages.drain(..pages.len().div_ceil(2)).collect();
                for &p in &first {
                    self.filter.write_page(&file, p)?;
                }
                self.pending = Some((pages, position));
                Ok(format!(
                    "stream-existence: rewrote {} page(s) of the filter in place",
                    first.len()
                ))
            }
            Some((pages, position)) => {
                for &p in &pages {
                    self.filter.write_page(&file, p)?;
                }
                file.sync_data()?;
                checkpoint::write(&self.chk, position)?;
                Ok(format!(
                    "stream-existence: rewrote {} more page(s), checkpoint -> {position}",
                    pages.len()
                ))
            }
        }
    }

    /// Completes a flush in progress.
    pub fn finish(&mut self) -> io::Result<()> {
        if self.pending.is_some() {
            self.flush_step(0)?;
        }
        Ok(())
    }
}

/// `index/scavenging/scavenging.db` (+ `-wal`, `-shm` while a scavenge runs).
#[derive(Debug)]
pub struct ScavengeDb {
    pub path: PathBuf,
}

const SQLITE_PAGE: usize = 16 * 1024;

impl ScavengeDb {
    /// Creates a valid empty SQLite database (WAL mode, 16 KiB pages) if none exists.
    pub fn open_or_create(index: &Path) -> io::Result<ScavengeDb> {
        let dir = index.join("scavenging");
        fs::create_dir_all(&dir)?;
        let path = dir.join("scavenging.db");
        if !path.exists() {
            fs::write(&path, sqlite_page_one(1))?;
        }
        Ok(ScavengeDb { path })
    }

    fn sidecar(&self, suffix: &str) -> PathBuf {
        let mut p = self.path.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    }

    /// A scavenge opens the database: the WAL and shared-memory files appear.
    pub fn begin(&self, rng: &mut StdRng) -> io::Result<()> {
        let mut wal = Vec::with_capacity(32 + 24 + SQLITE_PAGE);
        wal.extend_from_slice(&0x377f_0682u32.to_be_bytes());
        wal.extend_from_slice(&3_007_000u32.to_be_bytes());
        wal.extend_from_slice(&(SQLITE_PAGE as u32).to_be_bytes());
        wal.extend_from_slice(&0u32.to_be_bytes());
        wal.extend_from_slice(&rng.gen::<[u8; 16]>());
        wal.resize(32 + 24 + SQLITE_PAGE, 0);
        fs::write(self.sidecar("-wal"), wal)?;
        fs::write(self.sidecar("-shm"), vec![0u8; 32 * 1024])
    }

    /// The scavenge ends: a checkpoint rewrites the database in place, WAL and shm go away.
    pub fn end(&self) -> io::Result<()> {
        let file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        let mut counter = [0u8; 4];
        file.read_exact_at(&mut counter, 24)?;
        let next = u32::from_be_bytes(counter).wrapping_add(1);
        file.write_all_at(&sqlite_page_one(next), 0)?;
        file.sync_all()?;
        for s in ["-wal", "-shm"] {
            match fs::remove_file(self.sidecar(s)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Page 1 of an empty SQLite database in WAL mode with 16 KiB pages.
fn sqlite_page_one(change_counter: u32) -> Vec<u8> {
    let mut p = vec![0u8; SQLITE_PAGE];
    p[..16].copy_from_slice(b"SQLite format 3\0");
    p[16..18].copy_from_slice(&(SQLITE_PAGE as u16).to_be_bytes());
    p[18] = 2; // write version: WAL
    p[19] = 2; // read version: WAL
    p[21] = 64;
    p[22] = 32;
    p[23] = 32;
    p[24..28].copy_from_slice(&change_counter.to_be_bytes());
    p[28..32].copy_from_slice(&1u32.to_be_bytes()); // pages
    p[44..48].copy_from_slice(&4u32.to_be_bytes()); // schema format
    p[56..60].copy_from_slice(&1u32.to_be_bytes()); // UTF-8
    p[92..96].copy_from_slice(&change_counter.to_be_bytes());
    p[96..100].copy_from_slice(&3_046_000u32.to_be_bytes());
    p[100] = 0x0d; // empty leaf table b-tree (sqlite_schema)
    p[105..107].copy_from_slice(&(SQLITE_PAGE as u16).to_be_bytes());
    p
}

/// `<db>/kurrent.ddb` and `kurrent.ddb.wal`, mutated in place.
#[derive(Debug)]
pub struct DuckDb {
    pub path: PathBuf,
    pub wal: PathBuf,
}

const DDB_HEADER: u64 = 3 * 4096;
const DDB_BLOCK: u64 = 16 * 1024;

impl DuckDb {
    pub fn open_or_create(db: &Path) -> io::Result<DuckDb> {
        let d = DuckDb {
            path: db.join("kurrent.ddb"),
            wal: db.join("kurrent.ddb.wal"),
        };
        if !d.path.exists() {
            let mut head = vec![0u8; (DDB_HEADER + DDB_BLOCK) as usize];
            head[8..12].copy_from_slice(b"DUCK");
            head[12..20].copy_from_slice(&64u64.to_le_bytes());
            fs::write(&d.path, head)?;
        }
        if !d.wal.exists() {
            File::create(&d.wal)?;
        }
        Ok(d)
    }

    /// Either appends to the WAL, or checkpoints: rewrites blocks in place (maybe growing the
    /// file) and empties the WAL.
    pub fn step(&self, rng: &mut StdRng) -> io::Result<String> {
        if rng.gen_bool(0.6) {
            let n = rng.gen_range(64..2048);
            let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            let mut f = OpenOptions::new().append(true).open(&self.wal)?;
            f.write_all(&bytes)?;
            f.sync_data()?;
            return Ok(format!("kurrent.ddb.wal: appended {n} bytes"));
        }
        let f = OpenOptions::new().read(true).write(true).open(&self.path)?;
        let blocks = (f.metadata()?.len().saturating_sub(DDB_HEADER) / DDB_BLOCK).max(1);
        let grow = blocks < 6 && rng.gen_bool(0.3);
        let target = if grow {
            blocks
        } else {
            rng.gen_range(0..blocks)
        };
        let block: Vec<u8> = (0..DDB_BLOCK).map(|_| rng.gen()).collect();
        f.write_all_at(&block, DDB_HEADER + target * DDB_BLOCK)?;
        let mut header = [0u8; 8];
        header.copy_from_slice(&rng.gen::<[u8; 8]>());
        f.write_all_at(&header, 4096)?;
        f.sync_all()?;
        OpenOptions::new().write(true).open(&self.wal)?.set_len(0)?;
        Ok(format!(
            "kurrent.ddb: checkpoint rewrote block {target} in place, wal emptied"
        ))
    }
}
