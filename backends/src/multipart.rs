//! Streamed uploads to an object_store store, for the cloud targets: bodies up to the part size
//! go up in one PUT; larger ones are streamed from [`Upload::stream`] as a multipart upload with
//! at most `concurrency` parts in flight, aborted if anything fails (so a failed or short body
//! is never completed into an object).
//!
//! Every part held in memory takes one of the target's [`PartBuffers`] (its memory budget
//! divided by the part size), whatever the number of uploads at once, so memory stays flat
//! however many files a run sends together.

use std::sync::Arc;

use bytes::Bytes;
use esbackup_engine::{TargetError, Upload};
use futures::stream::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, PutMultipartOptions, PutOptions, PutPayload};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::error::map_store_error;
use crate::options::{DEFAULT_CONCURRENCY, DEFAULT_MEMORY, DEFAULT_PART_SIZE};

/// The part buffers of one target, shared by all its uploads.
#[derive(Clone, Debug)]
pub(crate) struct PartBuffers(Arc<Semaphore>);

impl PartBuffers {
    /// Buffers for `memory` bytes of `part_size` parts (at least two).
    pub fn new(memory: usize, part_size: usize) -> PartBuffers {
        PartBuffers(Arc::new(Semaphore::new((memory / part_size.max(1)).max(2))))
    }

    /// Waits for a part buffer.
    pub async fn take(&self) -> OwnedSemaphorePermit {
        self.0
            .clone()
            .acquire_owned()
            .await
            .expect("the buffer semaphore is never closed")
    }
}

/// How one target uploads: part size, parts in flight per upload, and its part buffers.
#[derive(Clone, Debug)]
pub(crate) struct Uploader {
    pub part_size: usize,
    pub concurrency: usize,
    pub buffers: PartBuffers,
}

impl Default for Uploader {
    fn default() -> Self {
        Uploader::new(
            DEFAULT_PART_SIZE as usize,
            DEFAULT_CONCURRENCY,
            DEFAULT_MEMORY as usize,
        )
    }
}

impl Uploader {
    /// Parts of `part_size` (at least 1 byte), `concurrency` of them in flight per upload (at
    /// least 1), `memory` bytes of them at once across all uploads.
    pub fn new(part_size: usize, concurrency: usize, memory: usize) -> Uploader {
        let part_size = part_size.max(1);
        Uploader {
            part_size,
            concurrency: concurrency.max(1),
            buffers: PartBuffers::new(memory, part_size),
        }
    }

    /// Stores `body` at `path`: one PUT up to the part size, else a multipart upload.
    pub async fn put(
        &self,
        store: &dyn ObjectStore,
        path: &Path,
        key: &str,
        body: Upload,
    ) -> Result<(), TargetError> {
        if body.len() > self.part_size as u64 {
            let upload = store
                .put_multipart_opts(path, PutMultipartOptions::default())
                .await
                .map_err(|e| map_store_error(key, e))?;
            return self.put_multipart(upload, key, body).await;
        }
        let _buffer = self.buffers.take().await;
        let pieces: Vec<Bytes> = body
            .stream(self.part_size)
            .try_collect()
            .await
            .map_err(|e| TargetError::body(key, e))?;
        store
            .put_opts(path, PutPayload::from_iter(pieces), PutOptions::default())
            .await
            .map_err(|e| map_store_error(key, e))?;
        Ok(())
    }

    /// Streams the body into `upload`, then completes it; aborts it if anything failed.
    async fn put_multipart(
        &self,
        mut upload: Box<dyn MultipartUpload>,
        key: &str,
        body: Upload,
    ) -> Result<(), TargetError> {
        let mut parts = JoinSet::new();
        let result = match self.send_parts(&mut *upload, &mut parts, key, body).await {
            Ok(()) => upload
                .complete()
                .await
                .map(drop)
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

    /// Streams the body into `upload` as parts, at most `concurrency` in flight.
    async fn send_parts(
        &self,
        upload: &mut dyn MultipartUpload,
        parts: &mut JoinSet<object_store::Result<()>>,
        key: &str,
        body: Upload,
    ) -> Result<(), TargetError> {
        let mut pieces = body.stream(self.part_size);
        loop {
            let buffer = self.buffers.take().await;
            let Some(piece) = pieces.next().await else {
                break;
            };
            let piece = piece.map_err(|e| TargetError::body(key, e))?;
            let part = upload.put_part(PutPayload::from_bytes(piece));
            parts.spawn(async move {
                let sent = part.await;
                drop(buffer);
                sent
            });
            while parts.len() >= self.concurrency {
                join_part(key, parts.join_next().await)?;
            }
        }
        while !parts.is_empty() {
            join_part(key, parts.join_next().await)?;
        }
        Ok(())
    }
}

fn join_part(
    key: &str,
    joined: Option<Result<object_store::Result<()>, tokio::task::JoinError>>,
) -> Result<(), TargetError> {
    match joined {
        None | Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(e))) => Err(map_store_error(key, e)),
        Some(Err(e)) => Err(TargetError::permanent("uploading a part")
            .with_key(key)
            .with_source(e)),
    }
}
