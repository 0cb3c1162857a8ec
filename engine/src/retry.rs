//! [`RetryTarget`]: retries transient storage errors with jittered exponential backoff (backon,
//! [`equal_jitter`]), for a [`Target`] whose store does not retry by itself.
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
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;

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

    /// The delays between attempts: `attempts - 1` of them, each [`equal_jitter`].
    fn backoff(&self) -> ExponentialBuilder {
        equal_jitter(self.base_delay, self.max_delay)
            .with_max_times(self.attempts.saturating_sub(1) as usize)
    }
}

/// Exponential backoff with "equal jitter", the one backoff shape of esbackup's own waits: the
/// n-th delay is drawn from `[cap/2, cap)`, `cap = base·2^n` capped at `max`, so a delay never
/// exceeds its cap (the bound [`RetryPolicy::worst_case`] adds up) and never collapses to zero.
/// Unlimited; bound it with `with_max_times`.
///
/// (backon's jitter adds up to one more delay, `[d, 2d)`: starting from halves gives the range
/// above.)
pub fn equal_jitter(base: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(base / 2)
        .with_max_delay(max / 2)
        .with_jitter()
        .without_max_times()
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

    async fn run<R, F, Fut>(&self, what: &str, op: F) -> Result<R, TargetError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<R, TargetError>>,
    {
        op.retry(self.policy.backoff())
            .when(TargetError::is_transient)
            .notify(|e, delay| tracing::warn!("{what}: {e}; retrying in {delay:?}"))
            .await
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
    fn encodes(&self) -> bool {
        self.inner.encodes()
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
    use backon::BackoffBuilder;

    /// The delays are `attempts - 1`, each in `[cap/2, cap]` of its capped `base·2^n`, so they
    /// add up to at most the worst case (drawn many times: the bound holds for every draw).
    #[test]
    fn the_delays_stay_within_their_caps_and_add_up_to_at_most_the_worst_case() {
        let policy = RetryPolicy {
            attempts: 6,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
        };
        let caps = [10, 20, 40, 40, 40].map(Duration::from_millis);
        // f32 arithmetic inside backon: allow a microsecond.
        let slack = Duration::from_micros(1);
        for _ in 0..1000 {
            let delays: Vec<Duration> = policy.backoff().build().collect();
            assert_eq!(delays.len(), 5, "{delays:?}");
            for (d, cap) in delays.iter().zip(caps) {
                assert!(
                    *d + slack >= cap / 2 && *d <= cap + slack,
                    "{d:?} vs cap {cap:?}"
                );
            }
            let total: Duration = delays.iter().sum();
            assert!(total <= policy.worst_case().1 + slack, "{total:?}");
        }
        assert_eq!(policy.worst_case(), (6, Duration::from_millis(150)));
    }

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
