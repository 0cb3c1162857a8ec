//! The table index (docs/FORMAT.md §3): a memtable fed by the chaser, PTables arranged like a binary
//! counter (2 tables per level merge into the next level), and the `indexmap` rewrite through
//! `indexmap.<guid>.indexmap.tmp` → delete → move. Each piece of work is one `advance` call, so
//! a concurrent reader sees growing tables and the window without an `indexmap`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use esbackup_engine::format::indexmap::{self, IndexMap, TableRef};
use esbackup_engine::format::ptable::BLOOM_SUFFIX;

use crate::bloom::{self, BloomFile};
use crate::ptable_writer::{self, GrowingFile, IndexEntry};

/// Tables per level before they merge (the server's `maxTablesPerLevel`).
const TABLES_PER_LEVEL: usize = 2;

/// One PTable the index holds, with its entries (sorted descending) kept for merges.
#[derive(Clone, Debug)]
pub struct Table {
    pub guid: String,
    pub entries: Vec<IndexEntry>,
}

/// Work in progress on the index directory.
#[derive(Debug)]
enum Job {
    /// A new table is being written (growing file); its bloom filter exists at full size.
    Build {
        file: Box<GrowingFile>,
        bloom: Option<(PathBuf, BloomFile, File)>,
        table: Table,
        level: usize,
        /// (level, count) of tables it replaces: the first `count` tables of `level`.
        replaces: Option<usize>,
        checkpoints: (i64, i64),
    },
    /// The table is complete; the indexmap still has to be rewritten.
    MapPending {
        obsolete: Vec<String>,
    },
    MapTmpWritten {
        tmp: PathBuf,
        obsolete: Vec<String>,
    },
    /// `indexmap` is deleted and the temp file not yet moved: the missing-indexmap window.
    MapDeleted {
        tmp: PathBuf,
        obsolete: Vec<String>,
    },
}

/// What one `advance` did.
#[derive(Debug, Default)]
pub struct Progress {
    pub description: String,
    /// Files the new indexmap no longer references (delete them later).
    pub obsolete: Vec<PathBuf>,
}

/// The index state of a simulated node.
#[derive(Debug)]
pub struct Index {
    pub dir: PathBuf,
    pub levels: Vec<Vec<Table>>,
    pub memtable: Vec<IndexEntry>,
    mem_checkpoints: (i64, i64),
    /// (prepare, commit) checkpoints of the tables, as written in the indexmap.
    pub checkpoints: (i64, i64),
    job: Option<Job>,
}

impl Index {
    pub fn new(dir: PathBuf) -> Index {
        Index {
            dir,
            levels: Vec::new(),
            memtable: Vec::new(),
            mem_checkpoints: (-1, -1),
            checkpoints: (-1, -1),
            job: None,
        }
    }

    /// Loads the tables an existing `indexmap` references (missing indexmap = empty index).
    pub fn load(dir: PathBuf) -> io::Result<Index> {
        let mut index = Index::new(dir);
        let bytes = match fs::read(index.dir.join(indexmap::FILE_NAME)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(index),
            Err(e) => return Err(e),
        };
        let map = IndexMap::parse(&bytes)?;
        for t in &map.tables {
            let level = t.level as usize;
            if index.levels.len() <= level {
                index.levels.resize_with(level + 1, Vec::new);
            }
            let entries = ptable_writer::read_entries(&index.dir.join(&t.file))?;
            index.levels[level].push(Table {
                guid: t.file.clone(),
                entries,
            });
        }
        index.checkpoints = (map.prepare_checkpoint, map.commit_checkpoint);
        Ok(index)
    }

    /// Adds the entries of one chased transaction (prepare and commit positions).
    pub fn add(&mut self, entries: &[IndexEntry], last_prepare: i64, commit: i64) {
        self.memtable.extend_from_slice(entries);
        self.mem_checkpoints = (
            self.mem_checkpoints.0.max(last_prepare),
            self.mem_checkpoints.1.max(commit),
        );
    }

    pub fn is_busy(&self) -> bool {
        self.job.is_some()
    }

    /// True when a merge or a memtable flush could start now.
    pub fn has_work(&self, memtable_entries: usize) -> bool {
        self.job.is_some()
            || self.merge_level().is_some()
            || self.memtable.len() >= memtable_entries.max(1)
    }

