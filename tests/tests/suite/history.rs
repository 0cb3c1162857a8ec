//! The history stays safe with overlapping cron jobs, a location someone else can write to and a
//! host clock that jumps: the regression tests of the history-safety review (issue 16), one
//! section per finding. The randomized concurrent history test is `cli/tests/history.rs`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use esbackup_backends::{open_target, TargetOptions};
use esbackup_engine::testing::{Intercept, MemoryTarget, Op};
use esbackup_engine::{
    backup, forget, list, restore, status, verify, ErrorKind, RestoreOptions, Target,
    VerifyOptions, Which,
};
use esbackup_tests::support::{
    assert_same_files, backup_options, database_files, files_under, latest_point, points,
    prune_keeping_last, verify_read_data,
};
use serde_json::Value;

use crate::common::{mem, settled, Settled};

fn folder(path: &Path) -> Arc<dyn Target> {
    open_target(&path.display().to_string(), &TargetOptions::default()).unwrap()
}

/// Appends `events` to the node and backs it up, `runs` times: a location with `runs` points.
async fn backups(node: &mut esdb_sim::Node, target: &Arc<dyn Target>, runs: usize, events: usize) {
    for _ in 0..runs {
        node.append(events).unwrap();
        node.settle().unwrap();
        backup(target.clone(), &backup_options(node.db_dir()))
            .await
            .unwrap();
    }
}

/// Restores `which` into a fresh folder under `scratch` and returns its database files.
async fn restored_files(
    target: &Arc<dyn Target>,
    which: Which,
    scratch: &Path,
    name: &str,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let dest = scratch.join(name);
    let mut opts = RestoreOptions::new(&dest);
    opts.point = which;
    restore(target.clone(), &opts)
        .await
        .unwrap_or_else(|e| panic!("restore {name}: {e}"));
    database_files(&dest)
}

