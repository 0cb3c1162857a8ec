//! The lock: two runs at once never both hold it, a live lock is never taken over, a dead one
//! always is, and nothing is left behind.

use std::sync::{Arc, Mutex};

use esbackup_engine::testing::{Intercept, MemoryTarget, Op};
use esbackup_engine::{backup, ErrorKind, Target};
use esbackup_tests::scenarios::settled_node;
use esbackup_tests::support::{backup_options, restore_and_check};

/// Runs two backups of the same node at once on one location, `rounds` times. Checks the safety
/// part (every failure is LockHeld; the two runs' writes never interleave; no lock is left) and
/// returns how many rounds ended with no completed run.
async fn race(seed: u64, rounds: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut node = settled_node(&db, seed, 40);
    let store = MemoryTarget::new();
    let log: Arc<Mutex<Vec<(char, Op)>>> = Arc::default();
    let run = |tag: char| -> Arc<dyn Target> {
        let l = log.clone();
        let logged = Intercept::before(store.clone(), move |op| {
            if op.writes() {
                l.lock().unwrap().push((tag, op.clone()));
            }
        });
        Arc::new(Intercept::slow(
            logged,
            std::time::Duration::from_micros(300),
        ))
    };
    let (ta, tb) = (run('a'), run('b'));
    let mut rounds_without_backup = 0;
    let mut any_completed = false;
    for round in 0..rounds {
        node.append(50).unwrap();
        node.settle().unwrap();
        log.lock().unwrap().clear();
        let (oa, ob) = (backup_options(&db), backup_options(&db));
        let (a, b) = tokio::join!(backup(ta.clone(), &oa), backup(tb.clone(), &ob));
        let mut completed = 0;
        for r in [a, b] {
            match r {
                Ok(_) => completed += 1,
                Err(e) => assert_eq!(e.kind(), ErrorKind::LockHeld, "round {round}: {e}"),
            }
        }
        any_completed |= completed > 0;
        rounds_without_backup += usize::from(completed == 0);
        let log = log.lock().unwrap().clone();
        // Each run's work (its writes other than lock objects) must not interleave with the
        // other's: only the lock holder writes.
        let work = |tag: char| -> Option<(usize, usize)> {
            let mine: Vec<usize> = log
                .iter()
                .enumerate()
                .filter(|(_, (t, op))| *t == tag && !op.key().starts_with(".esbackup/locks/"))
                .map(|(i, _)| i)
                .collect();
            Some((*mine.first()?, *mine.last()?))
        };
        if let (Some(a), Some(b)) = (work('a'), work('b')) {
            assert!(
                a.1 < b.0 || b.1 < a.0,
                "round {round}: both runs wrote at the same time: {a:?} {b:?}"
            );
        }
        assert!(store.list(".esbackup/locks/").await.unwrap().is_empty());
    }
    if any_completed {
        let (_, checked) = restore_and_check(ta, dir.path(), "restored").await;
        assert!(checked.is_ok(), "{:?}", checked.violations);
    }
    rounds_without_backup
}

/// Two backups started at once on one location: a loser fails with LockHeld; no lock object
/// is left behind; what completed restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backups_racing_on_one_location_never_both_hold_the_lock() {
    race(33, 4).await;
}

/// Liveness: of two runs started at once, at least one gets through in every round (both back
/// off and retry after random pauses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backups_started_together_do_not_both_give_up() {
    let empty = race(34, 6).await;
    assert_eq!(empty, 0, "in {empty} of 6 rounds both racing runs gave up");
}

/// Two containers on one host each run esbackup as pid 1: a lock with a fresh heartbeat of
/// another process with our host name and pid is never taken over.
#[tokio::test]
async fn a_fresh_lock_of_another_process_with_our_host_and_pid_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 4, 10);
    let store = MemoryTarget::new();
    let now = chrono::Utc::now();
    let other = serde_json::json!({
        "run_id": "20990101T000000Z-othercontainer", "host": esbackup_engine::host_name(),
        "pid": std::process::id(), "command": "backup", "started": now, "heartbeat": now
    });
    store.insert(
        ".esbackup/locks/20990101T000000Z-othercontainer.json",
        serde_json::to_vec(&other).unwrap(),
    );
    let err = backup(Arc::new(store), &backup_options(&db))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockHeld, "{err}");
}
