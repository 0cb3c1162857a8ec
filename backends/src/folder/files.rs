//! [`LocalFiles`]: the folder target's native file reads and writes, its staging files and the
//! fsync of its folders. No part buffers and no multipart: each file is written by one pass
//! of its upload.

use std::collections::BTreeSet;
use std::io;
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use esbackup_engine::{ByteStream, TargetError, Upload};
use futures::stream::{self, StreamExt};

/// Writes of the folder target: each file copied by one pass of its upload on a blocking thread
/// ([`Upload::copy_to_file`]: copied in the kernel, then what landed read back and hashed) into
/// a staging file beside its final name (`<name>#<digits>`, which listings skip), fsynced, and
/// renamed into place; the folders are fsynced once each by `sync` (the engine calls it before
/// writing a restore point). Restores copy the files out in the kernel too
/// ([`Target::local_file`](esbackup_engine::Target::local_file)).
#[derive(Debug)]
pub(crate) struct LocalFiles {
    root: PathBuf,
    /// Folders files were renamed into since the last `sync` (fsynced by it, once each).
    dirty: Mutex<BTreeSet<PathBuf>>,
}

/// Runs `f` on the blocking thread pool; a failure is a permanent error saying `what`.
async fn blocking<T: Send + 'static>(
    what: &str,
    key: Option<&str>,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, TargetError> {
    let failed = |e: TargetError| match key {
        Some(key) => e.with_key(key),
        None => e,
    };
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failed(TargetError::permanent(what).with_source(e))),
        Err(e) => Err(failed(TargetError::permanent(what).with_source(e))),
    }
}

impl LocalFiles {
    pub fn new(root: PathBuf) -> LocalFiles {
        LocalFiles {
            root,
            dirty: Mutex::default(),
        }
    }

    /// The file that holds `key` (a checked key).
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Writes `body` to the file of `key` (a checked key) through a staging file.
    pub async fn put(&self, key: &str, body: Upload) -> Result<(), TargetError> {
        let dest = self.path_of(key);
        let dir = dest.parent().map(FsPath::to_path_buf);
        let pass = body.clone();
        let written = tokio::task::spawn_blocking(move || write_file(&dest, &pass))
            .await
            .map_err(|e| {
                TargetError::permanent("writing the file")
                    .with_key(key)
                    .with_source(e)
            })?;
        written.map_err(|e| body.failure(key, e))?;
        // The folder and those above it (a new folder's own entry is in its parent).
        let mut dirty = self.dirty.lock().unwrap();
        for d in dir.iter().flat_map(|d| d.ancestors()) {
            if !d.starts_with(&self.root) || !dirty.insert(d.to_path_buf()) {
                break;
            }
        }
        Ok(())
    }

    /// Fsyncs every folder a file was renamed into since the last call. A folder removed since
    /// (a delete emptied it) has nothing left to make durable; on an error, the folders not yet
    /// fsynced are kept for the next call.
    pub async fn sync(&self) -> Result<(), TargetError> {
        let dirs = std::mem::take(&mut *self.dirty.lock().unwrap());
        let synced = tokio::task::spawn_blocking(move || fsync_folders(dirs))
            .await
            .map_err(|e| TargetError::permanent("fsync of a folder").with_source(e))?;
        let Err((left, e)) = synced else {
            return Ok(());
        };
        let first = left[0].display().to_string();
        self.dirty.lock().unwrap().extend(left);
        Err(TargetError::permanent("fsync of a folder")
            .with_key(first)
            .with_source(e))
    }

    /// Removes the staging files killed runs left (at least `older_than` old).
    pub async fn remove_leftovers(&self, older_than: Duration) -> Result<u64, TargetError> {
        let root = self.root.clone();
        blocking("removing staging files", None, move || {
            let mut removed = 0;
            for path in leftovers(&root, older_than)? {
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
    }

    /// How many staging files are under the folder.
    pub async fn count_leftovers(&self) -> Result<u64, TargetError> {
        let root = self.root.clone();
        let found = blocking("listing staging files", None, move || {
            leftovers(&root, Duration::ZERO)
        });
        Ok(found.await?.len() as u64)
    }

    /// Streams bytes `range` (all when `None`) of `key`, read in 1 MiB pieces on the blocking
    /// thread pool.
    pub async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, TargetError> {
        let path = self.path_of(key);
        let opened = tokio::task::spawn_blocking(move || -> io::Result<(std::fs::File, u64)> {
            let file = std::fs::File::open(&path)?;
            let len = file.metadata()?.len();
            Ok((file, len))
        })
        .await
        .map_err(|e| {
            TargetError::permanent("reading")
                .with_key(key)
                .with_source(e)
        })?;
        let (file, len) = match opened {
            Ok(f) => f,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(TargetError::not_found(key))
            }
            Err(e) => {
                return Err(TargetError::permanent("reading")
                    .with_key(key)
                    .with_source(e))
            }
        };
        let range = range.unwrap_or(0..len);
        let end = range.end.min(len);
        let state = (Arc::new(file), range.start.min(end), end, key.to_string());
        Ok(
            stream::try_unfold(state, |(file, at, end, key)| async move {
                if at >= end {
                    return Ok(None);
                }
                let want = (end - at).min(1 << 20) as usize;
                let f = file.clone();
                let piece = blocking("reading", Some(&key), move || {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0u8; want];
                    f.read_exact_at(&mut buf, at)?;
                    Ok(Bytes::from(buf))
                })
                .await?;
                Ok(Some((piece, (file, at + want as u64, end, key))))
            })
            .boxed(),
        )
    }
}

/// Whether a file name is a staging file (`<name>#<digits>`) of a write that has not finished.
fn is_staging(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(base, n)| {
        !base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Staging files under `root` whose last write is at least `older_than` ago.
fn leftovers(root: &FsPath, older_than: Duration) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    let now = SystemTime::now();
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

/// Writes `body` to a staging file beside `dest`, fsyncs it and renames it into place.
/// Fsyncs each folder, skipping those removed since; on an error, the folders not fsynced yet
/// (the failing one first) and the error.
fn fsync_folders(dirs: BTreeSet<PathBuf>) -> Result<(), (Vec<PathBuf>, io::Error)> {
    let mut dirs = dirs.into_iter();
    while let Some(dir) = dirs.next() {
        match std::fs::File::open(&dir).and_then(|d| d.sync_all()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err((std::iter::once(dir).chain(dirs).collect(), e)),
        }
    }
    Ok(())
}

fn write_file(dest: &FsPath, body: &Upload) -> io::Result<()> {
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