/// Returns once a run holds the lock of `store`.
async fn until_locked(store: &MemoryTarget) {
    while !store
        .snapshot()
        .keys()
        .any(|k| k.starts_with(".esbackup/locks/"))
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A point object as JSON, to craft what a hostile writer of the location would.
async fn point_json(store: &MemoryTarget, id: &str) -> Value {
    let key = format!(".esbackup/points/{id}.json");
    serde_json::from_slice(&store.snapshot()[&key]).unwrap()
}

fn put_point_json(store: &MemoryTarget, id: &str, value: &Value) {
    let key = format!(".esbackup/points/{id}.json");
    store.insert(&key, serde_json::to_vec_pretty(value).unwrap());
}

// 1. forget --prune beside a backup -----------------------------------------------------------

/// The reported interleaving, made deterministic: `forget --keep-last 2 --prune` lists the
/// points while a backup holds the lock; the backup then stores its point and releases the
/// lock; the forget goes on. Deciding on the points it listed before it held the lock, it would
/// delete what the new point needs. Every point must stay restorable, and the new one newest.
#[tokio::test]
async fn a_prune_that_overlaps_a_backup_deletes_nothing_the_new_point_needs() {
    let Settled { dir, db, mut node } = settled(161, 20);
    let (store, plain) = mem();
    backups(&mut node, &plain, 3, 200).await;
    node.append(300).unwrap();
    node.settle().unwrap();
    let expected = database_files(&db);

    // The backup stops before it writes its point until the forget has listed the points.
    let forget_listed = Arc::new(tokio::sync::Notify::new());
    let seen = Arc::new(AtomicBool::new(false));
    let (listed, flag) = (forget_listed.clone(), seen.clone());
    let backing_up: Arc<dyn Target> = Arc::new(Intercept::new(
        store.clone(),
        Arc::new(move |op| {
            let wait = matches!(op, Op::Put(k, _) if k.starts_with(".esbackup/points/"));
            let (listed, flag) = (listed.clone(), flag.clone());
            Box::pin(async move {
                if wait && !flag.load(Ordering::SeqCst) {
                    listed.notified().await;
                }
                Ok(())
            })
        }),
    ));
    let (listed, flag) = (forget_listed.clone(), seen.clone());
    let forgetting: Arc<dyn Target> = Arc::new(Intercept::before(store.clone(), move |op| {
        if matches!(op, Op::List(p) if p == ".esbackup/points/")
            && !flag.swap(true, Ordering::SeqCst)
        {
            listed.notify_one();
        }
    }));
    let backup_task = tokio::spawn({
        let db = db.clone();
        async move { backup(backing_up, &backup_options(&db)).await }
    });
    // Let the backup take the lock first.
    until_locked(&store).await;
    let forgot = forget(forgetting, &prune_keeping_last(2, Duration::from_secs(60)))
        .await
        .expect("the forget waits for the backup and then succeeds");
    let stored = backup_task.await.unwrap().expect("the backup succeeds");
    let new_point = stored.point.unwrap();

    assert!(
        forgot.kept.iter().any(|k| k.id == new_point),
        "the forget saw the backup's point: kept {:?}",
        forgot.kept
    );
    let report = verify_read_data(plain.clone()).await;
    assert!(report.is_ok(), "{:?}", report.problems());
    let all = points(&plain).await;
    assert_eq!(all.len(), 2, "keep-last 2 of the four points");
    assert_eq!(
        all.last().unwrap().id,
        new_point,
        "the backup's point is newest"
    );
    let got = restored_files(&plain, Which::Latest, dir.path(), "latest").await;
    assert_same_files(&got, &expected, "the newest point");
}

/// Scheduled use: a forget started while a backup runs waits for it (bounded), says how long
/// it waited, and with no wait allowed gives up naming the holder.
#[tokio::test]
async fn forget_waits_for_a_running_backup_and_gives_up_after_lock_wait() {
    let Settled { dir: _dir, db, .. } = settled(162, 10);
    let (store, plain) = mem();
    backup(plain.clone(), &backup_options(&db)).await.unwrap();
    // A backup whose point write takes two seconds.
    let slow: Arc<dyn Target> = Arc::new(Intercept::new(
        store.clone(),
        Arc::new(|op| {
            let slow = matches!(op, Op::Put(k, _) if k.starts_with(".esbackup/points/"));
            Box::pin(async move {
                if slow {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Ok(())
            })
        }),
    ));
    let running = tokio::spawn({
        let db = db.clone();
        async move { backup(slow, &backup_options(&db)).await }
    });
    until_locked(&store).await;
    let refused = forget(plain.clone(), &prune_keeping_last(1, Duration::ZERO))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::LockHeld, "{refused}");
    assert!(refused.to_string().contains("backup run"), "{refused}");
    let waited = forget(
        plain.clone(),
        &prune_keeping_last(1, Duration::from_secs(60)),
    )
    .await
    .unwrap();
    running.await.unwrap().unwrap();
    assert!(waited.lock_waited_secs > 0.5, "{}", waited.lock_waited_secs);
    assert_eq!(points(&plain).await.len(), 1);
    assert!(verify_read_data(plain).await.is_ok());
}

/// Defence in depth: a point that appears while the forget holds the lock (a run whose lock it
/// took over) stops the prune before it deletes anything.
#[tokio::test]
async fn a_point_that_appears_during_a_prune_stops_it() {
    let Settled {
        dir: _dir,
        mut node,
        ..
    } = settled(163, 10);
    let (store, plain) = mem();
    backups(&mut node, &plain, 3, 100).await;
    let newest = latest_point(&plain).await;
    let before = store.snapshot();
    let planted = AtomicBool::new(false);
    let (s, id) = (store.clone(), newest.id.clone());
    let forgetting: Arc<dyn Target> = Arc::new(Intercept::before(store.clone(), move |op| {
        // The whole-location listing comes after the points were read.
        if matches!(op, Op::List(p) if p.is_empty()) && !planted.swap(true, Ordering::SeqCst) {
            let body = s.snapshot()[&format!(".esbackup/points/{id}.json")].clone();
            s.insert(
                ".esbackup/points/p99999999-20990101T000000000Z-0badc0de.json",
                body,
            );
        }
    }));
    let err = forget(forgetting, &prune_keeping_last(1, Duration::ZERO))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockHeld, "{err}");
    assert!(err.to_string().contains("appeared"), "{err}");
    let after = store.snapshot();
    for key in before.keys().filter(|k| !k.starts_with(".esbackup/locks/")) {
        assert!(after.contains_key(key), "{key} was deleted");
    }
}

/// Defence in depth: an unreferenced object the store dates after the forget's lock object is
/// left for the next prune (folder target: file times).
#[tokio::test]
async fn a_prune_never_deletes_an_object_written_after_it_took_the_lock() {
    let Settled { dir, mut node, .. } = settled(164, 10);
    let bk = dir.path().join("bk");
    backups(&mut node, &folder(&bk), 2, 100).await;
    // Older than the margin the prune gives store clocks, so that only the late object is new.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let late = bk.join(".esbackup/data/late-object/p00000009-x");
    let planted = AtomicBool::new(false);
    let file = late.clone();
    let forgetting: Arc<dyn Target> = Arc::new(Intercept::before(folder(&bk), move |op| {
        if matches!(op, Op::List(p) if p.is_empty()) && !planted.swap(true, Ordering::SeqCst) {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, b"written by someone else meanwhile").unwrap();
        }
    }));
    let report = forget(forgetting, &prune_keeping_last(1, Duration::ZERO))
        .await
        .unwrap();
    assert!(late.exists(), "the late object was deleted");
    assert_eq!(report.pruned_later, 1, "{report:?}");
    // The next prune judges it: unreferenced and old enough to be garbage.
    let old = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&late)
        .unwrap()
        .set_modified(old)
        .unwrap();
    forget(folder(&bk), &prune_keeping_last(1, Duration::ZERO))
        .await
        .unwrap();
    assert!(!late.exists(), "the next prune deletes it");
    assert!(verify_read_data(folder(&bk)).await.is_ok());
}

