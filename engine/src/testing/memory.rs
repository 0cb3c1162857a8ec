//! An in-memory [`Target`], for engine unit tests and crash simulations.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::target::{ByteStream, ObjectInfo, Stored, Target, TargetError, Upload};

/// Objects kept in a map. Clones share the same objects.
#[derive(Clone, Debug, Default)]
pub struct MemoryTarget {
    objects: Arc<Mutex<BTreeMap<String, Bytes>>>,
}

impl MemoryTarget {
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every object, for comparing whole backups.
    pub fn snapshot(&self) -> BTreeMap<String, Bytes> {
        self.objects.lock().unwrap().clone()
    }

    /// An independent target holding a copy of this one's objects.
    pub fn deep_clone(&self) -> MemoryTarget {
        MemoryTarget {
            objects: Arc::new(Mutex::new(self.snapshot())),
        }
    }

    /// Sets an object directly, bypassing the engine (to corrupt or plant files in tests).
    pub fn insert(&self, key: &str, data: impl Into<Bytes>) {
        self.objects.lock().unwrap().insert(key.into(), data.into());
    }

    pub fn remove(&self, key: &str) -> Option<Bytes> {
        self.objects.lock().unwrap().remove(key)
    }
}

#[async_trait]
impl Target for MemoryTarget {
    fn describe(&self) -> String {
        "memory".into()
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| ObjectInfo::new(k.clone(), v.len() as u64))
            .collect())
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, TargetError> {
        let objects = self.objects.lock().unwrap();
        let v = objects
            .get(key)
            .ok_or_else(|| TargetError::not_found(key))?;
        Ok(ObjectInfo::new(key, v.len() as u64))
    }

    async fn put(&self, key: &str, body: Upload) -> Result<Stored, TargetError> {
        let pieces: Vec<Bytes> = body
            .stream(64 * 1024)
            .try_collect()
            .await
            .map_err(|e| TargetError::body(key, e))?;
        let stored = body.stored(key)?;
        self.objects
            .lock()
            .unwrap()
            .insert(key.into(), pieces.concat().into());
        Ok(stored)
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        let mut objects = self.objects.lock().unwrap();
        if objects.contains_key(key) {
            return Err(TargetError::already_exists(key));
        }
        objects.insert(key.into(), data);
        Ok(())
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream, TargetError> {
        let data = self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .ok_or_else(|| TargetError::not_found(key))?;
        let data = match range {
            Some(r) => {
                let end = (r.end as usize).min(data.len());
                data.slice((r.start as usize).min(end)..end)
            }
            None => data,
        };
        Ok(stream::iter([Ok(data)]).boxed())
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), TargetError> {
        let mut objects = self.objects.lock().unwrap();
        let data = objects
            .get(from)
            .cloned()
            .ok_or_else(|| TargetError::not_found(from))?;
        objects.insert(to.into(), data);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), TargetError> {
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }

    /// Nothing to do: every write is whole once it returns.
    async fn sync(&self) -> Result<(), TargetError> {
        Ok(())
    }

    fn local_root(&self) -> Option<PathBuf> {
        None
    }

    fn local_file(&self, _key: &str) -> Option<PathBuf> {
        None
    }
    fn encodes(&self) -> bool {
        false
    }

    /// Writes are never left half-done.
    async fn abort_stale_uploads(&self, _older_than: Duration) -> Result<u64, TargetError> {
        Ok(0)
    }

    async fn incomplete_uploads(&self) -> Result<u64, TargetError> {
        Ok(0)
    }
}
