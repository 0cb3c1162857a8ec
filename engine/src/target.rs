//! The one seam between the engine and storage. Library users implement [`Target`] for their own
//! store; the engine never learns which store it talks to.
//!
//! # Contract
//!
//! Keys are `/`-separated paths relative to the backup location (`chunk-000000.000000`,
//! `index/indexmap`, `.esbackup/points/<id>.json`), with no empty, `.` or `..` segment. What the
//! engine relies on, and the conformance kit checks (`conformance::Kit`, feature `testing`, one
//! function per promise):
//!
//! - **Atomic replacement**: a reader sees an object whole, old or new, never partly written.
//!   A failed or interrupted `put` leaves the old object (or none), never a truncated one.
//! - **Durability**: `put`, `copy` and `delete` are durable once they return, or at the latest
//!   once [`Target::sync`] returns (a local folder may defer the fsync of its directories).
//! - **Streamed bodies**: `put` reads its body only through the [`Upload`]'s own readers
//!   ([`Upload::stream`], [`Upload::copy_to`], [`Upload::copy_to_file`]), every byte, on every
//!   attempt, and returns [`Upload::stored`]: those readers hash exactly what they read, so the
//!   [`Stored`] it returns is the size and MD5 of what the store holds. It must not open the
//!   file behind the upload itself. A body that fails to read, or is shorter than [`Upload::len`],
//!   must not be stored (the old object stays) and fails with [`TargetErrorKind::Body`].
//! - **Read-after-write listing**: once a `put` or `delete` returned, `list` shows it. The lock
//!   depends on this (each run writes its own lock object, then lists the others); so does a
//!   run confirming what it stored.
//! - `list(prefix)` is a plain string prefix over whole keys, recursive, in any order, however
//!   many keys there are (a store that pages its listings reads every page).
//! - `head`/`get` of a missing key → [`TargetErrorKind::NotFound`]; `delete` of a missing key →
//!   `Ok`; `get` with a range returns exactly those bytes (an empty range none, a range ending
//!   past the end the bytes up to the end).
//! - `put_if_absent` → [`TargetErrorKind::AlreadyExists`] if the key exists, also when several
//!   callers race for it (exactly one wins); a store that cannot tell atomically returns
//!   [`TargetErrorKind::Unsupported`] (never overwrite silently).
//! - `copy` replaces the destination; a missing source → `NotFound`.
//! - Errors are classified by kind (the rules are in [`TargetError`]'s module): `Transient`
//!   (worth retrying later) or `Permanent`, and the store's own error is kept as the source.
//!
//! # Retries
//!
//! The engine never retries a request. A store's client may retry transient failures itself
//! (the object_store backends do, with backoff); a store whose client does not can be wrapped
//! in [`crate::RetryTarget`].
//!
//! # Wrappers
//!
//! Every method is required, so a wrapper (metering, retries, fault injection, later
//! encryption) states what it does with each: a forgotten [`Target::sync`] would lose
//! durability, a forgotten [`Target::local_root`] the wrong-folder guard, a forgotten
//! [`Target::local_file`] the kernel copies of a restore. The kit in `conformance` (feature
//! `testing`) checks each of these promises, wrappers included.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use crate::target_error::{BoxError, TargetError, TargetErrorKind};
pub use crate::upload::Upload;

/// A stream of bytes read from the store.
pub type ByteStream = BoxStream<'static, Result<Bytes, TargetError>>;

/// What a listing or `head` says of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// When the store last wrote it, by the store's clock, where the store says (`None`
    /// otherwise). `forget --prune` never deletes an object dated after its own lock object.
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
}

impl ObjectInfo {
    /// An object without a modification time.
    pub fn new(key: impl Into<String>, size: u64) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size,
            modified: None,
        }
    }
}

/// What a `put` stored (from [`Upload::stored`]): the size and MD5 of exactly the bytes a
/// `get` of the key returns now, and the bytes the store holds for them, which `list` and
/// `head` show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    pub md5: [u8; 16],
    /// Equal to `size`, except where the target encodes what it stores (the engine's
    /// compressing and encrypting wrapper, `codec`).
    pub stored_size: u64,
}

/// Storage for one backup location (see the module documentation for the contract).
#[async_trait]
pub trait Target: Send + Sync + std::fmt::Debug {
    /// A short human description (`s3://bucket/prefix`, `/backups/node1`).
    fn describe(&self) -> String;

    /// Every object whose key starts with `prefix` (recursively), in any order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError>;

    /// Size of one object, or [`TargetErrorKind::NotFound`].
    async fn head(&self, key: &str) -> Result<ObjectInfo, TargetError>;

