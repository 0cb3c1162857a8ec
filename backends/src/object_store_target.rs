//! [`ObjectStoreTarget`]: the one [`Target`] implementation over any `object_store` store (local
//! filesystem, S3, Azure, GCS), below a key prefix.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use esbackup_engine::ByteStream;
use esbackup_engine::{ObjectInfo, Stored, Target, TargetError, Upload};
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::path::{Path, PathPart};
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions,
    PutPayload,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::{is_not_found, map_store_error, upload_read_error, BackendError};
use crate::options::{DEFAULT_CONCURRENCY, DEFAULT_MEMORY, DEFAULT_PART_SIZE};

/// Writes objects where a store's own `object_store` writes cannot be used (GCS through the JSON
/// API). Reads, listings and deletes still go through `object_store`.
#[async_trait]
pub(crate) trait ObjectWriter: Send + Sync + fmt::Debug {
    async fn put(&self, path: &Path, key: &str, body: Upload) -> Result<(), TargetError>;
    async fn put_if_absent(&self, path: &Path, key: &str, data: Bytes) -> Result<(), TargetError>;
    async fn copy(&self, from: &Path, to: &Path, key: &str) -> Result<(), TargetError>;
    /// Whether the bucket exists, when the writer can tell more reliably than an object_store
    /// listing (`None`: it cannot tell).
    async fn bucket_exists(&self) -> Option<bool> {
        None
    }
}

/// Finds and aborts the multipart uploads a killed run left behind (S3: see `s3_uploads`).
#[async_trait]
pub(crate) trait StaleUploads: Send + Sync + fmt::Debug {
    /// Aborts the uploads below `prefix` started at least `older_than` ago; returns how many.
    async fn abort_stale(&self, prefix: &Path, older_than: Duration) -> Result<u64, TargetError>;
    /// How many uploads are in progress below `prefix`.
    async fn count(&self, prefix: &Path) -> Result<u64, TargetError>;
}

/// A [`Target`] over an [`ObjectStore`], with every key below `prefix`.
///
/// Bodies up to the part size go up in one PUT; larger ones are streamed from
/// [`Upload::stream`] as a multipart upload with at most `concurrency` parts in flight, aborted
/// if anything fails. Every part held in memory takes one of the target's buffers (its memory
/// budget divided by the part size), whatever the number of uploads at once, so memory stays
/// flat however many files a run sends together.
#[derive(Clone)]
pub struct ObjectStoreTarget {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    description: String,
    part_size: usize,
    concurrency: usize,
    /// Part buffers, shared by every upload of this target.
    buffers: Arc<Semaphore>,
    memory: usize,
    writer: Option<Arc<dyn ObjectWriter>>,
    uploads: Option<Arc<dyn StaleUploads>>,
    /// The folder of a local target.
    local_root: Option<PathBuf>,
    /// Native file writes of a local target.
    local_files: Option<crate::local::LocalFiles>,
    /// Cloud targets: the error to report when the bucket/container itself is missing.
    missing_bucket: Option<String>,
    /// Set once a request proved the bucket exists (no more probing on "not found").
    bucket_seen: Arc<AtomicBool>,
}

