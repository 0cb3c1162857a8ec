//! Example of a custom esbackup storage backend, written from scratch against the
//! [`Target`] trait: each object is a folder holding `data` (the bytes) and `meta` (size and
//! MD5).
//!
//! ```text
//! <root>/objects/index%2Findexmap  ->  ../versions/v-1a2b…      (a symlink: the current version)
//! <root>/versions/v-1a2b…/data
//! <root>/versions/v-1a2b…/meta     size=1234\nmd5=…\n
//! ```
//!
//! A key's `/` is encoded as `%2F` (and `%` as `%25`), so every object is one entry of
//! `objects/`. Objects are replaced atomically, as [`Target`] requires: a new version folder is
//! written and fsynced, then the object's symlink is swapped to it with one `rename`. Readers
//! resolve the symlink once and read one version; a version folder is removed only after its
//! link moved away, and a reader that loses that race resolves the link again.
//!
//! Unix only (symlinks). See `tests/conformance.rs` for how it is tested.

use std::io::{self, ErrorKind, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use esbackup_engine::ByteStream;
use esbackup_engine::{ObjectInfo, Stored, Target, TargetError, Upload};
use futures::stream::{self, StreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Bytes read or written per step.
const PIECE: usize = 1 << 20;
/// How often a reader resolves a symlink again after losing a race with a writer.
const READ_ATTEMPTS: usize = 8;

/// A backup location where every object is a folder of its own.
#[derive(Debug)]
pub struct DirPerObjectTarget {
    root: PathBuf,
}

impl DirPerObjectTarget {
    /// Opens (creating it if missing) the folder `root`.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join("objects"))?;
        std::fs::create_dir_all(root.join("versions"))?;
        Ok(DirPerObjectTarget { root })
    }

    fn link(&self, key: &str) -> Result<PathBuf, TargetError> {
        if key.is_empty()
            || key
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(TargetError::permanent(format!("invalid key {key:?}")));
        }
        Ok(self.root.join("objects").join(encode(key)))
    }

    /// A fresh, empty version folder.
    async fn new_version(&self) -> Result<PathBuf, TargetError> {
        let dir = self.root.join("versions").join(unique_name("v"));
        tokio::fs::create_dir(&dir).await.map_err(io_error)?;
        Ok(dir)
    }

    /// The version folder `link` points at, or NotFound.
    async fn resolve(&self, key: &str, link: &Path) -> Result<PathBuf, TargetError> {
        match tokio::fs::read_link(link).await {
            Ok(target) => Ok(link.parent().expect("objects/").join(target)),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(TargetError::not_found(key)),
            Err(e) => Err(io_error(e)),
        }
    }

    /// Points `link` at `version` atomically, then removes the version it pointed at before.
    async fn publish(&self, link: &Path, version: &Path) -> Result<(), TargetError> {
        let old = tokio::fs::read_link(link).await.ok();
        let tmp = self.root.join("objects").join(unique_name(".tmp"));
        tokio::fs::symlink(relative(version), &tmp)
            .await
            .map_err(io_error)?;
        tokio::fs::rename(&tmp, link).await.map_err(io_error)?;
        sync_dir(&self.root.join("objects")).await?;
        if let Some(old) = old {
            let old = link.parent().expect("objects/").join(old);
            let _ = tokio::fs::remove_dir_all(old).await;
        }
        Ok(())
    }

    /// Runs `read` on the object's current version, resolving the link again if a writer
    /// removed that version in between.
    async fn with_version<T, F, Fut>(&self, key: &str, read: F) -> Result<T, TargetError>
    where
        F: Fn(PathBuf) -> Fut,
        Fut: std::future::Future<Output = io::Result<T>>,
    {
        let link = self.link(key)?;
        let mut last = None;
        for _ in 0..READ_ATTEMPTS {
            let version = self.resolve(key, &link).await?;
            match read(version).await {
                Ok(v) => return Ok(v),
                Err(e) if e.kind() == ErrorKind::NotFound => last = Some(e),
                Err(e) => return Err(io_error(e)),
            }
        }
        Err(TargetError::transient(format!(
            "{key} kept changing while it was read: {last:?}"
        )))
    }
}

