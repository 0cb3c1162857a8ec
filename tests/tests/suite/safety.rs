//! Regression tests of the hostile-user review (issue 6): a backup tool must never destroy a
//! database or restore a wrong one. One test (or more) per finding, by item number.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use esbackup_backends::{open_target, TargetOptions};
use esbackup_engine::testing::{Intercept, MemoryTarget, Op};
use esbackup_engine::{
    backup, restore, status, verify, ErrorKind, RestoreOptions, Target, VerifyOptions,
};
use esbackup_tests::scenarios::settled_node;
use esbackup_tests::support::{
    assert_same_files, backup_options, copy_dir, database_files, files_under, latest_point, points,
    restore_and_check, verify_read_data,
};

use crate::common::mem;

fn folder(path: &Path) -> Arc<dyn Target> {
    open_target(&path.display().to_string(), &TargetOptions::default()).unwrap()
}

// 1. Wrong folders -----------------------------------------------------------------------------

#[tokio::test]
async fn item1_swapped_arguments_never_touch_the_live_database() {
    let dir = tempfile::tempdir().unwrap();
    let (src, bk) = (dir.path().join("src"), dir.path().join("bk"));
    settled_node(&src, 3, 20);
    backup(folder(&bk), &backup_options(&src)).await.unwrap();
    let before = files_under(&src);
    // backup --db BK --target SRC
    let err = backup(folder(&src), &backup_options(&bk))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongLocation, "{err}");
    assert!(err.to_string().contains("swapped"), "{err}");
    assert_eq!(files_under(&src), before, "the live database is untouched");
}

#[tokio::test]
async fn item1_another_database_folder_is_never_a_target() {
    let dir = tempfile::tempdir().unwrap();
    let (src, other) = (dir.path().join("src"), dir.path().join("other"));
    settled_node(&src, 3, 20);
    settled_node(&other, 4, 20);
    let before = files_under(&other);
    let err = backup(folder(&other), &backup_options(&src))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongLocation, "{err}");
    assert!(err.to_string().contains("is a database"), "{err}");
    assert_eq!(
        files_under(&other),
        before,
        "the other database is untouched"
    );
}

#[tokio::test]
async fn item1_a_non_empty_folder_or_prefix_without_a_backup_is_refused_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    settled_node(&src, 3, 20);
    let busy = dir.path().join("busy");
    std::fs::create_dir_all(busy.join("index")).unwrap();
    for name in [
        "chunk-000000.000000",
        "index/5a1a8395-94ee-40c1-bf93-aa757b5887f8",
        "report.pdf",
    ] {
        std::fs::write(busy.join(name), b"precious").unwrap();
    }
    let before = files_under(&busy);
    let err = backup(folder(&busy), &backup_options(&src))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongLocation, "{err}");
    assert_eq!(files_under(&busy), before, "nothing written or deleted");
    // The same on a bucket prefix that holds another tool's objects.
    let (mem, target) = mem();
    mem.insert("exports/2026-11.csv", b"a,b".to_vec());
    let err = backup(target, &backup_options(&src)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongLocation, "{err}");
    assert_eq!(mem.snapshot().len(), 1);
}

#[tokio::test]
async fn item1_target_and_database_folders_may_not_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    settled_node(&src, 3, 20);
    let before = files_under(&src);
    for target in [
        src.clone(),
        src.join("backup"),
        src.join("index"),
        dir.path().to_path_buf(),
    ] {
        let err = backup(folder(&target), &backup_options(&src))
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::WrongLocation,
            "{}: {err}",
            target.display()
        );
    }
    assert_eq!(files_under(&src), before);
}

#[tokio::test]
async fn item1_restore_never_writes_into_a_backup_location() {
    let dir = tempfile::tempdir().unwrap();
    let (src, bk) = (dir.path().join("src"), dir.path().join("bk"));
    settled_node(&src, 3, 20);
    backup(folder(&bk), &backup_options(&src)).await.unwrap();
    let before = files_under(&bk);
    // restore --target BK --db BK --force
    let mut opts = RestoreOptions::new(&bk);
    opts.force = true;
    let err = restore(folder(&bk), &opts).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongLocation, "{err}");
    // restore --target BK --db OTHER_BACKUP --force
    let other = dir.path().join("other-bk");
    backup(folder(&other), &backup_options(&src)).await.unwrap();
    let other_before = files_under(&other);
    let mut opts = RestoreOptions::new(&other);
    opts.force = true;
    let err = restore(folder(&bk), &opts).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongLocation, "{err}");
    assert_eq!(files_under(&bk), before);
    assert_eq!(files_under(&other), other_before);
}

// 2. Missing objects make restore fail, naming them -------------------------------------------

