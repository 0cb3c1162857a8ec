//! The source database as the engine sees it: its folders, chunk files (from their headers),
//! checkpoints and index files. Temp files, sockets and anything that is not part of the
//! database are ignored.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};
use crate::format::chunk::{ChunkInfo, ChunkName};
use crate::format::{checkpoint, guid, indexmap};
use crate::layout;

/// The database and index folders of a node.
#[derive(Clone, Debug)]
pub struct SourceDirs {
    pub db: PathBuf,
    pub index: PathBuf,
}

impl SourceDirs {
    /// `index` defaults to `<db>/index`.
    pub fn new(db: &Path, index: Option<&Path>) -> SourceDirs {
        SourceDirs {
            db: db.to_path_buf(),
            index: index.map_or_else(|| db.join("index"), Path::to_path_buf),
        }
    }

    /// Refuses a folder that is not a database: it must exist and hold `writer.chk` and at
    /// least one chunk file, so that a wrong path or an unmounted volume never prunes a backup.
    pub fn validate(&self) -> Result<()> {
        let db = &self.db;
        if !db.is_dir() {
            return Err(EngineError::NotADatabase(format!(
                "database folder {} does not exist or is not a folder: point --db at the node's db folder",
                db.display()
            )));
        }
        if !db.join(checkpoint::WRITER).is_file() {
            return Err(EngineError::NotADatabase(format!(
                "{} is not an EventStoreDB/KurrentDB database: it has no writer.chk (point --db at the folder holding chunk-*.* and *.chk)",
                db.display()
            )));
        }
        if self.chunk_names()?.is_empty() {
            return Err(EngineError::NotADatabase(format!(
                "{} has no chunk files: refusing to back up (is the volume mounted?); the backup is left untouched",
                db.display()
            )));
        }
        Ok(())
    }

    /// Names of the chunk files in the db folder, sorted.
    pub fn chunk_names(&self) -> Result<Vec<ChunkName>> {
        let mut names: Vec<ChunkName> = read_dir_names(&self.db)?
            .iter()
            .filter_map(|n| ChunkName::parse(n))
            .collect();
        names.sort();
        Ok(names)
    }

    pub fn chunk_path(&self, name: &ChunkName) -> PathBuf {
        self.db.join(name.to_string())
    }

    /// Path of a file given its key in the backup location.
    pub fn path_of_key(&self, key: &str) -> PathBuf {
        match key.strip_prefix(layout::INDEX_DIR) {
            Some(rel) => self.index.join(rel),
            None => self.db.join(key),
        }
    }

    /// True when the index folder holds an index: an `indexmap` or PTables (one being
    /// replaced leaves a moment with tables but no `indexmap`). Other files (`.forceverify`,
    /// temp files) do not make an index, and directories do not count, as in the vendor
    /// procedure's step 1.
    pub fn has_index(&self) -> Result<bool> {
        Ok(read_dir_names(&self.index)?
            .iter()
            .any(|n| n == indexmap::FILE_NAME || guid::is_guid_name(n)))
    }
}

/// A chunk file of the source and what its header and footer say.
#[derive(Clone, Debug)]
pub struct SourceChunk {
    pub name: ChunkName,
    pub info: ChunkInfo,
}

impl SourceChunk {
    pub fn key(&self) -> String {
        self.name.to_string()
    }
}

/// Reads the headers of `names` and keeps the files the server would use: for each start
/// number the highest version; a file whose start lies inside an earlier kept file's range (a
/// chunk merged away) is an old version too. Returns (kept, superseded). A file that vanished
/// since it was listed is reported as `NotFound`.
pub fn resolve_chunks(
    dirs: &SourceDirs,
    names: &[ChunkName],
) -> io::Result<(Vec<SourceChunk>, Vec<ChunkName>)> {
    let mut highest: BTreeMap<u32, ChunkName> = BTreeMap::new();
    let mut superseded = Vec::new();
    for name in names {
        if let Some(prev) = highest.insert(name.start, *name) {
            let (lo, hi) = if prev.version < name.version {
                (prev, *name)
            } else {
                (*name, prev)
            };
            highest.insert(name.start, hi);
            superseded.push(lo);
        }
    }
    let mut kept: Vec<SourceChunk> = Vec::new();
    for name in highest.values() {
        if let Some(last) = kept.last() {
            if name.start <= last.info.header.end {
                superseded.push(*name);
                continue;
            }
        }
        let info = ChunkInfo::read(&dirs.chunk_path(name))?;
        kept.push(SourceChunk { name: *name, info });
    }
    superseded.sort();
    Ok((kept, superseded))
}

/// Names in a folder; a missing folder has none.
pub fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(io_err(dir, e)),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

fn io_err(path: &Path, e: io::Error) -> EngineError {
    EngineError::io(path.display(), e)
}