#[async_trait]
impl Target for DirPerObjectTarget {
    fn describe(&self) -> String {
        format!("dir-per-object:{}", self.root.display())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        let mut out = Vec::new();
        let mut entries = tokio::fs::read_dir(self.root.join("objects"))
            .await
            .map_err(io_error)?;
        while let Some(entry) = entries.next_entry().await.map_err(io_error)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp") {
                continue;
            }
            let key = decode(&name);
            if !key.starts_with(prefix) {
                continue;
            }
            match self.head(&key).await {
                Ok(info) => out.push(info),
                Err(e) if e.is_not_found() => {} // deleted meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, TargetError> {
        let meta = self
            .with_version(key, |v| async move {
                tokio::fs::read_to_string(v.join("meta")).await
            })
            .await?;
        let size = meta
            .lines()
            .find_map(|l| l.strip_prefix("size="))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| TargetError::permanent(format!("{key}: bad meta file {meta:?}")))?;
        Ok(ObjectInfo::new(key, size))
    }

    async fn put(&self, key: &str, body: Upload) -> Result<Stored, TargetError> {
        let link = self.link(key)?;
        let version = self.new_version().await?;
        let result = async {
            let stored = write_version(key, &version, &body).await?;
            self.publish(&link, &version).await?;
            Ok(stored)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_dir_all(&version).await;
        }
        result
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        let link = self.link(key)?;
        let version = self.new_version().await?;
        let written = write_version(key, &version, &Upload::bytes(data)).await;
        // Creating a symlink fails if the name exists: an atomic create-if-absent.
        let result = match written {
            Ok(_) => match tokio::fs::symlink(relative(&version), &link).await {
                Ok(()) => return sync_dir(&self.root.join("objects")).await,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    Err(TargetError::already_exists(key))
                }
                Err(e) => Err(io_error(e)),
            },
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_dir_all(&version).await;
        result
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream, TargetError> {
        let file = self
            .with_version(key, |v| async move {
                tokio::fs::File::open(v.join("data")).await
            })
            .await?;
        // An open file stays readable even if a writer replaces or removes its version.
        let mut file = file;
        let len = file.metadata().await.map_err(io_error)?.len();
        let range = range.unwrap_or(0..len);
        let (start, end) = (range.start.min(len), range.end.min(len));
        file.seek(SeekFrom::Start(start)).await.map_err(io_error)?;
        let left = end.saturating_sub(start);
        Ok(
            stream::try_unfold((file, left), |(mut file, left)| async move {
                if left == 0 {
                    return Ok(None);
                }
                let mut buf = BytesMut::zeroed((left as usize).min(PIECE));
                let n = file.read(&mut buf).await.map_err(io_error)?;
                if n == 0 {
                    return Err(TargetError::permanent("data file is shorter than its meta"));
                }
                buf.truncate(n);
                Ok(Some((buf.freeze(), (file, left - n as u64))))
            })
            .boxed(),
        )
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), TargetError> {
        let dst = self.link(to)?;
        let version = self.new_version().await?;
        // Versions never change once published, so the copy can share the data file.
        let copied = self
            .with_version(from, |src| {
                let version = version.clone();
                async move {
                    tokio::fs::hard_link(src.join("data"), version.join("data")).await?;
                    tokio::fs::copy(src.join("meta"), version.join("meta")).await?;
                    Ok(())
                }
            })
            .await;
        if let Err(e) = copied {
            let _ = tokio::fs::remove_dir_all(&version).await;
            return Err(e);
        }
        sync_dir(&version).await?;
        self.publish(&dst, &version).await
    }

    async fn delete(&self, key: &str) -> Result<(), TargetError> {
        let link = self.link(key)?;
        let version = match self.resolve(key, &link).await {
            Ok(v) => v,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        match tokio::fs::remove_file(&link).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(e)),
        }
        let _ = tokio::fs::remove_dir_all(version).await;
        Ok(())
    }

    /// Every write is fsynced (files and folders) before it returns.
    async fn sync(&self) -> Result<(), TargetError> {
        Ok(())
    }

    /// Not a plain folder of the backup's files: the wrong-folder guard has nothing to check.
    fn local_root(&self) -> Option<PathBuf> {
        None
    }

    /// Objects are not stored as plain files under their own names: reads go through `get`.
    fn local_file(&self, _key: &str) -> Option<PathBuf> {
        None
    }
    fn encodes(&self) -> bool {
        false
    }

    /// A killed write leaves a version folder no link points at (and perhaps a `.tmp` link):
    /// those at least `older_than` old are removed.
    async fn abort_stale_uploads(&self, older_than: Duration) -> Result<u64, TargetError> {
        let stale = self.unpublished(Some(older_than)).await?;
        for path in &stale {
            let removed = match tokio::fs::symlink_metadata(path).await {
                Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(path).await,
                _ => tokio::fs::remove_file(path).await,
            };
            match removed {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(io_error(e)),
                _ => {}
            }
        }
        Ok(stale.len() as u64)
    }

    async fn incomplete_uploads(&self) -> Result<u64, TargetError> {
        Ok(self.unpublished(None).await?.len() as u64)
    }
}

