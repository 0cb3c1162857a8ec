//! [`FolderTarget`]: a local folder, a plain mirror of the keys (`index/indexmap` is the file
//! `<root>/index/indexmap`).
//!
//! Each object is written natively ([`files`]): to a staging file beside it (`<name>#<n>`),
//! fsynced and renamed into place, so readers see whole objects only; the folders are fsynced
//! by [`Target::sync`]. There is no multipart upload, no part buffer and no `concurrency`: the
//! `storage:` options of the clouds do not apply. A crash can leave a staging file behind;
//! listings skip such names, and the next run that holds the lock removes those older than a
//! minute (`abort_stale_uploads`). Listings, `head`, create-if-absent, copies and deletes go
//! through object_store's `LocalFileSystem` ([`lazy_store`]).
//!
//! Opening a folder target creates nothing: the folder is created by the first write, so that
//! read-only commands (status, verify, restore, a dry run) never leave an empty folder behind a
//! mistyped path. Until then the location reads as empty.

mod files;
mod lazy_store;

use std::io;
use std::ops::Range;
use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use esbackup_engine::{ByteStream, ObjectInfo, Stored, Target, TargetError, Upload};

use crate::error::BackendError;
use crate::keys::{check_key, Keys};
use crate::objects::Objects;
use files::LocalFiles;
use lazy_store::LazyLocalStore;

/// A local folder as a [`Target`] (see the module documentation).
#[derive(Debug)]
pub struct FolderTarget {
    /// The folder's absolute path.
    root: PathBuf,
    /// Native writes and reads of whole files.
    files: LocalFiles,
    /// Listings, heads, create-if-absent, copies and deletes.
    objects: Objects,
}

/// Opens the folder `root` as a target. A missing folder is not created here but by the first
/// write (listings of a missing folder are empty, reads say "not found"). The target's
/// [`local_root`](esbackup_engine::Target::local_root) and description are the folder's
/// absolute path: canonical where it exists, the rest added to its deepest existing ancestor.
pub fn open_local(root: &FsPath) -> Result<FolderTarget, BackendError> {
    let err = |reason: &str, source: Option<io::Error>| BackendError::Folder {
        path: root.display().to_string(),
        reason: reason.into(),
        source,
    };
    let resolved = resolve_root(root).map_err(|e| match e.kind() {
        io::ErrorKind::NotADirectory => err(
            "a part of the path is a file, not a folder: fix the path",
            None,
        ),
        _ => err("cannot resolve the folder's path", Some(e)),
    })?;
    match std::fs::metadata(&resolved) {
        Ok(m) if !m.is_dir() => {
            return Err(err("it is a file, not a folder: give a folder path", None))
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err("cannot read the folder", Some(e))),
    }
    Ok(FolderTarget {
        files: LocalFiles::new(resolved.clone()),
        objects: Objects {
            store: Arc::new(LazyLocalStore::new(resolved.clone())),
            keys: Keys::new("").expect("the root prefix is valid"),
        },
        root: resolved,
    })
}