    /// Stores `body` under `key`, replacing any object there, and returns what it stored
    /// ([`Upload::stored`]). Read the body with the upload's readers; on a retry read it again
    /// from the start. Return only once the whole object is durably stored.
    async fn put(&self, key: &str, body: Upload) -> Result<Stored, TargetError>;

    /// Stores `data` only if `key` does not exist: [`TargetErrorKind::AlreadyExists`] otherwise, or
    /// [`TargetErrorKind::Unsupported`] where the store cannot tell (the lock then falls back).
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<(), TargetError>;

    /// Streams an object, or the byte `range` of it.
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream, TargetError>;

    /// Server-side copy of `from` to `to`, replacing `to`.
    async fn copy(&self, from: &str, to: &str) -> Result<(), TargetError>;

    /// Deletes an object; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), TargetError>;

    /// Makes every write that returned so far durable, for stores that defer part of it (the
    /// folder target fsyncs the folders it renamed files into). The engine calls it before it
    /// writes a restore point and after.
    async fn sync(&self) -> Result<(), TargetError>;

    /// The local folder this location is, when it is one (the folder target). The engine
    /// refuses a location that is, contains or lies inside the database or restore folder.
    fn local_root(&self) -> Option<PathBuf>;

    /// The local file that holds `key`, when this target stores each object as a plain file
    /// (the folder target): a restore then copies the object in the kernel instead of streaming
    /// it through [`Target::get`], and still hashes what it wrote. `None`: objects are
    /// always read with `get`.
    fn local_file(&self, key: &str) -> Option<PathBuf>;

    /// Whether this target stores other bytes than it is given (a compressing or encrypting
    /// wrapper): `get` still returns the given bytes, but a listing's sizes are stored sizes.
    /// The engine then keeps no plain copy of the newest point at the root and adopts no
    /// object it did not write, since neither could be read without esbackup.
    fn encodes(&self) -> bool;

    /// Aborts the incomplete writes under this location that were started at least
    /// `older_than` ago: multipart uploads (S3 bills their parts until they are aborted) and
    /// staging files (a folder's `<name>#<n>`) that a killed run left behind. Called only by a
    /// run that holds the lock. Returns how many were removed; stores without such
    /// leftovers return 0.
    async fn abort_stale_uploads(&self, older_than: Duration) -> Result<u64, TargetError>;

    /// How many incomplete writes (as [`Target::abort_stale_uploads`] sees them) are under this
    /// location now, for `status`.
    async fn incomplete_uploads(&self) -> Result<u64, TargetError>;
}

/// Reads a whole (small) object into memory: a restore point, a lock object.
pub async fn get_bytes(target: &dyn Target, key: &str) -> Result<Bytes, TargetError> {
    use futures::TryStreamExt;
    let parts: Vec<Bytes> = target.get(key, None).await?.try_collect().await?;
    Ok(parts.concat().into())
}

/// A shared target is a target (so wrappers can hold `Arc<dyn Target>`).
#[async_trait]
impl<T: Target + ?Sized> Target for std::sync::Arc<T> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        (**self).list(prefix).await
    }
    async fn head(&self, key: &str) -> Result<ObjectInfo, TargetError> {
        (**self).head(key).await
    }
    async fn put(&self, key: &str, body: Upload) -> Result<Stored, TargetError> {
        (**self).put(key, body).await
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        (**self).put_if_absent(key, data).await
    }
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream, TargetError> {
        (**self).get(key, range).await
    }
    async fn copy(&self, from: &str, to: &str) -> Result<(), TargetError> {
        (**self).copy(from, to).await
    }
    async fn delete(&self, key: &str) -> Result<(), TargetError> {
        (**self).delete(key).await
    }
    async fn sync(&self) -> Result<(), TargetError> {
        (**self).sync().await
    }
    fn local_root(&self) -> Option<PathBuf> {
        (**self).local_root()
    }
    fn local_file(&self, key: &str) -> Option<PathBuf> {
        (**self).local_file(key)
    }
    fn encodes(&self) -> bool {
        (**self).encodes()
    }
    async fn abort_stale_uploads(&self, older_than: Duration) -> Result<u64, TargetError> {
        (**self).abort_stale_uploads(older_than).await
    }
    async fn incomplete_uploads(&self) -> Result<u64, TargetError> {
        (**self).incomplete_uploads().await
    }
}

/// Every object of the location, key → size.
pub async fn list_sizes(
    target: &dyn Target,
) -> Result<std::collections::BTreeMap<String, u64>, TargetError> {
    Ok(target
        .list("")
        .await?
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect())
}
