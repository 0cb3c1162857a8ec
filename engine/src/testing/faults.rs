//! [`FaultyTarget`]: wraps a target and fails chosen operations, to prove that a run interrupted
//! anywhere leaves a restorable backup and that transient errors are retried.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::target::{ByteStream, ObjectInfo, Target, TargetError, Upload};

/// Which operations fail.
#[derive(Clone, Debug)]
pub enum FaultPlan {
    /// Nothing fails; operations are only counted.
    None,
    /// Operation number `k` (0-based) and every one after it fail permanently, as if the
    /// process died or the network went away at that moment.
    CrashAt(u64),
    /// Each operation fails transiently with probability `rate`, drawn from a seeded RNG.
    Random { seed: u64, rate: f64 },
}

/// A target that counts operations and injects faults according to a [`FaultPlan`].
#[derive(Debug)]
pub struct FaultyTarget<T> {
    inner: T,
    plan: FaultPlan,
    ops: AtomicU64,
    rng: Mutex<StdRng>,
    log: Arc<Mutex<Vec<String>>>,
}

impl<T: Target> FaultyTarget<T> {
    pub fn new(inner: T, plan: FaultPlan) -> Self {
        let seed = match plan {
            FaultPlan::Random { seed, .. } => seed,
            _ => 0,
        };
        FaultyTarget {
            inner,
            plan,
            ops: AtomicU64::new(0),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            log: Arc::default(),
        }
    }

    /// How many operations were attempted.
    pub fn operations(&self) -> u64 {
        self.ops.load(Ordering::SeqCst)
    }

    /// `op key` for every operation attempted, in order.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }

    fn check(&self, op: &str, key: &str) -> Result<(), TargetError> {
        let n = self.ops.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().push(format!("{op} {key}"));
        match self.plan {
            FaultPlan::None => Ok(()),
            FaultPlan::CrashAt(k) if n >= k => Err(TargetError::Permanent(format!(
                "injected crash at operation {k} ({op} {key})"
            ))),
            FaultPlan::CrashAt(_) => Ok(()),
            FaultPlan::Random { rate, .. } => {
                if self.rng.lock().unwrap().gen_bool(rate) {
                    Err(TargetError::Transient(format!(
                        "injected fault ({op} {key})"
                    )))
                } else {
                    Ok(())
                }
            }
        }
    }
}

#[async_trait]
impl<T: Target> Target for FaultyTarget<T> {
    fn describe(&self) -> String {
        format!("faulty({})", self.inner.describe())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        self.check("list", prefix)?;
        self.inner.list(prefix).await
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, TargetError> {
        self.check("head", key)?;
        self.inner.head(key).await
    }

    async fn put(&self, key: &str, body: Upload) -> Result<(), TargetError> {
        self.check("put", key)?;
        self.inner.put(key, body).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        self.check("put_if_absent", key)?;
        self.inner.put_if_absent(key, data).await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream, TargetError> {
        self.check("get", key)?;
        self.inner.get(key, range).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), TargetError> {
        self.check("copy", &format!("{from} -> {to}"))?;
        self.inner.copy(from, to).await
    }

    async fn delete(&self, key: &str) -> Result<(), TargetError> {
        self.check("delete", key)?;
        self.inner.delete(key).await
    }

    fn local_root(&self) -> Option<std::path::PathBuf> {
        self.inner.local_root()
    }

    async fn abort_stale_uploads(
        &self,
        older_than: std::time::Duration,
    ) -> Result<u64, TargetError> {
        self.check("abort_stale_uploads", "")?;
        self.inner.abort_stale_uploads(older_than).await
    }
}
