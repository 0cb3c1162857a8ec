//! [`DryRunTarget`]: passes reads through and swallows writes, so a `--dry-run` backup walks the
//! very same code path as a real one without changing the backup.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

use crate::target::{ByteStream, ObjectInfo, Target, TargetError, Upload};

#[derive(Debug)]
pub struct DryRunTarget<T>(pub T);

#[async_trait]
impl<T: Target> Target for DryRunTarget<T> {
    fn describe(&self) -> String {
        self.0.describe()
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        self.0.list(prefix).await
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, TargetError> {
        self.0.head(key).await
    }

    /// Reads nothing from the file: the report counts the bytes from its length.
    async fn put(&self, _key: &str, _body: Upload) -> Result<(), TargetError> {
        Ok(())
    }

    async fn put_if_absent(&self, _key: &str, _data: Bytes) -> Result<(), TargetError> {
        Ok(())
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream, TargetError> {
        self.0.get(key, range).await
    }

    async fn copy(&self, _from: &str, _to: &str) -> Result<(), TargetError> {
        Ok(())
    }

    async fn delete(&self, _key: &str) -> Result<(), TargetError> {
        Ok(())
    }

    fn local_root(&self) -> Option<std::path::PathBuf> {
        self.0.local_root()
    }

    async fn abort_stale_uploads(
        &self,
        older_than: std::time::Duration,
    ) -> Result<u64, TargetError> {
        self.0.abort_stale_uploads(older_than).await
    }
}