// 2. A point names files outside the restore folder -------------------------------------------

#[tokio::test]
async fn a_point_naming_files_outside_the_database_restores_nothing() {
    let Settled { dir, db, .. } = settled(165, 10);
    let (store, plain) = mem();
    backup(plain.clone(), &backup_options(&db)).await.unwrap();
    let id = latest_point(&plain).await.id;
    let original = point_json(&store, &id).await;
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let absolute = format!("{}/escape.chk", outside.display());
    for name in ["../escape.chk", absolute.as_str(), "index/../../escape.chk"] {
        let mut crafted = original.clone();
        crafted["files"][name] = serde_json::json!({
            "size": 8, "store": "inline", "data": "AAAAAAAAAAA="
        });
        put_point_json(&store, &id, &crafted);
        let dest = dir.path().join("restore/db");
        let err = restore(plain.clone(), &RestoreOptions::new(&dest))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Damaged, "{name}: {err}");
        assert!(err.to_string().contains(name), "{name}: {err}");
        assert!(!dest.exists(), "{name}: the restore folder was created");
        assert!(files_under(&outside).is_empty(), "{name}: wrote outside");
        assert!(
            !dir.path().join("escape.chk").exists()
                && !dir.path().join("restore/escape.chk").exists()
        );
        let listing = list(plain.clone()).await.unwrap();
        assert_eq!(listing.damaged().count(), 1, "{name}: list names it");
    }
    // A stored object key outside the location: the point is damaged too.
    let mut crafted = original.clone();
    crafted["files"]["chunk-000000.000000"] = serde_json::json!({
        "size": 3, "store": "object", "key": "../x", "md5": "00"
    });
    put_point_json(&store, &id, &crafted);
    let err = restore(plain.clone(), &RestoreOptions::new(dir.path().join("r2")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Damaged, "{err}");
    assert!(!dir.path().join("x").exists());
    // The original point restores again.
    put_point_json(&store, &id, &original);
    restored_files(&plain, Which::Latest, dir.path(), "fine").await;
}

// 3. A clock behind the newest point ----------------------------------------------------------

/// The point of the run before is renamed and re-dated a day ahead, as if this host's clock
/// were a day behind it. The new run still becomes the newest point, says so, and `restore`,
/// `--keep-last` and `--at` treat it as the newest.
#[tokio::test]
async fn a_run_with_the_clock_behind_is_still_the_newest_point() {
    let Settled { dir, db, mut node } = settled(166, 10);
    let (store, plain) = mem();
    backup(plain.clone(), &backup_options(&db)).await.unwrap();
    let first = latest_point(&plain).await;
    let ahead = first.time + chrono::Duration::days(1);
    let stamp = ahead.format("%Y%m%dT%H%M%S%3fZ").to_string();
    let renamed = match first.id.split_once('-') {
        Some((seq, rest)) if seq.starts_with('p') => {
            format!("{seq}-{stamp}-{}", rest.rsplit('-').next().unwrap())
        }
        _ => format!("{stamp}-{}", first.id.rsplit('-').next().unwrap()),
    };
    let mut json = point_json(&store, &first.id).await;
    json["id"] = Value::String(renamed.clone());
    json["time"] = Value::String(ahead.to_rfc3339());
    store.remove(&format!(".esbackup/points/{}.json", first.id));
    put_point_json(&store, &renamed, &json);

    node.append(300).unwrap();
    node.settle().unwrap();
    let expected = database_files(&db);
    let second = backup(plain.clone(), &backup_options(&db)).await.unwrap();
    let second_id = second.point.clone().unwrap();
    assert!(
        second.warnings.iter().any(|w| w.contains("behind")),
        "{:?}",
        second.warnings
    );
    let listing = list(plain.clone()).await.unwrap();
    let ids: Vec<&str> = listing.points().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, [renamed.as_str(), second_id.as_str()], "run order");
    assert!(!listing.warnings.is_empty(), "list says the times go back");

    let got = restored_files(&plain, Which::Latest, dir.path(), "latest").await;
    assert_same_files(&got, &expected, "a plain restore gives the run taken last");
    let got = restored_files(&plain, Which::At(chrono::Utc::now()), dir.path(), "at").await;
    assert_same_files(
        &got,
        &expected,
        "--at now: the latest recorded time before now",
    );

    let forgot = forget(plain.clone(), &prune_keeping_last(1, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(
        forgot.forgotten,
        [renamed],
        "keep-last 1 keeps the run taken last"
    );
    assert!(!forgot.warnings.is_empty());
    assert!(verify_read_data(plain).await.is_ok());
}

// 4. One unreadable point ---------------------------------------------------------------------

#[tokio::test]
async fn an_unreadable_point_is_named_and_hides_no_other() {
    let Settled { dir, db, mut node } = settled(167, 10);
    let (store, plain) = mem();
    backups(&mut node, &plain, 3, 100).await;
    let all = points(&plain).await;
    let broken = all[1].id.clone();
    let key = format!(".esbackup/points/{broken}.json");
    let body = store.snapshot()[&key].clone();
    store.insert(&key, body.slice(..body.len() / 2));

    let listing = list(plain.clone()).await.unwrap();
    assert_eq!(listing.points().count(), 2);
    let damaged: Vec<&str> = listing.damaged().map(|(id, _)| id).collect();
    assert_eq!(damaged, [broken.as_str()]);
    let s = status(plain.clone()).await.unwrap();
    assert_eq!(s.points, 2);
    assert_eq!(s.damaged.len(), 1);
    let v = verify(plain.clone(), &VerifyOptions::default())
        .await
        .unwrap();
    assert!(!v.is_ok());
    assert_eq!(v.points.len(), 2, "the readable points are checked");
    assert!(v.problems().iter().any(|p| p.contains(&broken)));

    let err = forget(plain.clone(), &prune_keeping_last(1, Duration::ZERO))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Damaged, "{err}");
    assert_eq!(points_len(&store), 3, "nothing forgotten");
    // Restores of the others, and backups, go on.
    restored_files(&plain, Which::Id(all[0].id.clone()), dir.path(), "oldest").await;
    node.append(100).unwrap();
    node.settle().unwrap();
    backup(plain.clone(), &backup_options(&db)).await.unwrap();
    restored_files(&plain, Which::Latest, dir.path(), "newest").await;
}

