//! What the promises share: a scratch prefix cleaned up after each, checks of one object's
//! bytes, head and listing, and deterministic test data.

use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::KitFailure;
use crate::hashing::md5;
use crate::target::{ObjectInfo, Target, Upload};

/// Fails a check with a message.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}
pub(super) use ensure;

/// A fresh `conformance-<uuid>/` prefix for one promise.
#[derive(Clone)]
pub(super) struct Scratch<'a> {
    pub target: &'a dyn Target,
    root: String,
}

impl Scratch<'_> {
    /// The key `name` below the scratch prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.root)
    }

    /// Deletes every object below the scratch prefix.
    async fn clean(&self) -> Result<(), String> {
        let left = self
            .target
            .list(&self.root)
            .await
            .map_err(|e| format!("cleaning up: list {}: {e}", self.root))?;
        let deletes: Vec<_> = (left.iter())
            .map(|o| async move {
                self.target
                    .delete(&o.key)
                    .await
                    .map_err(|e| format!("cleaning up: delete {}: {e}", o.key))
            })
            .collect();
        futures::stream::iter(deletes)
            .buffer_unordered(16)
            .try_collect::<()>()
            .await
    }
}

/// Runs the check `body` of the promise `promise` in a fresh scratch prefix, then cleans up.
pub(super) async fn checked<'a, F, Fut>(
    promise: &'static str,
    target: &'a dyn Target,
    body: F,
) -> Result<(), KitFailure>
where
    F: FnOnce(Scratch<'a>) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let root = format!("conformance-{}/", uuid::Uuid::new_v4().simple());
    let scratch = Scratch { target, root };
    let outcome = body(scratch.clone()).await;
    let cleaned = scratch.clean().await;
    outcome
        .and(cleaned)
        .map_err(|message| KitFailure { promise, message })
}

/// A local file that is removed when dropped.
pub(super) struct TempFile(pub PathBuf);

