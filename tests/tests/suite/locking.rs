//! The lock: two runs at once never both hold it, a live lock is never taken over, a dead one
//! always is, and nothing is left behind; a held lock stops a second run until broken, a run
//! that lost its lock writes no point, and `status` says when a holder is gone.

use std::sync::{Arc, Mutex};

use esbackup_engine::testing::{Intercept, MemoryTarget, Op};
use esbackup_engine::{backup, status, verify, ErrorKind, Target, VerifyOptions};
use esbackup_tests::scenarios::settled_node;
use esbackup_tests::support::{backup_options, points, restore_and_check};

use crate::common::{mem, settled, Settled};

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
    let Settled { dir: _dir, db, .. } = settled(4, 10);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_lost_its_lock_writes_no_point_over_the_winner() {
    let Settled {
        dir: _dir,
        db,
        mut node,
    } = settled(29, 10);
    let store = MemoryTarget::new();
    backup(Arc::new(store.clone()), &backup_options(&db))
        .await
        .unwrap();
    node.append(400).unwrap();
    node.settle().unwrap();
    // While A uploads its first chunk, B breaks A's lock and completes a backup.
    let winner: Arc<Mutex<Option<String>>> = Arc::default();
    let (w, db2, inner) = (winner.clone(), db.clone(), store.clone());
    let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hook: esbackup_engine::testing::Hook = Arc::new(move |op: &Op| {
        let go = matches!(op, Op::Put(k, _) if k.starts_with(".esbackup/active/") || k.starts_with("chunk-"))
            && !fired.swap(true, std::sync::atomic::Ordering::SeqCst);
        let (w, db2, inner) = (w.clone(), db2.clone(), inner.clone());
        Box::pin(async move {
            if go {
                let mut opts = backup_options(&db2);
                opts.lock.break_lock = true;
                let b = backup(Arc::new(inner), &opts).await.unwrap();
                *w.lock().unwrap() = b.point;
            }
            Ok(())
        })
    });
    let a = Arc::new(Intercept::new(store.clone(), hook));
    let err = backup(a, &backup_options(&db)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockHeld, "{err}");
    let target: Arc<dyn Target> = Arc::new(store);
    let all = points(&target).await;
    assert_eq!(all.len(), 2, "the first point and B's; none of A");
    assert_eq!(Some(all[1].id.clone()), *winner.lock().unwrap());
    let v = verify(target.clone(), &VerifyOptions::default())
        .await
        .unwrap();
    assert!(v.is_ok(), "{:?}", v.problems());
    let s = status(target).await.unwrap();
    assert_eq!(s.newest.unwrap().id, all[1].id);
}

#[tokio::test]
async fn status_says_when_a_lock_holder_is_gone() {
    let (mem, target) = mem();
    let Settled { dir: _dir, db, .. } = settled(18, 10);
    backup(target.clone(), &backup_options(&db)).await.unwrap();
    // A lock of a process of this machine that no longer exists (a killed run).
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let scope = {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        let ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
        format!("{}/{}", boot.trim(), ns.display())
    };
    let now = chrono::Utc::now();
    let lock = serde_json::json!({
        "run_id": "killed", "host": esbackup_engine::host_name(), "pid": pid, "command": "backup",
        "started": now, "heartbeat": now, "scope": scope, "instance": "another-process"
    });
    mem.insert(
        ".esbackup/locks/killed.1.json",
        serde_json::to_vec(&lock).unwrap(),
    );
    let s = status(target).await.unwrap();
    assert_eq!(s.locks.len(), 1);
    let dead = s.locks[0].dead.clone().expect("the lock is judged dead");
    assert!(dead.contains("gone"), "{dead}");
}

#[tokio::test]
async fn a_held_lock_stops_a_second_run_until_broken() {
    let Settled { dir: _dir, db, .. } = settled(4, 10);
    let (mem, target) = mem();
    let now = chrono::Utc::now();
    let foreign = serde_json::json!({
        "run_id": "other", "host": "another-host", "pid": 1, "command": "backup",
        "started": now, "heartbeat": now
    });
    mem.insert(
        ".esbackup/locks/other.json",
        serde_json::to_vec(&foreign).unwrap(),
    );
    let err = backup(target.clone(), &backup_options(&db))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockHeld, "{err}");
    assert!(err.to_string().contains("another-host"));
    let mut opts = backup_options(&db);
    opts.lock.break_lock = true;
    backup(target, &opts).await.unwrap();
    assert!(
        mem.list(".esbackup/locks/").await.unwrap().is_empty(),
        "released"
    );
}
