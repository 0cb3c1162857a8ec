//! Bad input never loses data: wrong source paths, non-empty restore folders, locations with no
//! backup, a held lock, a scavenge running during the copy, the secondary index, dry runs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use esbackup_engine::testing::{Intercept, MemoryTarget, Op};
use esbackup_engine::{backup, restore, ErrorKind, RestoreOptions, Target};
use esbackup_tests::scenarios::{settled_node, sim_config};
use esbackup_tests::support::{
    assert_same_files, backup_options, check_restored, database_files, points, restore_and_check,
};

use crate::common::mem;

#[tokio::test]
async fn a_folder_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, target) = mem();
    let missing = backup(target.clone(), &backup_options(&dir.path().join("nope")))
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotADatabase);
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let err = backup(target, &backup_options(dir.path()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no writer.chk"), "{err}");
}

#[tokio::test]
async fn a_source_without_chunks_never_changes_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 5, 20);
    let (mem, target) = mem();
    backup(target.clone(), &backup_options(&db)).await.unwrap();
    let before = mem.snapshot();
    // An unmounted volume: the checkpoints are there, the chunks are not.
    for entry in std::fs::read_dir(&db).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("chunk-")
        {
            std::fs::remove_file(p).unwrap();
        }
    }
    let err = backup(target, &backup_options(&db)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotADatabase, "{err}");
    assert_eq!(mem.snapshot(), before, "the backup is untouched");
}

#[tokio::test]
async fn another_database_is_not_mixed_into_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    settled_node(&one, 1, 10);
    settled_node(&two, 2, 10);
    let (young1, young2) = (dir.path().join("y1"), dir.path().join("y2"));
    for (db, seed) in [(&young1, 1), (&young2, 2)] {
        let mut n = esdb_sim::Node::create(db, sim_config(seed)).unwrap();
        n.append(30).unwrap();
        n.settle().unwrap();
    }
    for (a, b) in [(&one, &two), (&young1, &young2)] {
        let (mem, target) = mem();
        backup(target.clone(), &backup_options(a)).await.unwrap();
        let before = mem.snapshot();
        let err = backup(target, &backup_options(b)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotADatabase, "{err}");
        assert!(err.to_string().contains("another database"), "{err}");
        assert_eq!(mem.snapshot(), before, "nothing of the backup changed");
    }
}

#[tokio::test]
async fn restore_refuses_a_non_empty_folder_and_a_location_without_points() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 9, 10);
    let (_, empty) = mem();
    let err = restore(empty, &RestoreOptions::new(dir.path().join("r0")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoBackup);

    let (_, target) = mem();
    backup(target.clone(), &backup_options(&db)).await.unwrap();
    let busy = dir.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("chunk-000000.000000"), b"old").unwrap();
    std::fs::write(busy.join("keep-me.txt"), b"mine").unwrap();
    let err = restore(target.clone(), &RestoreOptions::new(&busy))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DestinationNotEmpty);
    let mut forced = RestoreOptions::new(&busy);
    forced.force = true;
    restore(target, &forced).await.unwrap();
    assert_eq!(std::fs::read(busy.join("keep-me.txt")).unwrap(), b"mine");
    assert!(
        std::fs::read(busy.join("chunk-000000.000000"))
            .unwrap()
            .len()
            > 3
    );
}

