//! [`ObjectStoreTarget`]: a [`Target`] over any `object_store` store of your own (`InMemory`, a
//! store esbackup has no URL for), below a key prefix. It has no store-specific behaviour: no
//! missing-bucket check, no stale-upload cleanup, no local files. The stores esbackup opens
//! from URLs have targets of their own ([`crate::FolderTarget`], [`crate::S3Target`],
//! [`crate::AzureTarget`], [`crate::GcsTarget`]).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use esbackup_engine::{Stored, Target, TargetError, Upload};
use object_store::ObjectStore;

use crate::error::BackendError;
use crate::keys::Keys;
use crate::multipart::Uploader;
use crate::objects::Objects;

/// A [`Target`] over an [`ObjectStore`], with every key below a prefix.
///
/// Bodies up to the part size go up in one PUT; larger ones are streamed from
/// [`Upload::stream`] as a multipart upload with at most `concurrency` parts in flight, aborted
/// if anything fails. Every part held in memory takes one of the target's buffers (its memory
/// budget divided by the part size), whatever the number of uploads at once.
pub struct ObjectStoreTarget {
    objects: Objects,
    uploader: Uploader,
    description: String,
}

impl fmt::Debug for ObjectStoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreTarget")
            .field("location", &self.description)
            .field("part_size", &self.uploader.part_size)
            .field("concurrency", &self.uploader.concurrency)
            .finish()
    }
}

impl ObjectStoreTarget {
    /// A target over `store`, keys below `prefix` (`""` for the store's root; `/`-separated
    /// names, outer slashes ignored).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Self, BackendError> {
        let keys = Keys::new(prefix)
            .map_err(|e| BackendError::Config(format!("bad prefix {prefix:?}: {e}")))?;
        Ok(ObjectStoreTarget {
            description: format!("{store}/{}", keys.prefix()),
            objects: Objects { store, keys },
            uploader: Uploader::default(),
        })
    }

    /// What [`Target::describe`] reports.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Upload settings: bodies larger than `part_size` (at least 1 byte) go up as multipart
    /// uploads of parts that size, `concurrency` parts of one upload in flight (at least 1),
    /// `memory` bytes of parts held at once across all uploads (at least two parts).
    pub fn with_uploads(mut self, part_size: usize, concurrency: usize, memory: usize) -> Self {
        self.uploader = Uploader::new(part_size, concurrency, memory);
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.objects.store
    }
}

#[async_trait]
impl Target for ObjectStoreTarget {
    fn describe(&self) -> String {
        self.description.clone()
    }

    crate::remote::through!(objects: list, head, put_if_absent, get, copy, delete);

    async fn put(&self, key: &str, body: Upload) -> Result<Stored, TargetError> {
        let path = self.objects.keys.path(key)?;
        let store = self.objects.store.as_ref();
        self.uploader.put(store, &path, key, body.clone()).await?;
        body.stored(key)
    }

    // A failed multipart upload is aborted when it fails: nothing left to abort.
    crate::remote::stored_remotely!(no_stale_uploads);
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn an_in_memory_store_passes_conformance_with_small_parts() {
        let target = ObjectStoreTarget::new(Arc::new(InMemory::new()), "p/q")
            .unwrap()
            .with_uploads(64 * 1024, 3, 256 * 1024);
        let sizes = esbackup_engine::conformance::ConformanceOptions {
            large_size: 1_000_003,
            overwrite_size: 200_000,
            overwrite_rounds: 3,
        };
        esbackup_engine::conformance::run_conformance_with(&target, &sizes)
            .await
            .unwrap();
    }
}
