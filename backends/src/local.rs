//! The local filesystem target: a plain mirror of the keys (`index/indexmap` is the file
//! `<root>/index/indexmap`), written through `object_store`'s `LocalFileSystem`.
//!
//! Each object is written to a staging file beside it (`<name>#<n>`) and renamed into place, so
//! readers see whole objects only; files and their folders are fsynced before a write returns.
//! A crash can leave a staging file behind; listings skip such names, and the next run that
//! holds the lock removes those older than a minute (`abort_stale_uploads`).
//!
//! Opening a folder target creates nothing: the folder is created by the first write, so that
//! read-only commands (status, verify, restore, a dry run) never leave an empty folder behind a
//! mistyped path. Until then the location reads as empty.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

use crate::error::BackendError;
use crate::object_store_target::ObjectStoreTarget;
use crate::options::TargetOptions;

/// Opens the folder `root` as a target. A missing folder is not created here but by the first
/// write (listings of a missing folder are empty, reads say "not found"). The target's
/// [`local_root`](esbackup_engine::Target::local_root) and description are the folder's
/// absolute path: canonical where it exists, the rest added to its deepest existing ancestor.
pub fn open_local(root: &FsPath, opts: &TargetOptions) -> Result<ObjectStoreTarget, BackendError> {
    let open_err = |reason: String| BackendError::Open {
        location: root.display().to_string(),
        reason,
    };
    let resolved = resolve_root(root).map_err(|e| match e.kind() {
        io::ErrorKind::NotADirectory => {
            open_err("a part of the path is a file, not a folder: fix the path".into())
        }
        _ => open_err(format!("cannot resolve the folder's path: {e}")),
    })?;
    match std::fs::metadata(&resolved) {
        Ok(m) if !m.is_dir() => {
            return Err(open_err(
                "it is a file, not a folder: give a folder path".into(),
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(open_err(format!("cannot read the folder: {e}"))),
    }
    let part_size = opts.part_size(1).map_err(BackendError::Config)?;
    let concurrency = opts.concurrency().map_err(BackendError::Config)?;
    let store = LazyLocalStore {
        root: resolved.clone(),
        fs: OnceLock::new(),
    };
    Ok(ObjectStoreTarget::new(Arc::new(store), "")?
        .with_description(resolved.display().to_string())
        .with_local_files(LocalFiles {
            root: resolved.clone(),
            dirty: Arc::default(),
        })
        .with_local_root(resolved)
        .with_part_size(part_size)
        .with_memory(opts.memory())
        .with_concurrency(concurrency))
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

/// A `LocalFileSystem` over `root`, built once the folder exists: the first write creates it.
struct LazyLocalStore {
    root: PathBuf,
    fs: OnceLock<LocalFileSystem>,
}

impl fmt::Debug for LazyLocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyLocalStore")
            .field("root", &self.root)
            .finish()
    }
}

impl fmt::Display for LazyLocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalFileSystem({})", self.root.display())
    }
}

fn generic(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: source.into(),
    }
}

fn missing(location: &Path) -> object_store::Error {
    object_store::Error::NotFound {
        path: location.to_string(),
        source: "the target folder does not exist yet".into(),
    }
}

