//! Real object-storage servers for the integration tests, each on 127.0.0.1 on a free port,
//! with a fresh bucket/container, stopped when dropped:
//!
//! - [`S3Server`]: Garage in a local Docker image (testcontainers, host network), or MinIO if
//!   `ESBACKUP_MINIO_IMAGE` names a local image;
//! - [`AzuriteServer`]: azurite-blob (npm) as a child process;
//! - [`GcsServer`]: fake-gcs-server (memory backend) as a child process.
//!
//! `scripts/test-env.sh` installs all of them (and a Docker daemon); `scripts/test.sh` runs it
//! and then the tests. A fixture that cannot start panics with a message that says so: a
//! test never skips silently.
//!
//! Each fixture gives the environment a CLI run needs (`env()`), the target URL (`url()`),
//! and its own small independent client (`put_object`, `get_object`, `delete_object`,
//! `list_keys`) to check what esbackup wrote without esbackup's storage code. The
//! [`ObjectServer`] trait offers the same over all three, for tests written once for every
//! backend.

mod azure;
mod gcs;
mod s3;
pub mod sign;
pub mod util;

pub use azure::{AzuriteServer, AZURITE_VERSION, EMULATOR_ACCOUNT, EMULATOR_KEY};
pub use gcs::{GcsServer, FAKE_GCS_WRAPPER_VERSION};
pub use s3::{sum_metric, S3Flavor, S3Server, GARAGE_VERSION};

/// What every fixture offers, so that one test can run against each backend
/// (`Box<dyn ObjectServer>`).
#[async_trait::async_trait]
pub trait ObjectServer: Send + Sync {
    /// "s3", "azure" or "gcs".
    fn kind(&self) -> &'static str;
    /// The server's HTTP endpoint (`http://127.0.0.1:<port>`).
    fn endpoint(&self) -> &str;
    /// Environment variables a CLI run needs to reach the server.
    fn env(&self) -> Vec<(String, String)>;
    /// The target URL of `prefix` in the bucket/container (s3://…, az://…, gs://…).
    fn url(&self, prefix: &str) -> String;
    async fn put_object(&self, key: &str, body: Vec<u8>);
    async fn get_object(&self, key: &str) -> Option<Vec<u8>>;
    async fn delete_object(&self, key: &str);
    async fn list_keys(&self, prefix: &str) -> Vec<String>;
}

macro_rules! impl_object_server {
    ($ty:ty, $kind:literal) => {
        #[async_trait::async_trait]
        impl ObjectServer for $ty {
            fn kind(&self) -> &'static str {
                $kind
            }
            fn endpoint(&self) -> &str {
                &self.endpoint
            }
            fn env(&self) -> Vec<(String, String)> {
                <$ty>::env(self)
            }
            fn url(&self, prefix: &str) -> String {
                <$ty>::url(self, prefix)
            }
            async fn put_object(&self, key: &str, body: Vec<u8>) {
                <$ty>::put_object(self, key, body).await
            }
            async fn get_object(&self, key: &str) -> Option<Vec<u8>> {
                <$ty>::get_object(self, key).await
            }
            async fn delete_object(&self, key: &str) {
                <$ty>::delete_object(self, key).await
            }
            async fn list_keys(&self, prefix: &str) -> Vec<String> {
                <$ty>::list_keys(self, prefix).await
            }
        }
    };
}

impl_object_server!(S3Server, "s3");
impl_object_server!(AzuriteServer, "azure");
impl_object_server!(GcsServer, "gcs");