impl DirPerObjectTarget {
    /// Version folders no object points at and `.tmp` links, of writes that are running or
    /// were killed; with `older_than`, only those last changed at least that long ago.
    async fn unpublished(&self, older_than: Option<Duration>) -> Result<Vec<PathBuf>, TargetError> {
        let objects = self.root.join("objects");
        let mut published = std::collections::HashSet::new();
        let mut found = Vec::new();
        for entry in read_dir(&objects).await? {
            match entry.file_name().to_string_lossy().starts_with(".tmp") {
                true => found.push(entry.path()),
                false => {
                    if let Ok(target) = tokio::fs::read_link(entry.path()).await {
                        published.insert(target.file_name().map(|n| n.to_os_string()));
                    }
                }
            }
        }
        for entry in read_dir(&self.root.join("versions")).await? {
            if !published.contains(&Some(entry.file_name())) {
                found.push(entry.path());
            }
        }
        let Some(age) = older_than else {
            return Ok(found);
        };
        let now = SystemTime::now();
        let mut old = Vec::new();
        for path in found {
            let Ok(meta) = tokio::fs::symlink_metadata(&path).await else {
                continue; // finished or removed meanwhile
            };
            let modified = meta.modified().map_err(io_error)?;
            if now.duration_since(modified).unwrap_or_default() >= age {
                old.push(path);
            }
        }
        Ok(old)
    }
}

/// The entries of a folder.
async fn read_dir(dir: &Path) -> Result<Vec<tokio::fs::DirEntry>, TargetError> {
    let mut entries = tokio::fs::read_dir(dir).await.map_err(io_error)?;
    let mut out = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(io_error)? {
        out.push(entry);
    }
    Ok(out)
}

/// Writes `data` and `meta` of a new version, durably, and returns what it stored. The body
/// is read through [`Upload::stream`], which hashes it: [`Upload::stored`] then says what was
/// written.
async fn write_version(key: &str, version: &Path, body: &Upload) -> Result<Stored, TargetError> {
    let mut file = tokio::fs::File::create(version.join("data"))
        .await
        .map_err(io_error)?;
    let mut pieces = body.stream(PIECE);
    let mut size = 0u64;
    while let Some(piece) = pieces.next().await {
        let piece = piece.map_err(|e| TargetError::body(key, e))?;
        file.write_all(&piece).await.map_err(io_error)?;
        size += piece.len() as u64;
    }
    file.sync_all().await.map_err(io_error)?;
    let stored = body.stored(key)?;
    let md5 = hex(stored.md5);
    let mut meta = tokio::fs::File::create(version.join("meta"))
        .await
        .map_err(io_error)?;
    meta.write_all(format!("size={size}\nmd5={md5}\n").as_bytes())
        .await
        .map_err(io_error)?;
    meta.sync_all().await.map_err(io_error)?;
    sync_dir(version).await?;
    Ok(stored)
}

/// `objects/` entries point at `../versions/<name>`.
fn relative(version: &Path) -> PathBuf {
    Path::new("../versions").join(version.file_name().expect("a version name"))
}

fn encode(key: &str) -> String {
    key.replace('%', "%25").replace('/', "%2F")
}

fn decode(name: &str) -> String {
    name.replace("%2F", "/").replace("%25", "%")
}

fn hex(md5: [u8; 16]) -> String {
    md5.iter().map(|b| format!("{b:02x}")).collect()
}

/// A name no other writer of this process or another one picks.
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{nanos:x}-{n}", std::process::id())
}

/// Makes a folder's new entries durable.
async fn sync_dir(dir: &Path) -> Result<(), TargetError> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
        .await
        .map_err(|e| TargetError::permanent(e.to_string()))?
        .map_err(io_error)
}

/// Local I/O errors: interrupted or timed-out calls are worth retrying, the rest are not.
fn io_error(e: io::Error) -> TargetError {
    match e.kind() {
        ErrorKind::Interrupted | ErrorKind::TimedOut | ErrorKind::WouldBlock => {
            TargetError::transient(e.to_string())
        }
        ErrorKind::NotFound => TargetError::not_found(e.to_string()),
        _ => TargetError::permanent(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_encode_to_one_name_and_back() {
        for key in [
            "index/indexmap",
            "a%2Fb",
            "chunk-000001.000000.old",
            ".esbackup/x",
        ] {
            let name = encode(key);
            assert!(!name.contains('/'));
            assert_eq!(decode(&name), key);
        }
    }
}
