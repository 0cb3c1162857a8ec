//! [`FaultyTarget`]: counts operations and fails chosen ones, to prove that a run interrupted
//! anywhere leaves every restore point restorable and that transient errors are retried.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::intercept::{Intercept, Op};
use crate::target::{Target, TargetError};

/// Which operations fail.
#[derive(Clone, Debug)]
pub enum FaultPlan {
    /// Nothing fails; operations are only counted.
    None,
    /// Operation number `k` (0-based) and every one after it fail permanently, as if the
    /// process died or the network went away at that moment.
    CrashAt(u64),
    /// Only operation number `k` fails, transiently.
    FailOnce(u64),
    /// Each operation fails transiently with probability `rate`, drawn from a seeded RNG.
    Random { seed: u64, rate: f64 },
    /// Every operation fails transiently.
    Always,
}

#[derive(Debug, Default)]
struct Counter {
    ops: AtomicU64,
    log: Mutex<Vec<String>>,
}

/// A target that counts operations and injects faults according to a [`FaultPlan`].
pub type FaultyTarget<T> = Faulty<T>;

/// See [`FaultyTarget`].
#[derive(Debug)]
pub struct Faulty<T> {
    target: Intercept<T>,
    counter: Arc<Counter>,
}

impl<T: Target> Faulty<T> {
    pub fn new(inner: T, plan: FaultPlan) -> Self {
        let counter = Arc::new(Counter::default());
        let seed = match plan {
            FaultPlan::Random { seed, .. } => seed,
            _ => 0,
        };
        let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(seed)));
        let c = counter.clone();
        let hook = Arc::new(move |op: &Op| {
            let n = c.ops.fetch_add(1, Ordering::SeqCst);
            c.log.lock().unwrap().push(op.to_string());
            let fail = match plan {
                FaultPlan::None => None,
                FaultPlan::CrashAt(k) if n >= k => Some(TargetError::permanent(format!(
                    "injected crash at operation {k} ({op})"
                ))),
                FaultPlan::CrashAt(_) => None,
                FaultPlan::FailOnce(k) => {
                    (n == k).then(|| TargetError::transient(format!("injected fault ({op})")))
                }
                FaultPlan::Random { rate, .. } => rng
                    .lock()
                    .unwrap()
                    .gen_bool(rate)
                    .then(|| TargetError::transient(format!("injected fault ({op})"))),
                FaultPlan::Always => Some(TargetError::transient(format!("injected fault ({op})"))),
            };
            Box::pin(async move { fail.map_or(Ok(()), Err) })
                as futures::future::BoxFuture<'static, Result<(), TargetError>>
        });
        Faulty {
            target: Intercept::new(inner, hook),
            counter,
        }
    }

    /// How many operations were attempted.
    pub fn operations(&self) -> u64 {
        self.counter.ops.load(Ordering::SeqCst)
    }

    /// `op key` for every operation attempted, in order.
    pub fn log(&self) -> Vec<String> {
        self.counter.log.lock().unwrap().clone()
    }

    pub fn inner(&self) -> &T {
        self.target.inner()
    }
}

crate::testing::forward_target!(Faulty<T>, target);
