//! The source database as the engine sees it: its folders, and what a backup captures of it, in
//! the vendor's order — the index ([`index`]), the files beside it ([`side_files`]), every other
//! file of the two folders ([`other_files`]), the checkpoints ([`checkpoints`]) and the chunk
//! files ([`chunks`]). The server's temp files and sockets are ignored. Nothing here writes to
//! the source.

pub(crate) mod checkpoints;
pub(crate) mod chunks;
pub(crate) mod index;
pub(crate) mod log_times;
pub(crate) mod other_files;
pub(crate) mod side_files;

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::format::chunk::ChunkName;
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

    /// Refuses a folder that is not a database: it must exist, must not be a backup location,
    /// and must hold `writer.chk` and at least one chunk file, so that a wrong path, swapped
    /// arguments or an unmounted volume never change a backup.
    pub fn validate(&self) -> Result<()> {
        let db = &self.db;
        let meta = std::fs::metadata(db).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => EngineError::not_a_database(format!(
                "database folder {} does not exist: point --db at the node's db folder",
                db.display()
            )),
            _ => EngineError::io(db.display(), e),
        })?;
        if !meta.is_dir() {
            return Err(EngineError::not_a_database(format!(
                "{} is not a folder: point --db at the node's db folder",
                db.display()
            )));
        }
        if db.join(layout::META_DIR).is_dir() {
            return Err(EngineError::wrong_location(format!(
                "{} is a backup location (it has {}), not a database: are --db and --target swapped?",
                db.display(),
                layout::META_DIR.trim_end_matches('/')
            )));
        }
        if !db.join(checkpoint::WRITER).is_file() {
            return Err(EngineError::not_a_database(format!(
                "{} is not an EventStoreDB/KurrentDB database: it has no writer.chk (point --db at the folder holding chunk-*.* and *.chk)",
                db.display()
            )));
        }
        if self.chunk_names()?.is_empty() {
            return Err(EngineError::not_a_database(format!(
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

/// What a file's metadata says, to tell an unchanged file from a changed one without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub len: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
}

impl FileStamp {
    pub fn of(meta: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            len: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            inode: meta.ino(),
        }
    }
}

/// Names in a folder; a missing folder has none.
pub fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(EngineError::io(dir.display(), e)),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| EngineError::io(dir.display(), e))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// The message for a file that vanished under the copy.
pub(crate) fn vanished(what: &str) -> EngineError {
    EngineError::source_changing(format!(
        "{what} disappeared during the backup: a scavenge is probably running. Stop it (DELETE /admin/scavenge/current, and POST /auto-scavenge/pause if auto-scavenge is on), run the backup again, then resume the scavenge. The backup is left as it was"
    ))
}

/// Classifies a failure to open or read a database file: gone (vanished under the copy), a
/// dangling symlink or otherwise damaged entry (the database is damaged), or a local I/O error.
pub(crate) fn open_failure(path: &Path, e: io::Error) -> EngineError {
    if e.kind() == io::ErrorKind::NotFound {
        return match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => EngineError::not_a_database(format!(
                "{} is a symlink to a missing file: the database is damaged (remove or fix the link)",
                path.display()
            )),
            _ => vanished(&path.display().to_string()),
        };
    }
    if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::UnexpectedEof {
        return EngineError::not_a_database(format!("{}: the database is damaged", path.display()))
            .with_source(e);
    }
    EngineError::io(path.display(), e)
}
