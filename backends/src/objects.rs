//! [`Objects`]: the object_store requests every store-backed target makes for keys below a
//! prefix (list, head, get, create-if-absent, copy, delete), errors mapped to [`TargetError`].
//! Writes of whole bodies are in `multipart` (clouds) and `folder::files` (folders).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use esbackup_engine::{ByteStream, ObjectInfo, TargetError};
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode};

use crate::error::{map_request_error, map_store_error};
use crate::keys::Keys;

/// An object_store store and the prefix the keys are below.
#[derive(Clone, Debug)]
pub(crate) struct Objects {
    pub store: Arc<dyn ObjectStore>,
    pub keys: Keys,
}

impl Objects {
    /// Every object whose key starts with `prefix`. A listing that fails keeps object_store's
    /// error as its source (a `NotFound` kind: the folder or the bucket is missing).
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        let base = self.keys.listing_base(prefix)?;
        let mut out = Vec::new();
        let mut listing = self.store.list(Some(&base));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| map_request_error(&format!("list {prefix:?}"), e))?;
            if let Some(key) = self.keys.key_of(&meta.location) {
                if key.starts_with(prefix) {
                    out.push(ObjectInfo {
                        key,
                        size: meta.size,
                        modified: Some(meta.last_modified),
                    });
                }
            }
        }
        Ok(out)
    }

    pub async fn head(&self, key: &str) -> Result<ObjectInfo, TargetError> {
        let meta = self
            .store
            .head(&self.keys.path(key)?)
            .await
            .map_err(|e| map_store_error(key, e))?;
        Ok(ObjectInfo {
            key: key.into(),
            size: meta.size,
            modified: Some(meta.last_modified),
        })
    }

    /// Streams `key`, or the byte `range` of it (an empty range still fails on a missing key).
    pub async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, TargetError> {
        let path = self.keys.path(key)?;
        let mut options = GetOptions::default();
        match range {
            Some(r) if r.start >= r.end => {
                // No request can express an empty range.
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

    /// Stores `data` unless `key` exists (`AlreadyExists`), or `Unsupported` where the store
    /// cannot tell.
    pub async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        self.store
            .put_opts(&self.keys.path(key)?, data.into(), PutMode::Create.into())
            .await
            .map_err(|e| map_store_error(key, e))?;
        Ok(())
    }

    pub async fn copy(&self, from: &str, to: &str) -> Result<(), TargetError> {
        let (src, dst) = (self.keys.path(from)?, self.keys.path(to)?);
        self.store
            .copy(&src, &dst)
            .await
            .map_err(|e| map_store_error(from, e))
    }

    /// Deletes `key`; a missing key is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), TargetError> {
        match self.store.delete(&self.keys.path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_store_error(key, e)),
        }
    }
}