/// `root` made absolute: its deepest existing ancestor canonicalized (symlinks resolved), the
/// missing rest appended (with `..` applied lexically, which is exact there: a missing folder
/// is no symlink).
fn resolve_root(root: &FsPath) -> io::Result<PathBuf> {
    let absolute = std::path::absolute(root)?;
    let mut out = PathBuf::from("/");
    let mut exists = true;
    for component in absolute.components() {
        match component {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
            // `out` is canonical while it exists, so its parent is too.
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => {
                let next = out.join(name);
                if exists {
                    match std::fs::canonicalize(&next) {
                        Ok(canonical) => out = canonical,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            exists = false;
                            out = next;
                        }
                        Err(e) => return Err(e),
                    }
                } else {
                    out = next;
                }
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl Target for FolderTarget {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    /// A folder that does not exist (yet) is empty.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        match self.objects.list(prefix).await {
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            listed => listed,
        }
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, TargetError> {
        self.objects.head(key).await
    }

    /// One native pass of the body into a staging file, renamed into place.
    async fn put(&self, key: &str, body: Upload) -> Result<Stored, TargetError> {
        check_key(key)?;
        self.files.put(key, body.clone()).await?;
        body.stored(key)
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        self.objects.put_if_absent(key, data).await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream, TargetError> {
        check_key(key)?;
        self.files.get(key, range).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), TargetError> {
        self.objects.copy(from, to).await
    }

    async fn delete(&self, key: &str) -> Result<(), TargetError> {
        self.objects.delete(key).await
    }

    /// Fsyncs the folders files were renamed into since the last call.
    async fn sync(&self) -> Result<(), TargetError> {
        self.files.sync().await
    }

    /// The folder's absolute, canonical path.
    fn local_root(&self) -> Option<PathBuf> {
        Some(self.root.clone())
    }

    /// The file of `key`: restores copy it in the kernel.
    fn local_file(&self, key: &str) -> Option<PathBuf> {
        check_key(key).ok()?;
        Some(self.files.path_of(key))
    }
    fn encodes(&self) -> bool {
        false
    }

    /// Removes the staging files (`<name>#<n>`) of killed runs at least `older_than` old.
    async fn abort_stale_uploads(&self, older_than: Duration) -> Result<u64, TargetError> {
        self.files.remove_leftovers(older_than).await
    }

    async fn incomplete_uploads(&self) -> Result<u64, TargetError> {
        self.files.count_leftovers().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opening_and_reading_a_missing_folder_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("backups/node1");
        let t = open_local(&root).unwrap();
        assert!(t.list("").await.unwrap().is_empty());
        assert!(t.list("index/").await.unwrap().is_empty());
        assert!(matches!(
            t.head("manifest.json").await,
            Err(e) if e.is_not_found()));
        assert!(matches!(
            t.get("manifest.json", None).await,
            Err(e) if e.is_not_found()));
        assert!(matches!(
            t.copy("a", "b").await,
            Err(e) if e.is_not_found()));
        t.delete("manifest.json").await.unwrap();
        assert!(!root.exists(), "a read-only use created {}", root.display());
        assert!(!dir.path().join("backups").exists());

        t.put("index/indexmap", Upload::bytes(&b"map"[..]))
            .await
            .unwrap();
        assert_eq!(std::fs::read(root.join("index/indexmap")).unwrap(), b"map");
        assert_eq!(t.list("").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn put_if_absent_and_put_create_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a");
        let t = open_local(&root).unwrap();
        t.put_if_absent("lock", Bytes::from_static(b"l"))
            .await
            .unwrap();
        assert!(root.join("lock").is_file());

        let root = dir.path().join("b");
        let t = open_local(&root).unwrap();
        t.put("chunk", Upload::bytes(&b"0123456789"[..]))
            .await
            .unwrap();
        assert_eq!(std::fs::read(root.join("chunk")).unwrap(), b"0123456789");
    }

    #[test]
    fn local_root_is_absolute_and_canonical() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(base.join("real")).unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
        // Existing: canonical (the symlink resolved).
        let t = open_local(&base.join("link")).unwrap();
        assert_eq!(t.local_root(), Some(base.join("real")));
        assert_eq!(t.describe(), base.join("real").display().to_string());
        // Missing below an existing symlink: the ancestor resolved, `..` applied.
        let t = open_local(&base.join("link/new/../x/y")).unwrap();
        assert_eq!(t.local_root(), Some(base.join("real/x/y")));
        // Relative: made absolute from the current folder.
        let t = open_local(FsPath::new("some-missing-rel-dir/n1")).unwrap();
        let cwd = std::fs::canonicalize(std::env::current_dir().unwrap()).unwrap();
        assert_eq!(t.local_root(), Some(cwd.join("some-missing-rel-dir/n1")));
        assert!(!cwd.join("some-missing-rel-dir").exists());
    }

    #[test]
    fn a_file_is_not_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let e = open_local(&file).unwrap_err().to_string();
        assert!(e.contains("not a folder"), "{e}");
        let e = open_local(&file.join("below")).unwrap_err().to_string();
        assert!(e.contains("not a folder"), "{e}");
        assert!(!e.contains('\n'));
    }
}