/// Two restores into one folder at once: while the first downloads, a second one, even with
/// `--force` (which would remove the first one's temporary files), is refused with LockHeld
/// and touches nothing; the first one then completes.
#[tokio::test]
async fn a_second_restore_into_a_folder_being_restored_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 11, 10);
    let (store, target) = mem();
    backup(target.clone(), &backup_options(&db)).await.unwrap();
    // The first restore stops at its first chunk download until the gate opens.
    let reached = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::new(Semaphore::new(0));
    let (r, g) = (reached.clone(), gate.clone());
    let paused: Arc<dyn Target> = Arc::new(Intercept::new(
        store,
        Arc::new(move |op| {
            let hold = matches!(op, Op::Get(k, _) if k.starts_with("chunk-"));
            let (r, g) = (r.clone(), g.clone());
            Box::pin(async move {
                if hold {
                    r.notify_one();
                    drop(g.acquire().await.unwrap());
                }
                Ok(())
            })
        }),
    ));
    let into = dir.path().join("r");
    let first = tokio::spawn({
        let opts = RestoreOptions::new(&into);
        async move { restore(paused, &opts).await }
    });
    reached.notified().await;
    let names = |dir: &std::path::Path| -> std::collections::BTreeSet<_> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    };
    let partials = names(&into);
    assert!(!partials.is_empty(), "the first restore has begun writing");

    let mut forced = RestoreOptions::new(&into);
    forced.force = true;
    let err = restore(target, &forced).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockHeld, "{err}");
    assert!(err.to_string().contains("another restore"), "{err}");
    assert!(
        names(&into).is_superset(&partials),
        "the second restore removed none of the first one's files"
    );

    gate.add_permits(Semaphore::MAX_PERMITS);
    first.await.unwrap().unwrap();
    let checked = check_restored(&into, &into.join("index"));
    assert!(checked.is_ok(), "{:?}", checked.violations);
    assert_same_files(&database_files(&into), &database_files(&db), "restored");
}

#[tokio::test]
async fn a_held_lock_stops_a_second_run_until_broken() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 4, 10);
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

#[tokio::test]
async fn a_chunk_vanishing_mid_backup_aborts_with_advice_and_the_earlier_point_restores() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut node = settled_node(&db, 13, 10);
    let store = MemoryTarget::new();
    backup(Arc::new(store.clone()), &backup_options(&db))
        .await
        .unwrap();
    let first = database_files(&db);
    node.append(800).unwrap();
    node.settle().unwrap();
    let mut chunks: Vec<PathBuf> = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("chunk-")
        })
        .collect();
    chunks.sort();
    // The first chunk upload deletes another chunk file, as a scavenge would.
    let victim = chunks[chunks.len() - 2].clone();
    let fired = AtomicBool::new(false);
    let target = Arc::new(Intercept::before(store.clone(), move |op| {
        if matches!(op, Op::Put(k, _) if k.starts_with("chunk-"))
            && !fired.swap(true, Ordering::SeqCst)
        {
            let _ = std::fs::remove_file(&victim);
        }
    }));
    let mut opts = backup_options(&db);
    opts.concurrency = Some(1);
    let err = backup(target, &opts).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourceChanging, "{err}");
    assert!(err.to_string().contains("scavenge"), "{err}");
    let store: Arc<dyn Target> = Arc::new(store);
    assert_eq!(points(&store).await.len(), 1, "no point for the failed run");
    let (restored, checked) = restore_and_check(store, dir.path(), "restored").await;
    assert!(checked.is_ok(), "{:?}", checked.violations);
    assert_same_files(&database_files(&restored), &first, "the earlier point");
}

#[tokio::test]
async fn the_secondary_index_is_copied_only_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 17, 10);
    std::fs::write(db.join("kurrent.ddb"), b"duckdb file").unwrap();
    let (mem, target) = mem();
    let report = backup(target.clone(), &backup_options(&db)).await.unwrap();
    assert!(report.notes.iter().any(|n| n.contains("kurrent.ddb")));
    assert!(mem.snapshot().keys().all(|k| !k.contains("kurrent.ddb")));
    let mut opts = backup_options(&db);
    opts.include_secondary_index = true;
    backup(target.clone(), &opts).await.unwrap();
    assert_eq!(
        &mem.snapshot()["kurrent.ddb"][..],
        b"duckdb file",
        "root mirror"
    );
    let dest = dir.path().join("restored");
    restore(target, &RestoreOptions::new(&dest)).await.unwrap();
    assert_eq!(
        std::fs::read(dest.join("kurrent.ddb")).unwrap(),
        b"duckdb file"
    );
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_reports_what_a_run_would_do() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 19, 10);
    let (mem, target) = mem();
    let mut dry = backup_options(&db);
    dry.dry_run = true;
    let planned = backup(target.clone(), &dry).await.unwrap();
    assert!(mem.snapshot().is_empty(), "nothing written");
    assert!(planned.point.is_none());
    let real = backup(target.clone(), &backup_options(&db)).await.unwrap();
    assert_eq!(planned.stored_keys, real.stored_keys);
    assert_eq!(planned.stored, real.stored);
    let before = mem.snapshot();
    let again = backup(target, &dry).await.unwrap();
    assert_eq!(again.stored.files, 0);
    assert_eq!(mem.snapshot(), before);
}