#[tokio::test]
async fn item2_restore_fails_naming_any_missing_object_and_leaves_no_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 6, 60);
    let (mem, target) = mem();
    backup(target.clone(), &backup_options(&db)).await.unwrap();
    let objects = mem.snapshot();
    let mut chunks: Vec<&String> = objects
        .keys()
        .filter(|k| k.starts_with("chunk-") || k.starts_with(".esbackup/active/"))
        .collect();
    chunks.sort();
    let table = objects
        .keys()
        .find(|k| k.starts_with("index/") && k.len() == 42)
        .expect("a table");
    let victims = [
        chunks[0],
        chunks[chunks.len() / 2],
        chunks[chunks.len() - 1],
        table,
    ];
    for (i, victim) in victims.iter().enumerate() {
        let damaged = mem.deep_clone();
        damaged.remove(victim);
        let dest = dir.path().join(format!("r{i}"));
        let err = restore(Arc::new(damaged), &RestoreOptions::new(&dest))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Damaged, "{victim}: {err}");
        assert!(err.to_string().contains(victim.as_str()), "{err}");
        let left = if dest.exists() {
            files_under(&dest)
        } else {
            BTreeMap::new()
        };
        assert!(
            !left
                .keys()
                .any(|k| k.ends_with(".chk") || k.starts_with("chunk-")),
            "a failed restore left database files: {:?}",
            left.keys()
        );
    }
}

// 3. Restore, verify and status while a backup runs ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_restores_during_a_backup_give_exactly_a_completed_point() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut node = settled_node(&db, 8, 40);
    let store = MemoryTarget::new();
    let slow: Arc<dyn Target> = Arc::new(Intercept::slow(store.clone(), Duration::from_millis(15)));
    backup(slow.clone(), &backup_options(&db)).await.unwrap();
    let old = database_files(&db);
    node.append(600).unwrap();
    for _ in 0..40 {
        node.step().unwrap();
    }
    node.settle().unwrap();
    let new = database_files(&db);
    let opts = backup_options(&db);
    let running = tokio::spawn({
        let slow = slow.clone();
        async move { backup(slow, &opts).await }
    });
    let reader: Arc<dyn Target> = Arc::new(store.clone());
    let mut seen = (0, 0);
    for i in 0.. {
        let dest = dir.path().join(format!("r{i}"));
        restore(reader.clone(), &RestoreOptions::new(&dest))
            .await
            .unwrap();
        let got = database_files(&dest);
        if got == old {
            seen.0 += 1;
        } else {
            assert_same_files(&got, &new, &format!("restore {i} during the backup"));
            seen.1 += 1;
        }
        let v = verify(reader.clone(), &VerifyOptions::default())
            .await
            .unwrap();
        assert!(v.is_ok(), "verify during a backup: {:?}", v.problems());
        if running.is_finished() {
            assert!(v.running.is_none() || seen.1 > 0);
            break;
        }
        assert!(v
            .running
            .as_deref()
            .unwrap_or("a backup is running")
            .contains("running"));
        std::fs::remove_dir_all(&dest).unwrap();
    }
    running.await.unwrap().unwrap();
    assert!(seen.0 > 0, "some restores overlapped the backup");
}

// 4. Stray files in the location are never used ------------------------------------------------

#[tokio::test]
async fn item4_stray_objects_are_never_restored_or_vouched_for() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 10, 60);
    let (mem, target) = mem();
    backup(target.clone(), &backup_options(&db)).await.unwrap();
    let source = database_files(&db);
    let any_chunk = mem
        .snapshot()
        .keys()
        .find(|k| k.starts_with("chunk-"))
        .unwrap()
        .clone();
    let bytes = mem.snapshot()[&any_chunk].clone();
    mem.insert("chunk-000002.000009", bytes);
    mem.insert("chunk-000001.000005", vec![7u8; 12288]);
    mem.insert("index/scavenging/scavenging.db-wal", b"garbage".to_vec());
    mem.insert("index/indexmap", b"stale".to_vec());
    let (restored, checked) = restore_and_check(target.clone(), dir.path(), "restored").await;
    assert!(checked.is_ok(), "{:?}", checked.violations);
    assert_same_files(&database_files(&restored), &source, "strays ignored");
    let v = verify_read_data(target).await;
    assert!(v.is_ok(), "{:?}", v.problems());
}

// 5. A run whose lock was taken over writes nothing more --------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item5_a_run_that_lost_its_lock_writes_no_point_over_the_winner() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut node = settled_node(&db, 29, 10);
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

// 6. A corrupt source chunk is never backed up as good -----------------------------------------