impl TempFile {
    pub fn with(data: &[u8]) -> Result<TempFile, String> {
        let path = std::env::temp_dir().join(format!(
            "esbackup-conformance-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&path, data).map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(TempFile(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Puts `upload` under `key`, and checks that the put returned what it stored: the size and
/// MD5 of `data`, which the upload's readers record only when every byte went through them.
pub(super) async fn put_streamed(
    target: &dyn Target,
    key: &str,
    upload: Upload,
    data: &[u8],
) -> Result<(), String> {
    let stored = target
        .put(key, upload)
        .await
        .map_err(|e| format!("put {key} ({} bytes) failed: {e}", data.len()))?;
    let expected = md5(data);
    ensure!(
        stored.md5 == expected && stored.size == data.len() as u64,
        "put {key} returned {} bytes with MD5 {}, expected {} bytes with MD5 {} (read the body \
         through the upload's readers and return Upload::stored)",
        stored.size,
        hex::encode(stored.md5),
        data.len(),
        hex::encode(expected)
    );
    let listed = match target.encodes() {
        false => stored.size,
        true => {
            (target.head(key).await)
                .map_err(|e| format!("head {key}: expected the object, got {e}"))?
                .size
        }
    };
    ensure!(
        stored.stored_size == listed,
        "put {key} returned a stored size of {} bytes, but the store holds {listed} (a target \
         that does not encode returns stored_size = size; one that encodes, what head and list \
         report)",
        stored.stored_size
    );
    Ok(())
}

/// Puts `data` under `key` from a local file (checked as [`put_streamed`]).
pub(super) async fn put_file(target: &dyn Target, key: &str, data: &[u8]) -> Result<(), String> {
    let file = TempFile::with(data)?;
    put_streamed(
        target,
        key,
        Upload::file(file.path(), data.len() as u64),
        data,
    )
    .await
}

/// Puts `data` under `key` from memory; the size `head` and `list` are then to report (its
/// stored size).
pub(super) async fn put_bytes(target: &dyn Target, key: &str, data: &[u8]) -> Result<u64, String> {
    target
        .put(key, Upload::bytes(data.to_vec()))
        .await
        .map(|stored| stored.stored_size)
        .map_err(|e| format!("put {key} ({} bytes) failed: {e}", data.len()))
}

/// `copy`, which must succeed.
pub(super) async fn copy(target: &dyn Target, from: &str, to: &str) -> Result<(), String> {
    (target.copy(from, to).await)
        .map_err(|e| format!("copy {from:?} -> {to:?}: expected Ok, got {e}"))
}

/// `delete`, which must succeed.
pub(super) async fn delete(target: &dyn Target, key: &str) -> Result<(), String> {
    (target.delete(key).await).map_err(|e| format!("delete {key:?}: expected Ok, got {e}"))
}

/// Checks `get`, `head` and a listing of `key` against `data`: its bytes, and its length (a
/// target that encodes reports stored sizes: there `head` and `list` must agree).
pub(super) async fn expect_object(
    target: &dyn Target,
    key: &str,
    data: &[u8],
) -> Result<(), String> {
    let got = read_all(target, key, None).await?;
    ensure!(
        got[..] == data[..],
        "get {key}: expected {} bytes (md5 {}), got {} bytes (md5 {})",
        data.len(),
        hex::encode(md5(data)),
        got.len(),
        hex::encode(md5(&got))
    );
    let info = target
        .head(key)
        .await
        .map_err(|e| format!("head {key}: expected the object, got {e}"))?;
    let size = match target.encodes() {
        false => data.len() as u64,
        true => info.size,
    };
    ensure!(
        info.key == key && info.size == size,
        "head {key}: expected key {key:?} and size {size}, got {info:?}"
    );
    let listed = target
        .list(key)
        .await
        .map_err(|e| format!("list {key}: {e}"))?;
    ensure!(
        listed.iter().any(|o| o.key == key && o.size == size),
        "list {key:?}: expected {key:?} with size {size}, got {}",
        describe(&listed)
    );
    Ok(())
}

/// Checks `head` says `NotFound` and `list` does not show `key`.
pub(super) async fn expect_absent(target: &dyn Target, key: &str) -> Result<(), String> {
    match target.head(key).await {
        Err(e) if e.is_not_found() => {}
        other => return Err(format!("head {key}: expected NotFound, got {other:?}")),
    }
    let listed = target
        .list(key)
        .await
        .map_err(|e| format!("list {key}: {e}"))?;
    ensure!(
        !listed.iter().any(|o| o.key == key),
        "list {key:?}: expected no {key:?}, got {}",
        describe(&listed)
    );
    Ok(())
}

/// The bytes of `key` (or of `range` of it).
pub(super) async fn read_all(
    target: &dyn Target,
    key: &str,
    range: Option<Range<u64>>,
) -> Result<Bytes, String> {
    let stream = target
        .get(key, range.clone())
        .await
        .map_err(|e| format!("get {key} {range:?}: {e}"))?;
    let parts: Vec<Bytes> = stream
        .try_collect()
        .await
        .map_err(|e| format!("reading {key} {range:?}: {e}"))?;
    Ok(parts.concat().into())
}

/// `head`, `get` and ranged `get` of `key` must say `NotFound` (from the call or its stream).
pub(super) async fn expect_not_found(target: &dyn Target, key: &str) -> Result<(), String> {
    match target.head(key).await {
        Err(e) if e.is_not_found() => {}
        other => return Err(format!("head {key}: expected NotFound, got {other:?}")),
    }
    for range in [None, Some(0..1)] {
        let outcome = match target.get(key, range.clone()).await {
            Ok(stream) => stream
                .try_collect::<Vec<Bytes>>()
                .await
                .map(|v| v.concat().len()),
            Err(e) => Err(e),
        };
        match outcome {
            Err(e) if e.is_not_found() => {}
            other => {
                return Err(format!(
                    "get {key} {range:?}: expected NotFound, got {:?}",
                    other.map(|n| format!("{n} bytes"))
                ))
            }
        }
    }
    Ok(())
}

/// Keys and sizes, for messages.
pub(super) fn describe(objects: &[ObjectInfo]) -> String {
    let shown: Vec<String> = objects
        .iter()
        .take(20)
        .map(|o| format!("{} ({} bytes)", o.key, o.size))
        .collect();
    match objects.len() {
        n if n > 20 => format!("{} objects: [{}, …]", n, shown.join(", ")),
        n => format!("{n} objects: [{}]", shown.join(", ")),
    }
}

/// `(key, size)` of every object, sorted.
pub(super) fn sorted(objects: &[ObjectInfo]) -> Vec<(String, u64)> {
    let mut pairs: Vec<(String, u64)> = objects.iter().map(|o| (o.key.clone(), o.size)).collect();
    pairs.sort();
    pairs
}

/// Deterministic bytes that differ at every offset of interest (not all zeros).
pub(super) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(seed);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
