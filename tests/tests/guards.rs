//! Bad input never loses data: wrong source paths, non-empty restore folders, locations with no
//! completed run, a held lock, a scavenge running during the copy, the secondary index, dry runs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use esbackup_engine::testing::MemoryTarget;
use esbackup_engine::{backup, restore, EngineError, RestoreOptions, Target};
use esbackup_tests::scenarios::settled_node;
use esbackup_tests::support::{backup_contents, backup_options, restore_and_check, OnPut};

fn mem() -> (MemoryTarget, Arc<dyn Target>) {
    let m = MemoryTarget::new();
    (m.clone(), Arc::new(m))
}

#[tokio::test]
async fn a_folder_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, target) = mem();
    let missing = backup(target.clone(), &backup_options(&dir.path().join("nope")))
        .await
        .unwrap_err();
    assert!(matches!(missing, EngineError::NotADatabase(_)));
    assert_eq!(missing.exit_code(), 3);
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let err = backup(target, &backup_options(dir.path()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no writer.chk"), "{err}");
}

#[tokio::test]
async fn a_source_without_chunks_never_prunes_the_backup() {
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
    assert!(matches!(err, EngineError::NotADatabase(_)), "{err}");
    assert_eq!(mem.snapshot(), before, "the backup is untouched");
}

#[tokio::test]
async fn another_database_is_not_mixed_into_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    settled_node(&one, 1, 10);
    settled_node(&two, 2, 10);
    let (mem, target) = mem();
    backup(target.clone(), &backup_options(&one)).await.unwrap();
    let before = mem.snapshot();
    let err = backup(target, &backup_options(&two)).await.unwrap_err();
    assert!(err.to_string().contains("another database"), "{err}");
    let after = mem.snapshot();
    let data = |m: &std::collections::BTreeMap<String, Bytes>| {
        m.iter()
            .filter(|(k, _)| !k.starts_with(".esbackup"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(data(&after), data(&before), "no file of the backup changed");
}

#[tokio::test]
async fn restore_refuses_a_non_empty_folder_and_a_location_without_a_completed_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 9, 10);
    let (_, empty) = mem();
    let err = restore(empty, &RestoreOptions::new(dir.path().join("r0")))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::NoBackup(_)));
    assert_eq!(err.exit_code(), 8);

    let (_, target) = mem();
    backup(target.clone(), &backup_options(&db)).await.unwrap();
    let busy = dir.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("chunk-000000.000000"), b"old").unwrap();
    std::fs::write(busy.join("keep-me.txt"), b"mine").unwrap();
    let err = restore(target.clone(), &RestoreOptions::new(&busy))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::DestinationNotEmpty(_)));
    assert_eq!(err.exit_code(), 9);
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
    assert!(matches!(err, EngineError::LockHeld(_)), "{err}");
    assert_eq!(err.exit_code(), 4);
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
async fn a_chunk_vanishing_mid_backup_aborts_with_advice_and_stays_restorable() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut node = settled_node(&db, 13, 10);
    let mem = MemoryTarget::new();
    backup(Arc::new(mem.clone()), &backup_options(&db))
        .await
        .unwrap();
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
    // The first chunk upload deletes the newest chunk file, as a scavenge would.
    let victim = chunks[chunks.len() - 1].clone();
    let fired = AtomicBool::new(false);
    let target = Arc::new(OnPut {
        inner: mem.clone(),
        hook: Box::new(move |key| {
            if key.starts_with("chunk-") && !fired.swap(true, Ordering::SeqCst) {
                let _ = std::fs::remove_file(&victim);
            }
        }),
    });
    let mut opts = backup_options(&db);
    opts.concurrency = 1;
    let err = backup(target, &opts).await.unwrap_err();
    assert!(matches!(err, EngineError::SourceChanging(_)), "{err}");
    assert!(err.to_string().contains("scavenge"), "{err}");
    assert_eq!(err.exit_code(), 6);
    let (_, checked) = restore_and_check(Arc::new(mem), dir.path(), "restored").await;
    assert!(checked.is_ok(), "{:?}", checked.violations);
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
    assert!(mem.snapshot().keys().all(|k| !k.starts_with("kurrent.ddb")));
    let mut opts = backup_options(&db);
    opts.include_secondary_index = true;
    backup(target, &opts).await.unwrap();
    assert_eq!(&mem.snapshot()["kurrent.ddb"][..], b"duckdb file");
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
    let real = backup(target.clone(), &backup_options(&db)).await.unwrap();
    assert_eq!(planned.uploaded_keys, real.uploaded_keys);
    assert!(!backup_contents(target.as_ref()).await.is_empty());
}

