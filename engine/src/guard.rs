//! Refusals that come before anything is written, so that a wrong or swapped folder can never
//! destroy data: a backup location that is, contains or lies inside the database (or restore)
//! folder; a location that holds objects but no backup (another database, another tool's
//! files); a restore into a backup location.

use std::path::{Component, Path, PathBuf};

use crate::error::{EngineError, Result};
use crate::format::checkpoint;
use crate::format::chunk::ChunkName;
use crate::layout;
use crate::location::Location;
use crate::source::SourceDirs;
use crate::target::Target;

/// Checks a backup location before a backup writes to it.
pub(crate) async fn backup_target(location: &Location, source: &SourceDirs) -> Result<()> {
    let target = location.target.as_ref();
    if let Some(root) = target.local_root() {
        no_overlap(&root, source, "the database folder")?;
    }
    empty_or_ours(
        location,
        "back up into an empty folder or prefix, or into an existing esbackup location (are --db and --target swapped?)",
    )
    .await
}

/// Checks a copy's destination before the copy writes to it: not inside the source or
/// around it (folders; URLs one of which extends the other's prefix), and empty or an
/// esbackup location. (That it is not the source itself is told by [`not_the_source`]: two
/// stores can share a bucket name and prefix.)
pub(crate) async fn copy_destination(source: &Location, destination: &Location) -> Result<()> {
    let (from, to) = (source.target.as_ref(), destination.target.as_ref());
    let overlap = match (from.local_root(), to.local_root()) {
        (Some(a), Some(b)) => {
            let (a, b) = (absolute(&a), absolute(&b));
            a.starts_with(&b) || b.starts_with(&a)
        }
        (None, None) => {
            let (a, b) = (from.describe(), to.describe());
            let inside = |x: &str, y: &str| {
                y.contains("://") && x.starts_with(&format!("{}/", y.trim_end_matches('/')))
            };
            inside(&a, &b) || inside(&b, &a)
        }
        _ => false,
    };
    if overlap {
        return Err(same_or_nested(from, to));
    }
    empty_or_ours(
        destination,
        "copy into an empty folder or prefix, or into an esbackup location that holds copies of the source",
    )
    .await
}

/// Refuses a copy whose source sees the lock object it just wrote at the destination
/// (`lock_key`): source and destination are one location.
pub(crate) async fn not_the_source(
    from: &dyn Target,
    to: &dyn Target,
    lock_key: &str,
) -> Result<()> {
    match from.head(lock_key).await {
        Ok(_) => Err(same_or_nested(from, to)),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(EngineError::storage(lock_key, e)),
    }
}

fn same_or_nested(from: &dyn Target, to: &dyn Target) -> EngineError {
    EngineError::wrong_location(format!(
        "the copy's source {} and destination {} are the same location, or one lies inside the other: copy to another folder, bucket or prefix",
        from.describe(),
        to.describe()
    ))
}

/// Refuses a location without a backup that holds anything but esbackup's own files (what
/// an interrupted first run left), saying what to do instead (`advice`).
async fn empty_or_ours(location: &Location, advice: &str) -> Result<()> {
    let target = location.target.as_ref();
    if location.has_backup() {
        return Ok(());
    }
    // No backup yet: the location must be empty, or hold what an interrupted first run left.
    let objects = target
        .list("")
        .await
        .map_err(|e| EngineError::storage("listing the backup location", e))?;
    if objects.iter().any(|o| o.key.starts_with(layout::META_DIR)) {
        // esbackup's own files (a lock, segments): a first run was interrupted here; whatever
        // else it stored, the next run reuses or ignores.
        return Ok(());
    }
    let foreign: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    if foreign.is_empty() {
        return Ok(());
    }
    let looks_like_db = foreign
        .iter()
        .any(|k| *k == checkpoint::WRITER || ChunkName::parse(k).is_some());
    let what = if looks_like_db {
        "is a database (it has writer.chk or chunk files) and not a backup location".to_string()
    } else {
        format!(
            "holds {} object(s) but no esbackup backup (for example {:?})",
            foreign.len(),
            foreign[0]
        )
    };
    Err(EngineError::wrong_location(format!(
        "{} {what}: {advice}",
        target.describe()
    )))
}

/// Checks a restore destination: never the backup location, inside it, around it, or another
/// backup location.
pub(crate) fn restore_destination(location: &Location, dest: &SourceDirs) -> Result<()> {
    if let Some(root) = location.target.local_root() {
        no_overlap(&root, dest, "the restore folder")?;
    }
    for dir in [&dest.db, &dest.index] {
        if dir.join(layout::META_DIR).is_dir() {
            return Err(EngineError::wrong_location(format!(
                "{} is a backup location (it has {}): restore into an empty folder, never into a backup",
                dir.display(),
                layout::META_DIR.trim_end_matches('/')
            )));
        }
    }
    Ok(())
}

/// Refuses the backup location `root` being the same as, inside, or around the folders of
/// `dirs` (`what` names them: the database folder, the restore folder).
fn no_overlap(root: &Path, dirs: &SourceDirs, what: &str) -> Result<()> {
    let root = absolute(root);
    let index_name = format!("{what}'s index folder");
    for (dir, name) in [(&dirs.db, what), (&dirs.index, index_name.as_str())] {
        let dir = absolute(dir);
        let relation = if root == dir {
            "is"
        } else if root.starts_with(&dir) {
            "lies inside"
        } else if dir.starts_with(&root) {
            "contains"
        } else {
            continue;
        };
        return Err(EngineError::wrong_location(format!(
            "the backup location {} {relation} {name} {}: use folders apart from each other (are --db and --target swapped?)",
            root.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// The absolute, symlink-free form of a path (of its longest existing ancestor, when the path
/// itself does not exist yet), with `.` and `..` resolved.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let mut normal = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    // Resolve symlinks on the part that exists.
    let mut existing = normal.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (
            existing.file_name().map(|n| n.to_owned()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return normal,
        }
    }
    let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
    for name in rest.into_iter().rev() {
        out.push(name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_folders_are_refused_in_every_direction() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir_all(db.join("index")).unwrap();
        let dirs = SourceDirs::new(&db, None);
        for bad in [
            db.clone(),
            db.join("backup"),
            db.join("index"),
            dir.path().to_path_buf(),
            db.join("x/../backup"),
        ] {
            let e = no_overlap(&bad, &dirs, "the database folder").unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::WrongLocation, "{bad:?}");
        }
        assert!(no_overlap(&dir.path().join("backup"), &dirs, "x").is_ok());
        assert!(no_overlap(&dir.path().join("db2"), &dirs, "x").is_ok());
    }

    #[test]
    fn symlinks_do_not_hide_an_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&db, &link).unwrap();
        let dirs = SourceDirs::new(&db, None);
        assert!(no_overlap(&link.join("backup"), &dirs, "x").is_err());
    }
}
