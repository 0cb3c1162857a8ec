//! Every other file of the database and index folders — an operator's notes, a plugin's files
//! (the Kontext plugin keeps its own under `index/kontext`): "the other files *are the data*".
//!
//! Both folders are walked, the index folder once when it lies inside the database folder.
//! Left out: what the other capture modules take or deliberately omit (chunk files, the
//! checkpoints and `truncate.chk`, `indexmap`, the GUID tables and bloom filters, the side files,
//! the secondary index), the server's temp files and folders (`*.tmp`, which it deletes at
//! start-up) and a restore's `*.esbackup-partial`, sockets and fifos. Symlinks are never followed.
//! A file whose name the location cannot hold as a key, a symlink, or a folder that cannot be
//! read is reported by name ([`Skipped`]), never dropped silently.
//!
//! Files are only listed here (with their metadata, to tell an unchanged file at the next run);
//! each is opened when it is copied ([`open`]) and kept in the point only if it held still
//! during its copy.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{FileStamp, SourceDirs};
use crate::error::{EngineError, Result};
use crate::format::checkpoint;
use crate::layout::{self, classify, Kind};

/// A file of the database folders that no other capture takes, as listed.
#[derive(Clone, Debug)]
pub(crate) struct OtherFile {
    /// Its key: the path relative to the db folder, `index/...` for the index folder.
    pub key: String,
    pub path: PathBuf,
    pub stamp: FileStamp,
}

/// A file of the database folders a run did not store, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Its key (path relative to the db folder; `index/...` for the index folder), control
    /// characters escaped (`\n`).
    pub file: String,
    pub why: String,
}

impl Skipped {
    /// `key` escaped for display (a listed file's key has nothing to escape: it is its name).
    pub(crate) fn new(key: &str, why: impl Into<String>) -> Skipped {
        let file = key
            .chars()
            .map(|c| match c.is_control() {
                true => c.escape_default().to_string(),
                false => c.to_string(),
            })
            .collect();
        Skipped {
            file,
            why: why.into(),
        }
    }

    /// The note a point records for it.
    pub(crate) fn note(&self) -> String {
        format!("{} was not backed up: {}", self.file, self.why)
    }
}

/// What the walk found.
#[derive(Clone, Debug, Default)]
pub(crate) struct OtherFiles {
    pub files: Vec<OtherFile>,
    pub skipped: Vec<Skipped>,
}

/// Longest key stored: a version's key (`.esbackup/data/<key>/<run>`) must stay within the
/// 1,024 bytes object stores allow.
const MAX_KEY_LEN: usize = 900;

/// Lists the other files of the database and index folders.
pub(crate) fn capture(dirs: &SourceDirs) -> Result<OtherFiles> {
    let mut walk = Walk {
        dirs,
        db: dir_id(&dirs.db).map_err(|e| EngineError::io(dirs.db.display(), e))?,
        index: dir_id(&dirs.index).ok(),
        visited: HashSet::new(),
        out: OtherFiles::default(),
    };
    walk.folder(&dirs.db, "")?;
    if walk.index.is_some() {
        walk.folder(&dirs.index, layout::INDEX_DIR)?;
    }
    Ok(walk.out)
}

/// Opens a listed file for its copy: never through a symlink, and without blocking on a fifo
/// that took its place (the caller checks it is still a regular file).
pub(crate) fn open(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)
}

/// Why a listed file is not what its copy needs, as a [`Skipped`] reason.
pub(crate) fn unreadable(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "it disappeared before it was read".into(),
        _ => format!("it could not be read ({e})"),
    }
}

/// A folder by device and inode, to recognise it whatever path leads to it.
type DirId = (u64, u64);

fn dir_id(path: &Path) -> io::Result<DirId> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

struct Walk<'a> {
    dirs: &'a SourceDirs,
    db: DirId,
    /// `None` when there is no index folder.
    index: Option<DirId>,
    /// Folders walked (a bind mount can lead back into a folder already walked).
    visited: HashSet<DirId>,
    out: OtherFiles,
}