/// Temp files and sockets are not backed up; every other file of the folders is (an operator's
/// notes, the `.forceverify` marker), even if the engine does not know it.
#[tokio::test]
async fn temp_files_and_sockets_are_not_backed_up_but_other_files_are() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 21, 10);
    let _socket = std::os::unix::net::UnixListener::bind(db.join("kurrent.sock")).unwrap();
    std::fs::write(db.join("chunk-000009.000000.0f1e.tmp"), b"preallocating").unwrap();
    std::fs::write(db.join("abc.scavenge.tmp"), b"scavenge output").unwrap();
    std::fs::write(db.join("notes.txt"), b"operator notes").unwrap();
    std::fs::write(db.join("index").join(".forceverify"), b"").unwrap();
    let (mem, target) = mem();
    let report = backup(target, &backup_options(&db)).await.unwrap();
    for key in mem.snapshot().keys() {
        assert!(
            !(key.ends_with(".tmp") || key.ends_with(".sock")),
            "{key} should not be in the backup"
        );
    }
    for key in ["notes.txt", "index/.forceverify"] {
        assert!(report.stored_keys.iter().any(|k| k == key), "{key} stored");
        assert!(mem.snapshot().contains_key(key), "{key} in the root mirror");
    }
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
}

#[tokio::test]
async fn a_full_backup_stores_everything_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 27, 30);
    let (_, target) = mem();
    let first = backup(target.clone(), &backup_options(&db)).await.unwrap();
    let mut full = backup_options(&db);
    full.full = true;
    let again = backup(target.clone(), &full).await.unwrap();
    assert!(again.full);
    let uploaded = |keys: &[String]| -> Vec<String> {
        keys.iter()
            .filter(|k| !k.ends_with(".chk") && !k.ends_with("indexmap"))
            .cloned()
            .collect()
    };
    assert_eq!(uploaded(&again.stored_keys), uploaded(&first.stored_keys));
    let (restored, checked) = restore_and_check(target, dir.path(), "restored").await;
    assert!(checked.is_ok(), "{:?}", checked.violations);
    assert_same_files(&database_files(&restored), &database_files(&db), "full");
}

#[tokio::test]
async fn an_index_outside_the_db_folder_is_backed_up_and_restored_there() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let index = dir.path().join("idx");
    let mut node = esdb_sim::Node::create(
        &db,
        esdb_sim::SimConfig {
            index_dir: Some(index.clone()),
            ..sim_config(31)
        },
    )
    .unwrap();
    node.append(1200).unwrap();
    node.settle().unwrap();
    let (mem, target) = mem();
    let mut opts = backup_options(&db);
    opts.index = Some(index.clone());
    backup(target.clone(), &opts).await.unwrap();
    assert!(mem.snapshot().contains_key("index/indexmap"), "root mirror");
    let (rdb, ridx) = (dir.path().join("rdb"), dir.path().join("ridx"));
    let mut ropts = RestoreOptions::new(&rdb);
    ropts.index = Some(ridx.clone());
    restore(target, &ropts).await.unwrap();
    assert_eq!(
        std::fs::read(ridx.join("indexmap")).unwrap(),
        std::fs::read(index.join("indexmap")).unwrap()
    );
    let checked = check_restored(&rdb, &ridx);
    assert!(checked.is_ok(), "{:?}", checked.violations);
}
