//! [`Metered`]: counts the requests a command makes and the bytes it sends, so reports can say
//! exactly what a run cost (its own metadata included).

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;

use crate::target::{ByteStream, ObjectInfo, Stored, Target, TargetError, Upload};

/// Requests and bytes sent so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// Every request (list, head, put, get, copy, delete).
    pub requests: u64,
    /// Objects written (puts).
    pub puts: u64,
    /// Bytes sent in puts.
    pub bytes_sent: u64,
}

#[derive(Debug)]
pub(crate) struct Metered {
    inner: Arc<dyn Target>,
    requests: AtomicU64,
    puts: AtomicU64,
    bytes_sent: AtomicU64,
}

impl Metered {
    pub fn new(inner: Arc<dyn Target>) -> Metered {
        Metered {
            inner,
            requests: AtomicU64::new(0),
            puts: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
        }
    }

    pub fn traffic(&self) -> Traffic {
        Traffic {
            requests: self.requests.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
        }
    }

    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn sent(&self, bytes: u64) {
        self.count();
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }
}

#[async_trait]
impl Target for Metered {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        self.count();
        self.inner.list(prefix).await
    }
    async fn head(&self, key: &str) -> Result<ObjectInfo, TargetError> {
        self.count();
        self.inner.head(key).await
    }
    async fn put(&self, key: &str, body: Upload) -> Result<Stored, TargetError> {
        self.sent(body.len());
        self.inner.put(key, body).await
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        self.sent(data.len() as u64);
        self.inner.put_if_absent(key, data).await
    }
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream, TargetError> {
        self.count();
        self.inner.get(key, range).await
    }
    async fn copy(&self, from: &str, to: &str) -> Result<(), TargetError> {
        self.count();
        self.inner.copy(from, to).await
    }
    async fn delete(&self, key: &str) -> Result<(), TargetError> {
        self.count();
        self.inner.delete(key).await
    }
    async fn sync(&self) -> Result<(), TargetError> {
        self.inner.sync().await
    }
    fn local_root(&self) -> Option<PathBuf> {
        self.inner.local_root()
    }
    fn local_file(&self, key: &str) -> Option<PathBuf> {
        let file = self.inner.local_file(key);
        if file.is_some() {
            self.count(); // in place of the `get` it saves
        }
        file
    }
    fn encodes(&self) -> bool {
        self.inner.encodes()
    }
    async fn abort_stale_uploads(&self, older_than: Duration) -> Result<u64, TargetError> {
        self.inner.abort_stale_uploads(older_than).await
    }
    async fn incomplete_uploads(&self) -> Result<u64, TargetError> {
        self.inner.incomplete_uploads().await
    }
}