#[tokio::test]
async fn item6_a_damaged_completed_chunk_stops_the_run_and_the_last_good_copy_stays() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 12, 30);
    let good = dir.path().join("good");
    copy_dir(&db, &good);
    for (case, damage) in [("flipped", 0usize), ("truncated", 1)] {
        let work = dir.path().join(case);
        copy_dir(&good, &work);
        let (mem, target) = mem();
        backup(target.clone(), &backup_options(&work))
            .await
            .unwrap();
        let before = mem.snapshot();
        let chunk = work.join("chunk-000000.000000");
        let mut perm = std::fs::metadata(&chunk).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(&chunk, perm).unwrap();
        let mut bytes = std::fs::read(&chunk).unwrap();
        if damage == 0 {
            bytes[300] ^= 0x01;
        } else {
            bytes.truncate(bytes.len() - 4096);
        }
        std::fs::write(&chunk, bytes).unwrap();
        // Make the run store the chunk again (as a first run into a fresh location would).
        let (fresh_mem, fresh) = self::mem();
        let err = backup(fresh, &backup_options(&work)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotADatabase, "{case}: {err}");
        assert!(
            err.to_string().contains("chunk-000000.000000"),
            "{case}: {err}"
        );
        assert!(err.to_string().contains("damaged"), "{case}: {err}");
        assert!(
            !fresh_mem
                .snapshot()
                .keys()
                .any(|k| k.starts_with(".esbackup/points/")),
            "{case}: no point recorded"
        );
        let mut full = backup_options(&work);
        full.full = true;
        let err = backup(target.clone(), &full).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotADatabase, "{case}: {err}");
        let after = mem.snapshot();
        for (k, v) in &before {
            if !k.starts_with(".esbackup/locks/") {
                assert_eq!(after.get(k), Some(v), "{case}: {k} changed");
            }
        }
        let (restored, checked) = restore_and_check(target, dir.path(), &format!("r-{case}")).await;
        assert!(checked.is_ok(), "{:?}", checked.violations);
        assert_same_files(&database_files(&restored), &database_files(&good), case);
    }
}

// 8. Messages and exit codes ------------------------------------------------------------------

#[tokio::test]
async fn item8_a_damaged_indexmap_is_a_damaged_index_not_a_merging_node() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 14, 30);
    let map_path = db.join("index").join("indexmap");
    let good = std::fs::read(&map_path).unwrap();
    let mut bad_md5 = good.clone();
    bad_md5[0] = if bad_md5[0] == b'0' { b'1' } else { b'0' };
    std::fs::write(&map_path, &bad_md5).unwrap();
    let started = std::time::Instant::now();
    let err = backup(mem().1, &backup_options(&db)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotADatabase, "{err}");
    assert!(err.to_string().contains("MD5"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A map naming a table that is not there.
    let map = esbackup_engine::format::indexmap::IndexMap::parse(&good).unwrap();
    let mut missing = map.clone();
    missing.tables[0].file = "0d8b5c6e-2f1e-4e0f-9a57-6b1d7f0c9e21".into();
    std::fs::write(&map_path, missing.encode()).unwrap();
    let err = backup(mem().1, &backup_options(&db)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotADatabase, "{err}");
    assert!(
        err.to_string()
            .contains("0d8b5c6e-2f1e-4e0f-9a57-6b1d7f0c9e21"),
        "{err}"
    );
}

#[tokio::test]
async fn item8_a_dangling_symlink_named_like_a_chunk_is_damage_not_a_scavenge() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 15, 30);
    std::os::unix::fs::symlink(dir.path().join("gone"), db.join("chunk-000099.000000")).unwrap();
    let err = backup(mem().1, &backup_options(&db)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotADatabase, "{err}");
    assert!(err.to_string().contains("symlink"), "{err}");
}

#[tokio::test]
async fn item8_a_refused_source_writes_nothing_to_the_location() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 16, 30);
    let (mem, target) = mem();
    backup(target.clone(), &backup_options(&db)).await.unwrap();
    let before = mem.snapshot();
    for (name, bytes) in [
        ("writer.chk", vec![1u8, 2, 3]),
        ("writer.chk", i64::MAX.to_le_bytes().to_vec()),
        ("chaser.chk", (1i64 << 40).to_le_bytes().to_vec()),
    ] {
        let saved = std::fs::read(db.join(name)).unwrap();
        std::fs::write(db.join(name), &bytes).unwrap();
        let err = backup(target.clone(), &backup_options(&db))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotADatabase, "{name}: {err}");
        std::fs::write(db.join(name), saved).unwrap();
        assert_eq!(mem.snapshot(), before, "{name}: the location is unchanged");
        let v = verify(target.clone(), &VerifyOptions::default())
            .await
            .unwrap();
        assert!(v.is_ok());
    }
}

#[tokio::test]
async fn item8_status_says_when_a_lock_holder_is_gone() {
    let (mem, target) = mem();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 18, 10);
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
async fn item8_verify_of_a_point_missing_an_object_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 19, 30);
    let (mem, target) = mem();
    backup(target.clone(), &backup_options(&db)).await.unwrap();
    let point = latest_point(&target).await;
    let table = point
        .files
        .keys()
        .find(|k| k.starts_with("index/") && k.len() == 42)
        .unwrap()
        .clone();
    mem.remove(&table);
    let v = verify(target, &VerifyOptions::default()).await.unwrap();
    assert!(!v.is_ok());
    assert!(
        v.problems()
            .iter()
            .any(|p| p.contains(&table) && p.contains("missing")),
        "{:?}",
        v.problems()
    );
}
