//! The restore's destination: one restore at a time per folder, and a folder made ready for it.

use std::fs::File;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;

use super::execute;
use crate::error::{EngineError, ErrorKind, Result};
use crate::layout::{classify, index_key, Kind};
use crate::source::{read_dir_names, SourceDirs};

/// An exclusive `flock` on the database folder, held until dropped.
pub(super) struct Held {
    _dir: File,
}

/// Locks the database folder `db` (creating it) for the length of a restore, so that a second
/// restore into it fails at once instead of writing the same `*.esbackup-partial` files, or
/// removing them with `--force`. The lock is the kernel's: it goes with the process. On a
/// file system that has no locks, the restore goes on without one (with a warning).
pub(super) fn lock(db: &Path) -> Result<Held> {
    std::fs::create_dir_all(db).map_err(|e| EngineError::io(db.display(), e))?;
    let dir = File::open(db).map_err(|e| EngineError::io(db.display(), e))?;
    match flock(&dir, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Held { _dir: dir }),
        Err(Errno::WOULDBLOCK) => Err(EngineError::new(
            ErrorKind::LockHeld,
            format!(
                "another restore is writing into {}: wait for it to end, or restore into another folder",
                db.display()
            ),
        )),
        // A file system without locks (some network mounts): restore without one.
        Err(e @ (Errno::NOLCK | Errno::OPNOTSUPP)) => {
            tracing::warn!("{}: no lock ({e}); restoring without one", db.display());
            Ok(Held { _dir: dir })
        }
        Err(e) => Err(EngineError::io(db.display(), e.into())),
    }
}

/// Refuses folders that hold files unless `force`; with `force`, removes the database files in
/// them (chunks, checkpoints, index files, secondary index) and leaves anything else alone.
pub(super) fn prepare(dirs: &SourceDirs, force: bool) -> Result<()> {
    for dir in [&dirs.db, &dirs.index] {
        let names: Vec<String> = read_dir_names(dir)?
            .into_iter()
            .filter(|n| !(dir == &dirs.db && dirs.index == dir.join(n)))
            .collect();
        if names.is_empty() {
            continue;
        }
        if !force {
            return Err(EngineError::new(
                ErrorKind::DestinationNotEmpty,
                format!(
                    "{} is not empty ({} entries): restore into an empty folder, or pass --force to replace its database files",
                    dir.display(),
                    names.len()
                ),
            ));
        }
        for name in names {
            let path = dir.join(&name);
            let key = if dir == &dirs.index {
                index_key(&name)
            } else {
                name.clone()
            };
            let is_db_file = !matches!(classify(&key), Kind::Unknown | Kind::Meta)
                || name.ends_with(".chk")
                || name.ends_with(execute::PARTIAL_SUFFIX)
                || (dir == &dirs.index
                    && matches!(name.as_str(), "stream-existence" | "scavenging"));
            if !is_db_file {
                continue;
            }
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| EngineError::io(path.display(), e))?;
        }
    }
    for dir in [&dirs.db, &dirs.index] {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir.display(), e))?;
    }
    Ok(())
}
