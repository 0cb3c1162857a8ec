//! [`Intercept`]: the one pass-through wrapper of the tests. It forwards every operation to the
//! target it wraps after running a hook that may delay the operation, fail it, or change the
//! world at that moment (delete a source file, break a lock); it can also replace download
//! streams (to break them midway).

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;

use crate::target::{ByteStream, ObjectInfo, Stored, Target, TargetError};
use crate::upload::Upload;

/// One operation a target is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    List(String),
    Head(String),
    /// Key and body length.
    Put(String, u64),
    PutIfAbsent(String),
    Get(String, Option<Range<u64>>),
    Copy {
        from: String,
        to: String,
    },
    Delete(String),
    AbortStaleUploads,
}

impl Op {
    /// The key (or prefix) the operation is about; the destination of a copy.
    pub fn key(&self) -> &str {
        match self {
            Op::List(k) | Op::Head(k) | Op::Put(k, _) | Op::PutIfAbsent(k) | Op::Delete(k) => k,
            Op::Get(k, _) => k,
            Op::Copy { to, .. } => to,
            Op::AbortStaleUploads => "",
        }
    }

    /// `put`, `get`, ... as in logs.
    pub fn name(&self) -> &'static str {
        match self {
            Op::List(_) => "list",
            Op::Head(_) => "head",
            Op::Put(..) => "put",
            Op::PutIfAbsent(_) => "put_if_absent",
            Op::Get(..) => "get",
            Op::Copy { .. } => "copy",
            Op::Delete(_) => "delete",
            Op::AbortStaleUploads => "abort_stale_uploads",
        }
    }

    /// True for operations that change the store.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Op::Put(..) | Op::PutIfAbsent(_) | Op::Copy { .. } | Op::Delete(_)
        )
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Copy { from, to } => write!(f, "copy {from} -> {to}"),
            other => write!(f, "{} {}", other.name(), other.key()),
        }
    }
}

/// Runs before every operation; an error fails the operation.
pub type Hook = Arc<dyn Fn(&Op) -> BoxFuture<'static, Result<(), TargetError>> + Send + Sync>;
/// Replaces the stream a `get` returns: (key, range asked for, stream) → stream.
pub type StreamMap = Arc<dyn Fn(&str, Option<Range<u64>>, ByteStream) -> ByteStream + Send + Sync>;

/// A target that runs a hook before each operation of the target it wraps.
#[derive(Clone)]
pub struct Intercept<T> {
    inner: T,
    hook: Hook,
    streams: Option<StreamMap>,
}

impl<T> std::fmt::Debug for Intercept<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Intercept")
    }
}

impl<T: Target> Intercept<T> {
    /// Wraps `inner`; `hook` runs (and may fail) before every operation.
    pub fn new(inner: T, hook: Hook) -> Self {
        Intercept {
            inner,
            hook,
            streams: None,
        }
    }

    /// A hook that does something synchronous before each operation and lets it through.
    pub fn before(inner: T, f: impl Fn(&Op) + Send + Sync + 'static) -> Self {
        let f = Arc::new(f);
        Intercept::new(
            inner,
            Arc::new(move |op| {
                f(op);
                Box::pin(async { Ok(()) })
            }),
        )
    }

    /// A hook that delays every operation by up to `max` (a store's latency).
    pub fn slow(inner: T, max: Duration) -> Self {
        Intercept::new(
            inner,
            Arc::new(move |_| {
                let us = rand::random::<u64>() % (max.as_micros() as u64).max(1);
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_micros(us)).await;
                    Ok(())
                })
            }),
        )
    }

    /// Replaces the stream of every `get` with `map(key, range, stream)`.
    pub fn map_streams(mut self, map: StreamMap) -> Self {
        self.streams = Some(map);
        self
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }

    async fn check(&self, op: Op) -> Result<(), TargetError> {
        (self.hook)(&op).await
    }
}

#[async_trait]
impl<T: Target> Target for Intercept<T> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        self.check(Op::List(prefix.into())).await?;
        self.inner.list(prefix).await
    }
    async fn head(&self, key: &str) -> Result<ObjectInfo, TargetError> {
        self.check(Op::Head(key.into())).await?;
        self.inner.head(key).await
    }
    async fn put(&self, key: &str, body: Upload) -> Result<Stored, TargetError> {
        self.check(Op::Put(key.into(), body.len())).await?;
        self.inner.put(key, body).await
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        self.check(Op::PutIfAbsent(key.into())).await?;
        self.inner.put_if_absent(key, data).await
    }
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream, TargetError> {
        self.check(Op::Get(key.into(), range.clone())).await?;
        let stream = self.inner.get(key, range.clone()).await?;
        Ok(match &self.streams {
            Some(map) => map(key, range, stream),
            None => stream,
        })
    }
    async fn copy(&self, from: &str, to: &str) -> Result<(), TargetError> {
        self.check(Op::Copy {
            from: from.into(),
            to: to.into(),
        })
        .await?;
        self.inner.copy(from, to).await
    }
    async fn delete(&self, key: &str) -> Result<(), TargetError> {
        self.check(Op::Delete(key.into())).await?;
        self.inner.delete(key).await
    }
    async fn sync(&self) -> Result<(), TargetError> {
        self.inner.sync().await
    }
    fn local_root(&self) -> Option<PathBuf> {
        self.inner.local_root()
    }
    /// Never a local file: every read goes through `get`, so the hook sees it (a kernel copy
    /// of the file would bypass it).
    fn local_file(&self, _key: &str) -> Option<PathBuf> {
        None
    }
    fn encodes(&self) -> bool {
        self.inner.encodes()
    }
    async fn abort_stale_uploads(&self, older_than: Duration) -> Result<u64, TargetError> {
        self.check(Op::AbortStaleUploads).await?;
        self.inner.abort_stale_uploads(older_than).await
    }
    async fn incomplete_uploads(&self) -> Result<u64, TargetError> {
        self.inner.incomplete_uploads().await
    }
}
