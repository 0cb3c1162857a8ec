//! Storage faults: transient errors (retried by the layer that owns each kind of failure),
//! download streams that break midway (resumed), and the bound on attempts.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use esbackup_engine::testing::{FaultPlan, FaultyTarget, Intercept, MemoryTarget};
use esbackup_engine::{
    backup, restore, ByteStream, ErrorKind, RestoreOptions, RetryPolicy, RetryTarget, Target,
    TargetError, Upload,
};
use esbackup_tests::support::{backup_options, check_restored, verify_read_data};
use futures::StreamExt;

use crate::common::{mem, settled, Settled};

fn patient() -> RetryPolicy {
    RetryPolicy {
        attempts: 15,
        base_delay: Duration::from_micros(200),
        max_delay: Duration::from_millis(2),
    }
}

/// Random transient faults on every kind of operation of a target that does not retry by
/// itself, wrapped in the engine's `RetryTarget`: backups, a differential, a restore and a
/// verify all complete, and the result is consistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_transient_faults_are_retried_through_backup_and_restore() {
    for seed in 1..=3u64 {
        let Settled { dir, db, mut node } = settled(100 + seed, 60);
        let store = MemoryTarget::new();
        let faulty = FaultyTarget::new(store.clone(), FaultPlan::Random { seed, rate: 0.3 });
        let target: Arc<dyn Target> = Arc::new(RetryTarget::new(faulty, patient()));
        backup(target.clone(), &backup_options(&db)).await.unwrap();
        node.append(300).unwrap();
        for _ in 0..40 {
            node.step().unwrap();
        }
        node.settle().unwrap();
        backup(target.clone(), &backup_options(&db)).await.unwrap();
        assert!(store.list(".esbackup/locks/").await.unwrap().is_empty());
        let dest = dir.path().join("restored");
        restore(target.clone(), &RestoreOptions::new(&dest))
            .await
            .unwrap();
        let checked = check_restored(&dest, &dest.join("index"));
        assert!(checked.is_ok(), "seed {seed}: {:?}", checked.violations);
        let v = verify_read_data(target).await;
        assert!(v.is_ok(), "seed {seed}: {:?}", v.problems());
    }
}

/// Breaks every download stream after its first KiB, `times` times per key.
fn breaking(store: MemoryTarget, times: u32) -> Intercept<MemoryTarget> {
    let broken: Arc<std::sync::Mutex<std::collections::BTreeMap<String, u32>>> = Arc::default();
    Intercept::before(store, |_| {}).map_streams(Arc::new(
        move |key: &str, _, stream: ByteStream| {
            let mut seen = broken.lock().unwrap();
            let n = seen.entry(key.to_string()).or_default();
            if *n >= times || !key.starts_with("chunk-") {
                return stream;
            }
            *n += 1;
            let key = key.to_string();
            stream
                .flat_map(move |piece| {
                    let piece: Bytes = piece.unwrap();
                    let head = piece.slice(..piece.len().min(1024));
                    let err = TargetError::transient(format!("{key}: connection reset by peer"));
                    futures::stream::iter(vec![Ok(head), Err(err)])
                })
                .take(2)
                .boxed()
        },
    ))
}

/// A transient error in the middle of a download resumes from where the stream broke (a
/// ranged read), up to a bound; past the bound the restore fails as a storage error.
#[tokio::test]
async fn a_download_broken_midway_is_resumed_a_bounded_number_of_times() {
    let Settled { dir, db, .. } = settled(8, 20);
    let (store, target) = mem();
    backup(target, &backup_options(&db)).await.unwrap();
    let dest = dir.path().join("restored");
    restore(
        Arc::new(breaking(store.clone(), 2)),
        &RestoreOptions::new(&dest),
    )
    .await
    .unwrap();
    assert!(check_restored(&dest, &dest.join("index")).is_ok());
    let err = restore(
        Arc::new(breaking(store, 100)),
        &RestoreOptions::new(dir.path().join("again")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
}

/// A store on which every operation fails with `error()`, and the count of its calls.
fn failing_with(error: fn() -> TargetError) -> (Intercept<MemoryTarget>, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let failing = Intercept::new(
        MemoryTarget::new(),
        Arc::new(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { Err(error()) })
        }),
    );
    (failing, calls)
}

/// The worst case of one failing request through the engine's retry layer: exactly
/// `attempts` attempts, with a pause between each two (each pause is at least half its cap;
/// that none exceeds its cap is the engine's unit test `the_delays_stay_within_their_caps_…`).
#[tokio::test]
async fn one_failing_request_is_tried_exactly_attempts_times() {
    let policy = RetryPolicy {
        attempts: 6,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
    };
    let (always, calls) = failing_with(|| TargetError::transient("503 SlowDown"));
    let target = RetryTarget::new(always, policy.clone());
    let started = Instant::now();
    let err = target
        .put("k", Upload::bytes(Bytes::from_static(b"x")))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(err.is_transient());
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    assert_eq!(policy.worst_case().0, 6);
    // A sleep never ends early: the pauses took at least half the worst case.
    assert!(took >= policy.worst_case().1 / 2, "{took:?}");
    // A permanent error is not retried.
    let (denied, calls) = failing_with(|| TargetError::permanent("403"));
    let _ = RetryTarget::new(denied, policy).head("k").await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A crash (every operation failing from some point on) is not retried into success: the run
/// fails and its lock is left for the next run to take over.
#[tokio::test]
async fn a_run_against_a_dead_store_fails_without_writing_a_point() {
    let Settled { dir: _dir, db, .. } = settled(9, 20);
    let store = MemoryTarget::new();
    let err = backup(
        Arc::new(FaultyTarget::new(store.clone(), FaultPlan::Always)),
        &backup_options(&db),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    assert!(store.snapshot().is_empty());
}