impl Walk<'_> {
    /// Walks `path`, whose entries get keys `prefix` + name.
    fn folder(&mut self, path: &Path, prefix: &str) -> Result<()> {
        let Ok(id) = dir_id(path) else {
            return Ok(()); // gone meanwhile
        };
        if !self.visited.insert(id) {
            return Ok(());
        }
        let top = prefix.is_empty() || prefix == layout::INDEX_DIR;
        let entries =
            match std::fs::read_dir(path).and_then(|rd| rd.collect::<io::Result<Vec<_>>>()) {
                Ok(entries) => entries,
                Err(e) if top => return Err(EngineError::io(path.display(), e)),
                Err(e) => {
                    let why = format!("the folder could not be read ({e})");
                    self.out.skipped.push(Skipped::new(prefix, why));
                    return Ok(());
                }
            };
        let mut entries: Vec<_> = entries.into_iter().map(|e| (e.file_name(), e)).collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, entry) in entries {
            let Some(name) = name.to_str() else {
                let key = format!("{prefix}{}", name.to_string_lossy());
                self.out.skipped.push(Skipped::new(
                    &key,
                    "its name is not UTF-8, so the backup location cannot name it; rename it",
                ));
                continue;
            };
            let key = format!("{prefix}{name}");
            if is_temp(name) {
                continue;
            }
            let path = entry.path();
            let Ok(ty) = entry.file_type() else { continue };
            if ty.is_dir() || ty.is_symlink() {
                // The other folder of the database is walked on its own.
                if let Ok(id) = dir_id(&path) {
                    if Some(id) == self.index || id == self.db {
                        continue;
                    }
                }
            }
            if prefix.is_empty() && name == layout::INDEX_DIR.trim_end_matches('/') {
                let why = format!(
                    "the backup keeps the index folder {} under this name; move it out of the database folder",
                    self.dirs.index.display()
                );
                self.out.skipped.push(Skipped::new(&key, why));
                continue;
            }
            if ty.is_dir() {
                self.folder(&path, &format!("{key}/"))?;
            } else if captured_elsewhere(&key) {
                continue;
            } else if ty.is_symlink() {
                self.out.skipped.push(Skipped::new(
                    &key,
                    "it is a symbolic link, which the backup never follows",
                ));
            } else if ty.is_file() {
                if let Some(why) = bad_key(&key) {
                    self.out.skipped.push(Skipped::new(&key, why));
                    continue;
                }
                match entry.metadata() {
                    Ok(meta) => self.out.files.push(OtherFile {
                        key,
                        path,
                        stamp: FileStamp::of(&meta),
                    }),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => self.out.skipped.push(Skipped::new(&key, unreadable(&e))),
                }
            }
            // Sockets, fifos and devices hold no data.
        }
        Ok(())
    }
}

/// The server's temp files and folders (docs/FORMAT.md: every `*.tmp`, deleted at start-up; DuckDB's
/// spill folder `kurrent.ddb.tmp`) and a restore's partial files.
fn is_temp(name: &str) -> bool {
    name.ends_with(".tmp") || name.ends_with(crate::restore::PARTIAL_SUFFIX)
}

/// Files another capture module takes, or leaves out on purpose: chunk files (old versions and
/// those beyond the writer too), the checkpoints and `truncate.chk` (a restore writes it from
/// `chaser.chk`), `indexmap`, GUID tables and bloom filters (those `indexmap` does not name
/// are being written or deleted; the server deletes them at start-up), the side files, the
/// secondary index.
fn captured_elsewhere(key: &str) -> bool {
    match classify(key) {
        Kind::Unknown | Kind::OldChunk(_) | Kind::Meta => false,
        Kind::Checkpoint(name) => {
            checkpoint::BACKED_UP.contains(&name.as_str())
                || layout::EXTRA_CHECKPOINTS.contains(&name.as_str())
                || name == checkpoint::TRUNCATE
        }
        Kind::Chunk(_)
        | Kind::IndexMap
        | Kind::PTable(_)
        | Kind::Bloom(_)
        | Kind::IndexOther(_)
        | Kind::SecondaryIndex(_) => true,
    }
}

