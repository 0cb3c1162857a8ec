//! [`MissingBucket`]: a cloud location whose bucket or container does not exist is an error
//! that names it, never an empty location; [`CheckedObjects`]: the object requests of a cloud
//! target with that check applied.
//!
//! A store answers "not found" to a listing only when the bucket itself is missing. A read or
//! write that says "not found" may mean either, so until a request has proved the bucket
//! exists, one probe tells which.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use esbackup_engine::{ByteStream, ObjectInfo, Stored, TargetError, TargetErrorKind, Upload};
use futures::StreamExt;

use crate::error::classify;
use crate::gcs::GcsJsonWriter;
use crate::multipart::Uploader;
use crate::objects::Objects;

/// How to ask whether the bucket exists.
#[derive(Debug)]
pub(crate) enum Probe {
    /// List the prefix (S3, Azure: a missing bucket answers 404).
    Listing(Objects),
    /// Ask the GCS JSON API for the bucket (fake-gcs-server answers a listing of a missing
    /// bucket with 500).
    Gcs(Arc<GcsJsonWriter>),
}

impl Probe {
    async fn bucket_exists(&self) -> Option<bool> {
        match self {
            Probe::Listing(objects) => {
                let prefix = objects.keys.prefix();
                match objects.store.list(Some(prefix)).next().await {
                    Some(Err(e)) => match classify(&e).0 {
                        TargetErrorKind::NotFound => Some(false),
                        _ => None,
                    },
                    Some(Ok(_)) | None => Some(true),
                }
            }
            Probe::Gcs(writer) => writer.bucket_exists().await,
        }
    }
}

/// The missing-bucket check of one cloud target.
#[derive(Debug)]
pub(crate) struct MissingBucket {
    /// The permanent error every operation reports once the bucket is known to be missing.
    message: String,
    probe: Probe,
    /// Set once a request proved the bucket exists (no more probing on "not found").
    seen: AtomicBool,
}

impl MissingBucket {
    pub fn new(message: String, probe: Probe) -> MissingBucket {
        MissingBucket {
            message,
            probe,
            seen: AtomicBool::new(false),
        }
    }

    fn missing(&self) -> TargetError {
        TargetError::permanent(self.message.clone())
    }

    /// The result of a read or write: a "not found" before the bucket was seen is probed.
    pub async fn check<T>(&self, result: Result<T, TargetError>) -> Result<T, TargetError> {
        let err = match result {
            Ok(v) => {
                self.seen.store(true, Ordering::Relaxed);
                return Ok(v);
            }
            Err(e) => e,
        };
        if !err.is_not_found() || self.seen.load(Ordering::Relaxed) {
            return Err(err);
        }
        match self.probe.bucket_exists().await {
            Some(false) => Err(self.missing()),
            Some(true) => {
                self.seen.store(true, Ordering::Relaxed);
                Err(err)
            }
            None => Err(err),
        }
    }

    /// The result of a listing: "not found" is the missing bucket; another failure is probed
    /// only where the probe is not itself a listing.
    pub async fn check_listing<T>(&self, result: Result<T, TargetError>) -> Result<T, TargetError> {
        match result {
            Ok(v) => {
                self.seen.store(true, Ordering::Relaxed);
                Ok(v)
            }
            Err(e) if e.is_not_found() => Err(self.missing()),
            Err(e) => match &self.probe {
                Probe::Gcs(writer) if !self.seen.load(Ordering::Relaxed) => {
                    match writer.bucket_exists().await {
                        Some(false) => Err(self.missing()),
                        _ => Err(e),
                    }
                }
                _ => Err(e),
            },
        }
    }
}

/// A cloud target's [`Objects`] with its [`MissingBucket`] check applied to each request.
#[derive(Debug)]
pub(crate) struct CheckedObjects {
    pub objects: Objects,
    pub missing: MissingBucket,
}

impl CheckedObjects {
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        let listed = self.objects.list(prefix).await;
        self.missing.check_listing(listed).await
    }

    pub async fn head(&self, key: &str) -> Result<ObjectInfo, TargetError> {
        self.missing.check(self.objects.head(key).await).await
    }

    pub async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, TargetError> {
        self.missing.check(self.objects.get(key, range).await).await
    }

    pub async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        let created = self.objects.put_if_absent(key, data).await;
        self.missing.check(created).await
    }

    pub async fn copy(&self, from: &str, to: &str) -> Result<(), TargetError> {
        self.missing.check(self.objects.copy(from, to).await).await
    }

    /// A delete is idempotent: a missing bucket has nothing to delete.
    pub async fn delete(&self, key: &str) -> Result<(), TargetError> {
        self.objects.delete(key).await
    }

    /// Stores `body` under `key` through `uploader` (one PUT, or a multipart upload).
    pub async fn upload(
        &self,
        uploader: &Uploader,
        key: &str,
        body: Upload,
    ) -> Result<Stored, TargetError> {
        let path = self.objects.keys.path(key)?;
        let store = self.objects.store.as_ref();
        self.check(uploader.put(store, &path, key, body.clone()).await)
            .await?;
        body.stored(key)
    }

    /// The result of another request (a write through the target's own writer).
    pub async fn check<T>(&self, result: Result<T, TargetError>) -> Result<T, TargetError> {
        self.missing.check(result).await
    }
}