impl fmt::Debug for ObjectStoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreTarget")
            .field("location", &self.description)
            .field("store", &self.store.to_string())
            .field("part_size", &self.part_size)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl ObjectStoreTarget {
    /// A target over `store`, keys below `prefix` (`""` for the store's root; `/`-separated
    /// names, outer slashes ignored).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Self, BackendError> {
        let prefix = Path::parse(prefix)
            .map_err(|e| BackendError::Config(format!("bad prefix {prefix:?}: {e}")))?;
        Ok(ObjectStoreTarget {
            description: format!("{store}/{prefix}"),
            store,
            prefix,
            part_size: DEFAULT_PART_SIZE as usize,
            concurrency: DEFAULT_CONCURRENCY,
            buffers: buffers(DEFAULT_MEMORY as usize, DEFAULT_PART_SIZE as usize),
            memory: DEFAULT_MEMORY as usize,
            writer: None,
            uploads: None,
            local_root: None,
            local_files: None,
            missing_bucket: None,
            bucket_seen: Arc::new(AtomicBool::new(false)),
        })
    }

    /// What [`Target::describe`] reports (`s3://bucket/prefix`).
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Bodies larger than this go up as multipart uploads of parts this size (at least 1 byte;
    /// clouds need at least 5 MiB).
    pub fn with_part_size(mut self, part_size: usize) -> Self {
        self.part_size = part_size.max(1);
        self.buffers = buffers(self.memory, self.part_size);
        self
    }

    /// Bytes of upload parts held in memory at once, across all uploads (at least two parts).
    pub fn with_memory(mut self, memory: usize) -> Self {
        self.memory = memory;
        self.buffers = buffers(self.memory, self.part_size);
        self
    }

    /// Waits for a part buffer.
    async fn buffer(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.buffers
            .clone()
            .acquire_owned()
            .await
            .expect("the buffer semaphore is never closed")
    }

    /// Parts of one upload in flight at once (at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    pub(crate) fn with_local_files(mut self, files: crate::local::LocalFiles) -> Self {
        self.local_files = Some(files);
        self
    }

    /// The local folder this target stores into, reported by [`Target::local_root`] so the
    /// engine can refuse a location inside the database folder (set by `open_local`; set it
    /// when building a target over your own `LocalFileSystem`).
    pub fn with_local_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.local_root = Some(root.into());
        self
    }

    /// A cloud target: when the store says "not found" to a listing (or, once, to a read or
    /// write before any request proved the bucket exists), the bucket or container is missing
    /// and every operation fails with `message` (a permanent error) instead of reading as an
    /// empty location.
    pub fn with_missing_bucket_message(mut self, message: impl Into<String>) -> Self {
        self.missing_bucket = Some(message.into());
        self
    }

    pub(crate) fn with_writer(mut self, writer: Arc<dyn ObjectWriter>) -> Self {
        self.writer = Some(writer);
        self
    }

    pub(crate) fn with_stale_uploads(mut self, uploads: Arc<dyn StaleUploads>) -> Self {
        self.uploads = Some(uploads);
        self
    }

    fn saw_bucket(&self) {
        if self.missing_bucket.is_some() {
            self.bucket_seen.store(true, Ordering::Relaxed);
        }
    }

    /// A cloud target's "not found" may mean the bucket is missing rather than the object:
    /// until a request has proved the bucket exists, one listing tells which.
    async fn check_bucket<T>(&self, result: Result<T, TargetError>) -> Result<T, TargetError> {
        let err = match result {
            Ok(v) => {
                self.saw_bucket();
                return Ok(v);
            }
            Err(e) => e,
        };
        let (true, Some(message)) = (err.is_not_found(), &self.missing_bucket) else {
            return Err(err);
        };
        if self.bucket_seen.load(Ordering::Relaxed) {
            return Err(err);
        }
        let exists = match &self.writer {
            Some(writer) => writer.bucket_exists().await,
            None => match self.store.list(Some(&self.prefix)).next().await {
                Some(Err(e)) if is_not_found(&e) => Some(false),
                Some(Err(_)) => None,
                Some(Ok(_)) | None => Some(true),
            },
        };
        match exists {
            Some(false) => Err(TargetError::permanent(message.clone())),
            Some(true) => {
                self.saw_bucket();
                Err(err)
            }
            None => Err(err),
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The store path of `key`: the prefix, then the key's names, unencoded (`object_store`
    /// would percent-encode `%`, `#` and non-ASCII names with `Path::from`).
    fn path(&self, key: &str) -> Result<Path, TargetError> {
        check_key(key)?;
        let names = key
            .split('/')
            .map(PathPart::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TargetError::permanent(format!("invalid key {key:?}: {e}")))?;
        Ok(Path::from_iter(self.prefix.parts().chain(names)))
    }

    /// The key of a listed `path`, or `None` if it lies outside the prefix. (Keys are never
    /// encoded, so the path's parts are the key's names.)
    fn key_of(&self, path: &Path) -> Option<String> {
        let parts: Vec<PathPart<'_>> = path.prefix_match(&self.prefix)?.collect();
        let names: Vec<&str> = parts.iter().map(|p| p.as_ref()).collect();
        Some(names.join("/"))
    }

    async fn put_multipart(&self, path: &Path, key: &str, body: Upload) -> Result<(), TargetError> {
        let mut upload = self
            .store
            .put_multipart_opts(path, PutMultipartOptions::default())
            .await
            .map_err(|e| map_store_error(key, e))?;
        let mut parts = JoinSet::new();
        let sent = async {
            let mut pieces = body.stream(self.part_size);
            loop {
                let buffer = self.buffer().await;
                let Some(piece) = pieces.next().await else {
                    break;
                };
                let piece = piece.map_err(|e| upload_read_error(key, e))?;
                let part = upload.put_part(PutPayload::from_bytes(piece));
                parts.spawn(async move {
                    let sent = part.await;
                    drop(buffer);
                    sent
                });
                while parts.len() >= self.concurrency {
                    join_part(key, parts.join_next().await).await?;
                }
            }
            while !parts.is_empty() {
                join_part(key, parts.join_next().await).await?;
            }
            Ok(())
        }
        .await;
        let result = match sent {
            Ok(()) => upload
                .complete()
                .await
                .map(|_| ())
                .map_err(|e| map_store_error(key, e)),
            Err(e) => Err(e),
        };
        if result.is_err() {
            parts.abort_all();
            if let Err(e) = upload.abort().await {
                tracing::warn!(key, error = %e, "could not abort a failed multipart upload");
            }
        }
        result
    }
}

/// The buffer semaphore for `memory` bytes of `part_size` parts (at least two).
fn buffers(memory: usize, part_size: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new((memory / part_size.max(1)).max(2)))
}