/// Why `key` cannot be stored as it is, if it cannot: a point names files by safe relative
/// paths, and the key must also be a valid object key in every store.
fn bad_key(key: &str) -> Option<String> {
    // What a restore refuses, a backup never stores.
    if let Some(why) = layout::unsafe_file_key(key) {
        return Some(format!(
            "a restore point cannot name a file so ({why}); rename it"
        ));
    }
    if format!("{key}/").starts_with(layout::META_DIR) {
        return Some("the backup location keeps its own files under this name; rename it".into());
    }
    if key.chars().any(char::is_control) {
        return Some(
            "its name holds a control character (a newline, a tab...), which a restore point does not accept; rename it".into(),
        );
    }
    if key.len() > MAX_KEY_LEN {
        return Some(format!(
            "its path is longer than {MAX_KEY_LEN} bytes, more than object stores take"
        ));
    }
    let name = key.rsplit('/').next().unwrap_or(key);
    if let Some((_, digits)) = name.rsplit_once('#') {
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Some(
                "its name ends in # and digits, which a folder location uses for its staging files; rename it".into(),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(found: &OtherFiles) -> Vec<&str> {
        found.files.iter().map(|f| f.key.as_str()).collect()
    }

    fn skipped(found: &OtherFiles) -> Vec<&str> {
        found.skipped.iter().map(|s| s.file.as_str()).collect()
    }

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// A database folder with one file of every kind the engine knows.
    fn database(db: &Path, index: &Path) {
        let g = "5a1a8395-94ee-40c1-bf93-aa757b5887f8";
        for name in [
            "chunk-000000.000000",
            "chunk-000000.000001",
            "writer.chk",
            "chaser.chk",
            "epoch.chk",
            "proposal.chk",
            "truncate.chk",
            "tag.chk",
            "kurrent.ddb",
            "kurrent.ddb.wal",
            "chunk-000001.000000.1b2c.tmp",
            "3f2a.scavenge.tmp",
            "write-attempt-1.tmp",
            "chaser.chk.esbackup-partial",
            "kurrent.ddb.tmp/spill-1",
        ] {
            write(&db.join(name), b"x");
        }
        for name in [
            "indexmap".to_string(),
            g.to_string(),
            format!("{g}.bloomfilter"),
            format!("indexmap.{g}.indexmap.tmp"),
            layout::STREAM_EXISTENCE_CHK.into(),
            layout::STREAM_EXISTENCE_DAT.into(),
            layout::SCAVENGING_DB.into(),
            layout::SCAVENGING_WAL.into(),
            layout::SCAVENGING_SHM.into(),
        ] {
            write(&index.join(name), b"x");
        }
    }

    #[test]
    fn every_file_no_capture_takes_is_found_once_and_temp_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = SourceDirs::new(&dir.path().join("db"), None);
        database(&dirs.db, &dirs.index);
        write(&dirs.db.join("custom-notes.txt"), b"notes");
        write(&dirs.db.join("archive.chk"), b"12345678");
        write(&dirs.db.join("plugins/a/b.dat"), b"b");
        write(&dirs.index.join("kontext/vectors.bin"), b"v");
        write(&dirs.index.join("kontext/segment.tmp"), b"t");
        write(&dirs.index.join(".forceverify"), b"");
        write(&dirs.index.join("scavenging/scavenging.db-journal"), b"j");
        let _socket = std::os::unix::net::UnixListener::bind(dirs.db.join("kurrent.sock")).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            dirs.db.join("a.fifo"),
            rustix::fs::Mode::RWXU,
        )
        .unwrap();
        let found = capture(&dirs).unwrap();
        assert_eq!(
            keys(&found),
            [
                "archive.chk",
                "custom-notes.txt",
                "plugins/a/b.dat",
                "index/.forceverify",
                "index/kontext/vectors.bin",
                "index/scavenging/scavenging.db-journal",
            ]
        );
        assert!(found.skipped.is_empty(), "{:?}", found.skipped);
        let notes = &found.files[1];
        assert_eq!(notes.path, dirs.db.join("custom-notes.txt"));
        assert_eq!(notes.stamp.len, 5);
    }

    #[test]
    fn an_index_folder_elsewhere_is_walked_and_a_folder_named_index_in_the_db_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let index = dir.path().join("idx");
        let dirs = SourceDirs::new(&db, Some(&index));
        database(&db, &index);
        write(&index.join("kontext/vectors.bin"), b"v");
        write(&db.join("index/stray"), b"s");
        let found = capture(&dirs).unwrap();
        assert_eq!(keys(&found), ["index/kontext/vectors.bin"]);
        assert_eq!(skipped(&found), ["index"]);

        // The index folder inside the db folder under another name: walked once, as the index.
        let inner = SourceDirs::new(&db, Some(&db.join("my-index")));
        std::fs::remove_dir_all(db.join("index")).unwrap();
        std::fs::rename(&index, db.join("my-index")).unwrap();
        let found = capture(&inner).unwrap();
        assert_eq!(keys(&found), ["index/kontext/vectors.bin"]);
        assert!(found.skipped.is_empty(), "{:?}", found.skipped);
    }

    #[test]
    fn symlinks_are_not_followed_and_names_no_key_can_hold_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        write(&outside.join("secret"), b"s");
        let dirs = SourceDirs::new(&dir.path().join("db"), None);
        database(&dirs.db, &dirs.index);
        std::os::unix::fs::symlink(&outside, dirs.db.join("linked-folder")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), dirs.index.join("linked")).unwrap();
        write(&dirs.db.join("two\nlines"), b"n");
        write(&dirs.db.join("notes#12"), b"n");
        write(&dirs.db.join("notes#draft"), b"n");
        write(&dirs.db.join(".esbackup"), b"e");
        let long = "d/".repeat(MAX_KEY_LEN / 2) + "f";
        write(&dirs.db.join(&long), b"l");
        let found = capture(&dirs).unwrap();
        assert_eq!(keys(&found), ["notes#draft"]);
        let mut names = skipped(&found);
        names.sort();
        assert_eq!(
            names,
            [
                ".esbackup",
                long.as_str(),
                "index/linked",
                "linked-folder",
                "notes#12",
                "two\\nlines"
            ]
        );
        assert!(found.skipped.iter().all(|s| !s.why.is_empty()));
    }

    #[test]
    fn the_index_folder_linked_into_the_db_folder_is_walked_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let index = dir.path().join("fast-disk-index");
        database(&db, &index);
        std::os::unix::fs::symlink(&index, db.join("index")).unwrap();
        write(&index.join("kontext/vectors.bin"), b"v");
        let found = capture(&SourceDirs::new(&db, None)).unwrap();
        assert_eq!(keys(&found), ["index/kontext/vectors.bin"]);
        assert!(found.skipped.is_empty(), "{:?}", found.skipped);
    }
}