#[tokio::test]
async fn temp_files_sockets_and_foreign_files_are_not_backed_up() {
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
    assert!(report.completed);
    for key in mem.snapshot().keys() {
        assert!(
            !(key.ends_with(".tmp")
                || key.ends_with(".sock")
                || key.ends_with("notes.txt")
                || key.ends_with(".forceverify")),
            "{key} should not be in the backup"
        );
    }
}

#[tokio::test]
async fn a_leftover_old_copy_stands_in_for_its_missing_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 25, 10);
    let (mem, target) = mem();
    backup(target.clone(), &backup_options(&db)).await.unwrap();
    // As a run following the vendor procedure literally (rename to .old, copy again) leaves it
    // when it dies between the rename and the copy.
    let last = mem
        .snapshot()
        .keys()
        .filter(|k| k.starts_with("chunk-"))
        .max()
        .unwrap()
        .clone();
    let bytes = mem.remove(&last).unwrap();
    mem.insert(&format!("{last}.old"), bytes);
    let mut opts = RestoreOptions::new(dir.path().join("restored"));
    opts.allow_incomplete = true;
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&mem.snapshot()[".esbackup/manifest.json"]).unwrap();
    manifest["state"] = "running".into();
    mem.insert(
        ".esbackup/manifest.json",
        serde_json::to_vec(&manifest).unwrap(),
    );
    let report = restore(target, &opts).await.unwrap();
    assert_eq!(report.from_old, vec![format!("{last}.old")]);
    let restored = std::fs::read(dir.path().join("restored").join(&last)).unwrap();
    assert_eq!(restored, std::fs::read(db.join(&last)).unwrap());
}

#[tokio::test]
async fn a_full_backup_copies_everything_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 27, 30);
    let (_, target) = mem();
    let first = backup(target.clone(), &backup_options(&db)).await.unwrap();
    let mut full = backup_options(&db);
    full.full = true;
    let again = backup(target.clone(), &full).await.unwrap();
    assert!(again.full);
    assert_eq!(again.uploaded_keys, first.uploaded_keys);
    assert_eq!(again.skipped.files, 0);
    let (_, checked) = restore_and_check(target, dir.path(), "restored").await;
    assert!(checked.is_ok(), "{:?}", checked.violations);
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
            ..esbackup_tests::scenarios::sim_config(31)
        },
    )
    .unwrap();
    node.append(1200).unwrap();
    node.settle().unwrap();
    let (mem, target) = mem();
    let mut opts = backup_options(&db);
    opts.index = Some(index.clone());
    backup(target.clone(), &opts).await.unwrap();
    assert!(mem.snapshot().contains_key("index/indexmap"));
    let (rdb, ridx) = (dir.path().join("rdb"), dir.path().join("ridx"));
    let mut ropts = RestoreOptions::new(&rdb);
    ropts.index = Some(ridx.clone());
    restore(target, &ropts).await.unwrap();
    assert_eq!(
        std::fs::read(ridx.join("indexmap")).unwrap(),
        std::fs::read(index.join("indexmap")).unwrap()
    );
    let checked = esdb_sim::check(
        &rdb,
        &ridx,
        &esdb_sim::CheckOptions {
            archive: false,
            expect_truncate_equals_chaser: true,
        },
    );
    assert!(checked.is_ok(), "{:?}", checked.violations);
}

#[tokio::test]
async fn a_run_whose_lock_was_taken_over_does_not_report_success() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 29, 10);
    let mem = MemoryTarget::new();
    // Another host breaks the lock while the first chunk is uploaded.
    let store = mem.clone();
    let fired = AtomicBool::new(false);
    let thief = Arc::new(OnPut {
        inner: mem.clone(),
        hook: Box::new(move |key| {
            if key.starts_with("chunk-") && !fired.swap(true, Ordering::SeqCst) {
                for lock in store
                    .snapshot()
                    .keys()
                    .filter(|k| k.starts_with(".esbackup/locks/"))
                {
                    store.remove(lock);
                }
            }
        }),
    });
    let err = backup(thief, &backup_options(&db)).await.unwrap_err();
    assert!(matches!(err, EngineError::LockHeld(_)), "{err}");
    assert!(err.to_string().contains("removed by another run"), "{err}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&mem.snapshot()[".esbackup/manifest.json"]).unwrap();
    assert_ne!(manifest["state"], "completed");
}