fn points_len(store: &MemoryTarget) -> usize {
    store
        .snapshot()
        .keys()
        .filter(|k| k.starts_with(".esbackup/points/"))
        .count()
}

// 5. Leftovers of killed runs -----------------------------------------------------------------

#[tokio::test]
async fn the_next_run_removes_staging_files_of_killed_runs_and_status_counts_them() {
    let Settled { dir, db, .. } = settled(168, 10);
    let bk = dir.path().join("bk");
    backup(folder(&bk), &backup_options(&db)).await.unwrap();
    let old = SystemTime::now() - Duration::from_secs(120);
    let leftovers = [
        bk.join(".esbackup/locks/20261206T000000000Z-deadbeef.1.json#1"),
        bk.join("chunk-000000.000000#3"),
        bk.join(".esbackup/data/index/x/run#12"),
    ];
    for path in &leftovers {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"half").unwrap();
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    // A fresh one may be a live run's lock attempt: left alone.
    let fresh = bk.join(".esbackup/locks/20261206T000000000Z-0000live.1.json#2");
    std::fs::write(&fresh, b"live").unwrap();
    assert_eq!(
        status(folder(&bk)).await.unwrap().incomplete_uploads,
        Some(4)
    );
    let report = backup(folder(&bk), &backup_options(&db)).await.unwrap();
    assert_eq!(report.aborted_uploads, 3);
    for path in &leftovers {
        assert!(!path.exists(), "{} is left", path.display());
    }
    assert!(fresh.exists());
    assert_eq!(
        status(folder(&bk)).await.unwrap().incomplete_uploads,
        Some(1)
    );
}

// 7. The root mirror --------------------------------------------------------------------------

#[tokio::test]
async fn verify_reports_a_damaged_root_mirror_and_the_next_backup_repairs_it() {
    let Settled { dir, db, .. } = settled(169, 10);
    let bk = dir.path().join("bk");
    backup(folder(&bk), &backup_options(&db)).await.unwrap();
    std::fs::remove_file(bk.join("index/indexmap")).unwrap();
    std::fs::remove_file(bk.join("chaser.chk")).unwrap();
    let report = verify(folder(&bk), &VerifyOptions::default())
        .await
        .unwrap();
    assert!(report.is_ok(), "restores do not need the mirror");
    let named = |file: &str| report.mirror.iter().any(|m| m.contains(file));
    assert!(
        named("index/indexmap") && named("chaser.chk"),
        "{:?}",
        report.mirror
    );
    backup(folder(&bk), &backup_options(&db)).await.unwrap();
    let report = verify(folder(&bk), &VerifyOptions::default())
        .await
        .unwrap();
    assert!(report.mirror.is_empty(), "{:?}", report.mirror);
    assert!(bk.join("index/indexmap").exists() && bk.join("chaser.chk").exists());
}