async fn join_part(
    key: &str,
    joined: Option<Result<object_store::Result<()>, tokio::task::JoinError>>,
) -> Result<(), TargetError> {
    match joined {
        None | Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(e))) => Err(map_store_error(key, e)),
        Some(Err(e)) => Err(TargetError::permanent(format!(
            "uploading a part of {key}: {e}"
        ))),
    }
}

/// Keys are non-empty `/`-separated names with no empty, `.` or `..` segment and no control
/// character. A key is stored under exactly its own name: the file `<root>/<key>` on disk, the
/// object `<prefix>/<key>` in a bucket.
pub(crate) fn check_key(key: &str) -> Result<(), TargetError> {
    let bad_segment = key.is_empty()
        || key
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
    if bad_segment || key.chars().any(char::is_control) {
        return Err(TargetError::permanent(format!(
            "invalid key {key:?}: keys are /-separated names with no empty, . or .. segment and \
             no control character"
        )));
    }
    Ok(())
}

#[async_trait]
impl Target for ObjectStoreTarget {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        // object_store lists whole path segments; list the prefix's folder and filter.
        let folder = match prefix.rfind('/') {
            Some(at) => &prefix[..at],
            None => "",
        };
        let base = if folder.is_empty() {
            self.prefix.clone()
        } else {
            self.path(folder)?
        };
        let mut out = Vec::new();
        let mut listing = self.store.list(Some(&base));
        while let Some(meta) = listing.next().await {
            let meta = match meta {
                Ok(m) => m,
                Err(e) => match &self.missing_bucket {
                    // A local folder that does not exist (yet) is empty.
                    None if is_not_found(&e) => break,
                    None => return Err(map_store_error(&format!("list {prefix:?}"), e)),
                    // A cloud store answers "not found" to a listing only when the bucket
                    // itself is missing.
                    Some(message) if is_not_found(&e) => {
                        return Err(TargetError::permanent(message.clone()))
                    }
                    Some(message) => {
                        let err = map_store_error(&format!("list {prefix:?}"), e);
                        let probe = match (&self.writer, self.bucket_seen.load(Ordering::Relaxed)) {
                            (Some(writer), false) => writer.bucket_exists().await,
                            _ => None,
                        };
                        return Err(match probe {
                            Some(false) => TargetError::permanent(message.clone()),
                            _ => err,
                        });
                    }
                },
            };
            if let Some(key) = self.key_of(&meta.location) {
                if key.starts_with(prefix) {
                    out.push(ObjectInfo {
                        key,
                        size: meta.size,
                        modified: Some(meta.last_modified),
                    });
                }
            }
        }
        self.saw_bucket();
        Ok(out)
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, TargetError> {
        let meta = self
            .store
            .head(&self.path(key)?)
            .await
            .map_err(|e| map_store_error(key, e));
        let meta = self.check_bucket(meta).await?;
        Ok(ObjectInfo {
            key: key.into(),
            size: meta.size,
            modified: Some(meta.last_modified),
        })
    }

    async fn put(&self, key: &str, body: Upload) -> Result<Stored, TargetError> {
        let result = self.put_any(key, body.clone()).await;
        self.check_bucket(result).await?;
        body.stored(key)
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        let result = self.put_if_absent_any(key, data).await;
        self.check_bucket(result).await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream, TargetError> {
        let result = self.get_any(key, range).await;
        self.check_bucket(result).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), TargetError> {
        let result = self.copy_any(from, to).await;
        self.check_bucket(result).await
    }

    async fn delete(&self, key: &str) -> Result<(), TargetError> {
        match self.store.delete(&self.path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_store_error(key, e)),
        }
    }

    async fn sync(&self) -> Result<(), TargetError> {
        match &self.local_files {
            Some(files) => files.sync().await,
            None => Ok(()),
        }
    }

    fn local_root(&self) -> Option<PathBuf> {
        self.local_root.clone()
    }

    fn local_file(&self, key: &str) -> Option<PathBuf> {
        self.local_files.as_ref().map(|files| files.path_of(key))
    }

