//! Targets for tests: an in-memory store, the [`Intercept`] wrapper that runs a hook before
//! every operation, and a fault-injecting target built on it. Never a substitute for testing a
//! real backend.

mod faults;
mod intercept;
mod memory;

pub use faults::{FaultPlan, Faulty, FaultyTarget};
pub use intercept::{Hook, Intercept, Op, StreamMap};
pub use memory::MemoryTarget;

/// The keys `target` lists under `prefix`, sorted.
pub async fn listed_keys(
    target: &dyn crate::Target,
    prefix: &str,
) -> Result<Vec<String>, crate::TargetError> {
    let mut keys: Vec<String> = target
        .list(prefix)
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    Ok(keys)
}

/// Implements [`crate::Target`] for a generic wrapper struct by forwarding to its `field`.
macro_rules! forward_target {
    ($ty:ident<$t:ident>, $field:ident) => {
        #[async_trait::async_trait]
        impl<$t: $crate::Target> $crate::Target for $ty<$t> {
            fn describe(&self) -> String {
                self.$field.describe()
            }
            async fn list(
                &self,
                prefix: &str,
            ) -> Result<Vec<$crate::ObjectInfo>, $crate::TargetError> {
                self.$field.list(prefix).await
            }
            async fn head(&self, key: &str) -> Result<$crate::ObjectInfo, $crate::TargetError> {
                self.$field.head(key).await
            }
            async fn put(
                &self,
                key: &str,
                body: $crate::Upload,
            ) -> Result<$crate::Stored, $crate::TargetError> {
                self.$field.put(key, body).await
            }
            async fn put_if_absent(
                &self,
                key: &str,
                data: bytes::Bytes,
            ) -> Result<(), $crate::TargetError> {
                self.$field.put_if_absent(key, data).await
            }
            async fn get(
                &self,
                key: &str,
                range: Option<std::ops::Range<u64>>,
            ) -> Result<$crate::ByteStream, $crate::TargetError> {
                self.$field.get(key, range).await
            }
            async fn copy(&self, from: &str, to: &str) -> Result<(), $crate::TargetError> {
                self.$field.copy(from, to).await
            }
            async fn delete(&self, key: &str) -> Result<(), $crate::TargetError> {
                self.$field.delete(key).await
            }
            async fn sync(&self) -> Result<(), $crate::TargetError> {
                self.$field.sync().await
            }
            fn local_root(&self) -> Option<std::path::PathBuf> {
                self.$field.local_root()
            }
            fn local_file(&self, key: &str) -> Option<std::path::PathBuf> {
                self.$field.local_file(key)
            }
            fn encodes(&self) -> bool {
                self.$field.encodes()
            }
            async fn abort_stale_uploads(
                &self,
                older_than: std::time::Duration,
            ) -> Result<u64, $crate::TargetError> {
                self.$field.abort_stale_uploads(older_than).await
            }
            async fn incomplete_uploads(&self) -> Result<u64, $crate::TargetError> {
                self.$field.incomplete_uploads().await
            }
        }
    };
}
pub(crate) use forward_target;
