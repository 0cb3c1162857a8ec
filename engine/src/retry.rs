//! [`RetryTarget`]: retries transient storage errors with jittered exponential backoff, for a
//! [`Target`] whose store does not retry by itself.
//!
//! Who retries what (one layer per kind of failure):
//! - a request that fails transiently (timeouts, 429/5xx, connection resets): the backend's
//!   HTTP client (object_store's retry settings, `storage.max_retries`); custom targets without
//!   such a client wrap themselves in `RetryTarget`. The engine never retries requests again.
//! - a download body that breaks after it started: the engine resumes it from where it stopped
//!   (`download::RESUMES` times);
//! - a source file that changed under the copy: the engine fails the run with advice (the next
//!   run copies it again); nothing retries it in a loop.

use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rand::Rng;

use crate::target::{ByteStream, ObjectInfo, Stored, Target, TargetError, Upload};

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// The most attempts one failing request gets, and the longest it waits between them in
    /// all (each delay is at most `base·2^attempt`, capped at `max_delay`).
    pub fn worst_case(&self) -> (u32, Duration) {
        let waits = (0..self.attempts.saturating_sub(1))
            .map(|a| {
                self.base_delay
                    .saturating_mul(1 << a.min(16))
                    .min(self.max_delay)
            })
            .sum();
        (self.attempts, waits)
    }

    /// Full jitter: a random delay up to base·2^attempt, capped.
    fn delay(&self, attempt: u32) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(1 << attempt.min(16))
            .min(self.max_delay);
        cap.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }
}

#[derive(Debug)]
pub struct RetryTarget<T> {
    inner: T,
    policy: RetryPolicy,
}

impl<T: Target> RetryTarget<T> {
    pub fn new(inner: T, policy: RetryPolicy) -> Self {
        RetryTarget { inner, policy }
    }

    async fn run<R, F, Fut>(&self, what: &str, mut op: F) -> Result<R, TargetError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<R, TargetError>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Err(e) if e.is_transient() && attempt + 1 < self.policy.attempts => {
                    let delay = self.policy.delay(attempt);
                    tracing::warn!("{what}: {e}; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl<T: Target> Target for RetryTarget<T> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        self.run("list", || self.inner.list(prefix)).await
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, TargetError> {
        self.run(key, || self.inner.head(key)).await
    }

    async fn put(&self, key: &str, body: Upload) -> Result<Stored, TargetError> {
        self.run(key, || self.inner.put(key, body.clone())).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        self.run(key, || self.inner.put_if_absent(key, data.clone()))
            .await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream, TargetError> {
        self.run(key, || self.inner.get(key, range.clone())).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), TargetError> {
        self.run(to, || self.inner.copy(from, to)).await
    }

    async fn delete(&self, key: &str) -> Result<(), TargetError> {
        self.run(key, || self.inner.delete(key)).await
    }

    async fn sync(&self) -> Result<(), TargetError> {
        self.inner.sync().await
    }
    fn local_root(&self) -> Option<std::path::PathBuf> {
        self.inner.local_root()
    }
    fn local_file(&self, key: &str) -> Option<std::path::PathBuf> {
        self.inner.local_file(key)
    }

    async fn abort_stale_uploads(
        &self,
        older_than: std::time::Duration,
    ) -> Result<u64, TargetError> {
        self.inner.abort_stale_uploads(older_than).await
    }

    async fn incomplete_uploads(&self) -> Result<u64, TargetError> {
        self.inner.incomplete_uploads().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FaultPlan, FaultyTarget, MemoryTarget};

    #[tokio::test]
    async fn transient_faults_are_retried_until_success() {
        let faulty = FaultyTarget::new(
            MemoryTarget::new(),
            FaultPlan::Random { seed: 7, rate: 0.5 },
        );
        let target = RetryTarget::new(
            faulty,
            RetryPolicy {
                attempts: 30,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(2),
            },
        );
        for i in 0..20 {
            target
                .put(&format!("k{i}"), Upload::bytes(Bytes::from_static(b"x")))
                .await
                .unwrap();
        }
        assert_eq!(target.list("k").await.unwrap().len(), 20);
        assert!(
            target.inner.operations() > 21,
            "some attempts failed and were retried"
        );
    }
}
