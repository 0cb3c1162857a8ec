//! Files beside the log and the PTables: the stream-existence filter (its checkpoint is read
//! before its data, as the vendor procedure says), the scavenger's SQLite database, and the
//! KurrentDB secondary index when the operator says the node is stopped.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::{FileStamp, SourceDirs};
use crate::error::{EngineError, Result};
use crate::layout::{self, index_key};

/// A side file opened during the capture, with its metadata at that moment.
#[derive(Clone, Debug)]
pub(crate) struct SideFile {
    pub key: String,
    pub path: PathBuf,
    pub file: Arc<File>,
    pub stamp: FileStamp,
}

/// What the side-file capture found.
#[derive(Clone, Debug, Default)]
pub(crate) struct SideFiles {
    /// `streamExistenceFilter.chk` bytes and the `.dat` opened after it.
    pub existence: Option<(Bytes, SideFile)>,
    /// `scavenging.db` and its `-wal`/`-shm` when present.
    pub scavenging: Vec<SideFile>,
    /// `kurrent.ddb` and `kurrent.ddb.wal`, when asked for.
    pub secondary: Vec<SideFile>,
    /// Secondary-index files present but not captured (not asked for).
    pub secondary_left_out: Vec<String>,
}

pub(crate) fn capture(dirs: &SourceDirs, include_secondary_index: bool) -> Result<SideFiles> {
    let mut out = SideFiles::default();
    let chk_path = dirs.index.join(layout::STREAM_EXISTENCE_CHK);
    match std::fs::read(&chk_path) {
        Ok(chk) => {
            if let Some(dat) = open(dirs, &index_key(layout::STREAM_EXISTENCE_DAT))? {
                out.existence = Some((chk.into(), dat));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(EngineError::io(chk_path.display(), e)),
    }
    for name in [
        layout::SCAVENGING_DB,
        layout::SCAVENGING_WAL,
        layout::SCAVENGING_SHM,
    ] {
        if let Some(f) = open(dirs, &index_key(name))? {
            out.scavenging.push(f);
        }
    }
    if out
        .scavenging
        .first()
        .is_some_and(|f| f.key != index_key(layout::SCAVENGING_DB))
    {
        // A -wal or -shm without its database is a leftover, not a scavenge state.
        out.scavenging.clear();
    }
    for name in layout::SECONDARY_INDEX {
        if include_secondary_index {
            if let Some(f) = open(dirs, name)? {
                out.secondary.push(f);
            }
        } else if dirs.db.join(name).exists() {
            out.secondary_left_out.push(name.to_string());
        }
    }
    Ok(out)
}

fn open(dirs: &SourceDirs, key: &str) -> Result<Option<SideFile>> {
    let path = dirs.path_of_key(key);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(EngineError::io(path.display(), e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| EngineError::io(path.display(), e))?;
    Ok(Some(SideFile {
        key: key.to_string(),
        path,
        file: Arc::new(file),
        stamp: FileStamp::of(&meta),
    }))
}