    /// S3 targets list the bucket's in-progress multipart uploads below the prefix and abort
    /// those started at least `older_than` ago; a local folder removes the staging files
    /// (`<name>#<n>`) of killed runs that old. Other stores have nothing to do: Azure discards uncommitted blocks after 7 days and GCS resumable sessions expire
    /// after a week, neither billed as objects meanwhile.
    async fn abort_stale_uploads(&self, older_than: Duration) -> Result<u64, TargetError> {
        if let Some(files) = &self.local_files {
            return files.remove_leftovers(older_than).await;
        }
        match &self.uploads {
            Some(uploads) => {
                let result = uploads.abort_stale(&self.prefix, older_than).await;
                self.check_bucket(result).await
            }
            None => Ok(0),
        }
    }

    async fn incomplete_uploads(&self) -> Result<u64, TargetError> {
        if let Some(files) = &self.local_files {
            return files.count_leftovers().await;
        }
        match &self.uploads {
            Some(uploads) => {
                let result = uploads.count(&self.prefix).await;
                self.check_bucket(result).await
            }
            None => Ok(0),
        }
    }
}

impl ObjectStoreTarget {
    async fn put_any(&self, key: &str, body: Upload) -> Result<(), TargetError> {
        let path = self.path(key)?;
        if let Some(files) = &self.local_files {
            return files.put(key, body).await;
        }
        if body.len() > self.part_size as u64 && self.writer.is_none() {
            return self.put_multipart(&path, key, body).await;
        }
        // One buffer: a small body whole, or the one piece a writer holds at a time.
        let _buffer = self.buffer().await;
        if let Some(writer) = &self.writer {
            return writer.put(&path, key, body).await;
        }
        let pieces: Vec<Bytes> = body
            .stream(self.part_size)
            .try_collect()
            .await
            .map_err(|e| upload_read_error(key, e))?;
        self.store
            .put_opts(&path, PutPayload::from_iter(pieces), PutOptions::default())
            .await
            .map_err(|e| map_store_error(key, e))?;
        Ok(())
    }

    async fn put_if_absent_any(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        let path = self.path(key)?;
        if let Some(writer) = &self.writer {
            return writer.put_if_absent(&path, key, data).await;
        }
        self.store
            .put_opts(&path, data.into(), PutMode::Create.into())
            .await
            .map_err(|e| map_store_error(key, e))?;
        Ok(())
    }

    async fn get_any(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, TargetError> {
        let path = self.path(key)?;
        if let Some(files) = &self.local_files {
            return files.get(key, range).await;
        }
        let mut options = GetOptions::default();
        match range {
            Some(r) if r.start >= r.end => {
                // An empty range: no request can express it, but a missing object still errors.
                self.head(key).await?;
                return Ok(stream::empty().boxed());
            }
            Some(r) => options.range = Some(GetRange::Bounded(r)),
            None => {}
        }
        let result = self
            .store
            .get_opts(&path, options)
            .await
            .map_err(|e| map_store_error(key, e))?;
        let key = key.to_string();
        Ok(result
            .into_stream()
            .map_err(move |e| map_store_error(&key, e))
            .boxed())
    }

    async fn copy_any(&self, from: &str, to: &str) -> Result<(), TargetError> {
        let (src, dst) = (self.path(from)?, self.path(to)?);
        if let Some(writer) = &self.writer {
            return writer.copy(&src, &dst, from).await;
        }
        self.store
            .copy(&src, &dst)
            .await
            .map_err(|e| map_store_error(from, e))
    }
}

/// A cloud target over `store`, described as `scheme://bucket/prefix`, with the part size
/// (`min_part` at least) and parts in flight from `opts`. `what` is "bucket" or "container" and
/// `place` says where it was looked for ("at http://127.0.0.1:3900"), for the error a missing
/// bucket gives.
pub(crate) struct CloudTarget<'a> {
    pub scheme: &'a str,
    pub what: &'a str,
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub place: String,
    pub part_size: usize,
}

impl CloudTarget<'_> {
    pub fn build(
        self,
        store: Arc<dyn ObjectStore>,
        opts: &crate::options::TargetOptions,
    ) -> Result<ObjectStoreTarget, BackendError> {
        let CloudTarget {
            scheme,
            what,
            bucket,
            prefix,
            place,
            part_size,
        } = self;
        let description = match prefix {
            "" => format!("{scheme}://{bucket}"),
            p => format!("{scheme}://{bucket}/{p}"),
        };
        let missing = format!(
            "{what} {bucket:?} does not exist {place} ({description}): create it or fix the \
             target URL"
        );
        Ok(ObjectStoreTarget::new(store, prefix)?
            .with_description(description)
            .with_missing_bucket_message(missing)
            .with_part_size(part_size)
            .with_memory(opts.memory())
            .with_concurrency(opts.concurrency().map_err(BackendError::Config)?))
    }
}