    pub fn table_count(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    fn merge_level(&self) -> Option<usize> {
        self.levels.iter().position(|l| l.len() >= TABLES_PER_LEVEL)
    }

    /// Does one piece of index work: start a merge or flush, write a piece of a table, or one
    /// stage of the indexmap rewrite. `None` when there is nothing to do.
    pub fn advance(
        &mut self,
        memtable_entries: usize,
        new_guid: impl FnOnce() -> String,
        with_bloom: bool,
        pieces: usize,
    ) -> io::Result<Option<Progress>> {
        let job = match self.job.take() {
            Some(job) => job,
            None => match self.start(memtable_entries, new_guid, with_bloom, pieces)? {
                Some(desc) => {
                    return Ok(Some(Progress {
                        description: desc,
                        obsolete: Vec::new(),
                    }))
                }
                None => return Ok(None),
            },
        };
        let mut progress = Progress::default();
        self.job = match job {
            Job::Build {
                mut file,
                mut bloom,
                table,
                level,
                replaces,
                checkpoints,
            } => {
                if file.pieces_left() == 1 {
                    if let Some((_, filter, handle)) = bloom.as_mut() {
                        for page in filter.take_dirty() {
                            filter.write_page(handle, page)?;
                        }
                        handle.sync_all()?;
                    }
                }
                let done = file.write_next()?;
                progress.description = format!(
                    "index: wrote a piece of PTable {} ({} bytes so far)",
                    table.guid,
                    fs::metadata(&file.path)?.len()
                );
                if done {
                    let mut obsolete = Vec::new();
                    if let Some(count) = replaces {
                        let from = level - 1;
                        obsolete = self.levels[from].drain(..count).map(|t| t.guid).collect();
                    }
                    if self.levels.len() <= level {
                        self.levels.resize_with(level + 1, Vec::new);
                    }
                    self.levels[level].push(table);
                    self.checkpoints = (
                        self.checkpoints.0.max(checkpoints.0),
                        self.checkpoints.1.max(checkpoints.1),
                    );
                    Some(Job::MapPending { obsolete })
                } else {
                    Some(Job::Build {
                        file,
                        bloom,
                        table,
                        level,
                        replaces,
                        checkpoints,
                    })
                }
            }
            Job::MapPending { obsolete } => {
                let tmp = self
                    .dir
                    .join(format!("indexmap.{}.indexmap.tmp", new_guid()));
                let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
                io::Write::write_all(&mut f, &self.map().encode())?;
                f.sync_all()?;
                progress.description = format!("index: wrote {}", file_name(&tmp));
                Some(Job::MapTmpWritten { tmp, obsolete })
            }
            Job::MapTmpWritten { tmp, obsolete } => {
                let map = self.dir.join(indexmap::FILE_NAME);
                match fs::remove_file(&map) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                progress.description = "index: deleted indexmap (window without indexmap)".into();
                Some(Job::MapDeleted { tmp, obsolete })
            }
            Job::MapDeleted { tmp, obsolete } => {
                fs::rename(&tmp, self.dir.join(indexmap::FILE_NAME))?;
                progress.description = format!(
                    "index: moved new indexmap in ({} tables, {} obsolete)",
                    self.table_count(),
                    obsolete.len()
                );
                for guid in obsolete {
                    progress.obsolete.push(self.dir.join(&guid));
                    progress
                        .obsolete
                        .push(self.dir.join(format!("{guid}{BLOOM_SUFFIX}")));
                }
                None
            }
        };
        Ok(Some(progress))
    }

    /// Runs index work until nothing is left (used by `append` and `settle`).
    pub fn run_to_idle(
        &mut self,
        memtable_entries: usize,
        mut new_guid: impl FnMut() -> String,
        obsolete: &mut Vec<PathBuf>,
    ) -> io::Result<()> {
        while let Some(p) = self.advance(memtable_entries, &mut new_guid, true, 2)? {
            obsolete.extend(p.obsolete);
        }
        Ok(())
    }

    fn start(
        &mut self,
        memtable_entries: usize,
        new_guid: impl FnOnce() -> String,
        with_bloom: bool,
        pieces: usize,
    ) -> io::Result<Option<String>> {
        let (entries, level, replaces, checkpoints, what) = if let Some(l) = self.merge_level() {
            let mut entries: Vec<IndexEntry> = self.levels[l][..TABLES_PER_LEVEL]
                .iter()
                .flat_map(|t| t.entries.iter().copied())
                .collect();
            ptable_writer::sort_descending(&mut entries);
            (
                entries,
                l + 1,
                Some(TABLES_PER_LEVEL),
                (-1, -1),
                format!("merge of level {l}"),
            )
        } else if self.memtable.len() >= memtable_entries.max(1) {
            let mut entries = std::mem::take(&mut self.memtable);
            ptable_writer::sort_descending(&mut entries);
            let cps = std::mem::replace(&mut self.mem_checkpoints, (-1, -1));
            (entries, 0, None, cps, "memtable flush".to_string())
        } else {
            return Ok(None);
        };
        let guid = new_guid();
        let path = self.dir.join(&guid);
        let bloom = if with_bloom {
            let bpath = self.dir.join(format!("{guid}{BLOOM_SUFFIX}"));
            let mut filter = BloomFile::new(bloom::ptable_logical_bytes(entries.len() as u64));
            for e in &entries {
                filter.add(e.stream_hash);
            }
            let handle = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&bpath)?;
            handle.write_all_at(&filter.bytes()[..bloom::LINE], 0)?;
            handle.set_len(filter.bytes().len() as u64)?;
            Some((bpath, filter, handle))
        } else {
            None
        };
        let bytes = ptable_writer::encode_v4(&entries);
        let file = Box::new(GrowingFile::ptable(path, bytes, entries.len(), pieces));
        let desc = format!(
            "index: {what} started: PTable {guid} ({} entries) at level {level}",
            entries.len()
        );
        self.job = Some(Job::Build {
            file,
            bloom,
            table: Table { guid, entries },
            level,
            replaces,
            checkpoints,
        });
        Ok(Some(desc))
    }

    /// The indexmap describing the current tables.
    pub fn map(&self) -> IndexMap {
        let mut tables = Vec::new();
        for (level, ts) in self.levels.iter().enumerate() {
            for (position, t) in ts.iter().enumerate() {
                tables.push(TableRef {
                    level: level as u32,
                    position: position as u32,
                    file: t.guid.clone(),
                });
            }
        }
        IndexMap {
            version: 2,
            prepare_checkpoint: self.checkpoints.0,
            commit_checkpoint: self.checkpoints.1,
            max_auto_merge_level: Some(i32::MAX),
            tables,
        }
    }
}

pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