impl LazyLocalStore {
    /// The store if the folder exists, `None` if it does not (yet).
    fn existing(&self) -> object_store::Result<Option<&LocalFileSystem>> {
        if let Some(fs) = self.fs.get() {
            return Ok(Some(fs));
        }
        match std::fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => self.build().map(Some),
            Ok(_) => Err(generic(format!(
                "{} is a file, not a folder",
                self.root.display()
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(generic(format!("{}: {e}", self.root.display()))),
        }
    }

    /// The store, creating the folder first if it is missing.
    fn for_write(&self) -> object_store::Result<&LocalFileSystem> {
        if let Some(fs) = self.fs.get() {
            return Ok(fs);
        }
        if !self.root.is_dir() {
            std::fs::create_dir_all(&self.root).map_err(|e| {
                generic(format!(
                    "cannot create the folder {}: {e}",
                    self.root.display()
                ))
            })?;
            // Make the new folder's own entry durable, as LocalFileSystem does for files.
            if let Some(parent) = self.root.parent() {
                if let Err(e) = std::fs::File::open(parent).and_then(|d| d.sync_all()) {
                    tracing::debug!(folder = %parent.display(), error = %e, "fsync failed");
                }
            }
        }
        self.build()
    }

    fn build(&self) -> object_store::Result<&LocalFileSystem> {
        if let Some(fs) = self.fs.get() {
            return Ok(fs);
        }
        let fs = LocalFileSystem::new_with_prefix(&self.root)?
            .with_automatic_cleanup(true)
            .with_fsync(true);
        Ok(self.fs.get_or_init(|| fs))
    }
}

#[async_trait]
impl ObjectStore for LazyLocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.for_write()?.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.for_write()?.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        match self.existing()? {
            Some(fs) => fs.get_opts(location, options).await,
            None => Err(missing(location)),
        }
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        match self.existing()? {
            Some(fs) => fs.get_ranges(location, ranges).await,
            None => Err(missing(location)),
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        match self.existing() {
            Ok(Some(fs)) => fs.delete_stream(locations),
            Ok(None) => locations.map(|l| l.and_then(|l| Err(missing(&l)))).boxed(),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.existing() {
            Ok(Some(fs)) => fs.list(prefix),
            Ok(None) => stream::empty().boxed(),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.existing() {
            Ok(Some(fs)) => fs.list_with_offset(prefix, offset),
            Ok(None) => stream::empty().boxed(),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        match self.existing()? {
            Some(fs) => fs.list_with_delimiter(prefix).await,
            None => Ok(ListResult {
                common_prefixes: Vec::new(),
                objects: Vec::new(),
                extensions: Default::default(),
            }),
        }
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        match self.existing()? {
            Some(fs) => fs.copy_opts(from, to, options).await,
            None => Err(missing(from)),
        }
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        match self.existing()? {
            Some(fs) => fs.rename_opts(from, to, options).await,
            None => Err(missing(from)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use esbackup_engine::{Target, Upload};

    #[tokio::test]
    async fn opening_and_reading_a_missing_folder_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("backups/node1");
        let t = open_local(&root, &TargetOptions::default()).unwrap();
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
    async fn put_if_absent_and_multipart_create_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a");
        let t = open_local(&root, &TargetOptions::default()).unwrap();
        t.put_if_absent("lock", Bytes::from_static(b"l"))
            .await
            .unwrap();
        assert!(root.join("lock").is_file());

        let root = dir.path().join("b");
        let opts = TargetOptions {
            part_size: Some(crate::options::ByteSize(4)),
            ..Default::default()
        };
        let t = open_local(&root, &opts).unwrap();
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
        let opts = TargetOptions::default();

        // Existing: canonical (the symlink resolved).
        let t = open_local(&base.join("link"), &opts).unwrap();
        assert_eq!(t.local_root(), Some(base.join("real")));
        assert_eq!(t.describe(), base.join("real").display().to_string());
        // Missing below an existing symlink: the ancestor resolved, `..` applied.
        let t = open_local(&base.join("link/new/../x/y"), &opts).unwrap();
        assert_eq!(t.local_root(), Some(base.join("real/x/y")));
        // Relative: made absolute from the current folder.
        let t = open_local(FsPath::new("some-missing-rel-dir/n1"), &opts).unwrap();
        let cwd = std::fs::canonicalize(std::env::current_dir().unwrap()).unwrap();
        assert_eq!(t.local_root(), Some(cwd.join("some-missing-rel-dir/n1")));
        assert!(!cwd.join("some-missing-rel-dir").exists());
    }

    #[test]
    fn a_file_is_not_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let e = open_local(&file, &TargetOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a folder"), "{e}");
        let e = open_local(&file.join("below"), &TargetOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a folder"), "{e}");
        assert!(!e.contains('\n'));
    }
}

/// Writes of the folder target: each file copied by one pass of its upload on a blocking thread
/// ([`Upload::copy_to_file`](esbackup_engine::Upload::copy_to_file): copied in the kernel, then
/// what landed read back and hashed) into a staging file beside its final name
/// (`<name>#<digits>`, which listings skip), fsynced, and renamed into place; the folders are
/// fsynced once each by `sync` (the engine calls it before writing a restore point) — no part
/// buffers, no detour through object_store's multipart writes. Restores copy the files out in
/// the kernel too ([`Target::local_file`](esbackup_engine::Target::local_file)).
#[derive(Clone, Debug)]
pub(crate) struct LocalFiles {
    root: PathBuf,
    /// Folders files were renamed into since the last `sync` (fsynced by it, once each).
    dirty: Arc<std::sync::Mutex<std::collections::BTreeSet<PathBuf>>>,
}

impl LocalFiles {
    pub(crate) async fn put(
        &self,
        key: &str,
        body: esbackup_engine::Upload,
    ) -> Result<(), esbackup_engine::TargetError> {
        let dest = self.root.join(key);
        let key = key.to_string();
        let dir = dest.parent().map(FsPath::to_path_buf);
        let pass = body.clone();
        let written = tokio::task::spawn_blocking(move || write_file(&dest, &pass))
            .await
            .map_err(|e| esbackup_engine::TargetError::permanent(format!("{key}: {e}")))?;
        written.map_err(|e| body.failure(&key, e))?;
        // The folder and those above it (a new folder's own entry is in its parent).
        let mut dirty = self.dirty.lock().unwrap();
        for d in dir.iter().flat_map(|d| d.ancestors()) {
            if !d.starts_with(&self.root) || !dirty.insert(d.to_path_buf()) {
                break;
            }
        }
        Ok(())
    }

    /// The file that holds `key`.
    pub(crate) fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Fsyncs every folder a file was renamed into since the last call.
    pub(crate) async fn sync(&self) -> Result<(), esbackup_engine::TargetError> {
        let dirs = std::mem::take(&mut *self.dirty.lock().unwrap());
        let dirty = self.dirty.clone();
        tokio::task::spawn_blocking(move || {
            let mut left = dirs.into_iter();
            while let Some(dir) = left.next() {
                match std::fs::File::open(&dir).and_then(|d| d.sync_all()) {
                    Ok(()) => {}
                    // Removed since (a delete emptied it): nothing of it left to make durable.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        // The next sync tries this folder and the rest again.
                        dirty
                            .lock()
                            .unwrap()
                            .extend(std::iter::once(dir.clone()).chain(left));
                        return Err(esbackup_engine::TargetError::permanent("fsync of a folder")
                            .with_key(dir.display().to_string())
                            .with_source(e));
                    }
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| esbackup_engine::TargetError::permanent(format!("fsync: {e}")))?
    }
}

/// Whether a file name is a staging file (`<name>#<digits>`) of a write that has not finished.
fn is_staging(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(base, n)| {
        !base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

impl LocalFiles {
    /// Staging files under the folder whose last write is at least `older_than` ago.
    fn leftovers(root: &FsPath, older_than: std::time::Duration) -> io::Result<Vec<PathBuf>> {
        let mut found = Vec::new();
        let mut dirs = vec![root.to_path_buf()];
        let now = std::time::SystemTime::now();
        while let Some(dir) = dirs.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    dirs.push(entry.path());
                } else if kind.is_file() && is_staging(&entry.file_name().to_string_lossy()) {
                    let modified = entry.metadata()?.modified()?;
                    if now.duration_since(modified).unwrap_or_default() >= older_than {
                        found.push(entry.path());
                    }
                }
            }
        }
        Ok(found)
    }

    /// Removes the staging files killed runs left (at least `older_than` old).
    pub(crate) async fn remove_leftovers(
        &self,
        older_than: std::time::Duration,
    ) -> Result<u64, esbackup_engine::TargetError> {
        let root = self.root.clone();
        let removed = tokio::task::spawn_blocking(move || -> io::Result<u64> {
            let mut removed = 0;
            for path in Self::leftovers(&root, older_than)? {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(file = %path.display(), "removed a staging file of a killed run");
                        removed += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(removed)
        })
        .await
        .map_err(|e| esbackup_engine::TargetError::permanent(format!("staging files: {e}")))?;
        removed.map_err(|e| {
            esbackup_engine::TargetError::permanent(format!("removing staging files: {e}"))
        })
    }

    /// How many staging files are under the folder.
    pub(crate) async fn count_leftovers(&self) -> Result<u64, esbackup_engine::TargetError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || Self::leftovers(&root, std::time::Duration::ZERO))
            .await
            .map_err(|e| esbackup_engine::TargetError::permanent(format!("staging files: {e}")))?
            .map(|v| v.len() as u64)
            .map_err(|e| {
                esbackup_engine::TargetError::permanent(format!("listing staging files: {e}"))
            })
    }
}

impl LocalFiles {
    /// Streams bytes `range` (all when `None`) of `key`, read in 1 MiB pieces on the blocking
    /// thread pool.
    pub(crate) async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<esbackup_engine::ByteStream, esbackup_engine::TargetError> {
        use esbackup_engine::TargetError;
        let path = self.path_of(key);
        let key = key.to_string();
        let opened = tokio::task::spawn_blocking(move || -> io::Result<(std::fs::File, u64)> {
            let file = std::fs::File::open(&path)?;
            let len = file.metadata()?.len();
            Ok((file, len))
        })
        .await
        .map_err(|e| TargetError::permanent(format!("{key}: {e}")))?;
        let (file, len) = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(TargetError::not_found(key))
            }
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(TargetError::not_found(key))
            }
            Err(e) => return Err(TargetError::permanent(format!("reading {key}: {e}"))),
        };
        let range = range.unwrap_or(0..len);
        let end = range.end.min(len);
        let file = Arc::new(file);
        let state = (file, range.start.min(end), end, key);
        Ok(
            stream::try_unfold(state, |(file, at, end, key)| async move {
                if at >= end {
                    return Ok(None);
                }
                let want = (end - at).min(1 << 20) as usize;
                let f = file.clone();
                let piece = tokio::task::spawn_blocking(move || -> io::Result<Bytes> {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0u8; want];
                    f.read_exact_at(&mut buf, at)?;
                    Ok(Bytes::from(buf))
                })
                .await
                .map_err(|e| TargetError::permanent(format!("{key}: {e}")))?
                .map_err(|e| TargetError::permanent(format!("reading {key}: {e}")))?;
                Ok(Some((piece, (file, at + want as u64, end, key))))
            })
            .boxed(),
        )
    }
}

fn write_file(dest: &FsPath, body: &esbackup_engine::Upload) -> io::Result<()> {
    let dir = dest.parent().expect("a key has a file name");
    let made = missing_folders(dir);
    std::fs::create_dir_all(dir)?;
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    // Digits no other writer uses at the same moment.
    name.push(format!("#{}", rand::random::<u32>() % 1_000_000_000));
    let staging = dest.with_file_name(name);
    let written = (|| {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&staging)?;
        body.copy_to_file(&file)?;
        file.sync_all()?;
        std::fs::rename(&staging, dest)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&staging);
        // The folders this write made, deepest first, where nothing else moved in meanwhile.
        for d in made {
            let _ = std::fs::remove_dir(d);
        }
    }
    written
}

/// `dir` and those of its ancestors that do not exist yet, deepest first.
fn missing_folders(dir: &FsPath) -> Vec<PathBuf> {
    dir.ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .map(FsPath::to_path_buf)
        .collect()
}
