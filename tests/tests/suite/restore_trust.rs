//! Restore and verify trust only what a completed point records: a missing object fails the
//! restore (or the verify) naming it, stray objects are never restored or vouched for, and a
//! backup running meanwhile is invisible until its point is complete.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use esbackup_engine::testing::{Intercept, MemoryTarget};
use esbackup_engine::{
    backup, restore, verify, ErrorKind, RestoreOptions, Target, VerifyOptions, Which,
};
use esbackup_tests::support::{
    assert_restores_to, assert_same_files, backup_options, database_files, files_under,
    latest_point, verify_read_data,
};

use crate::common::{backed_up, settled, BackedUp, Settled};

#[tokio::test]
async fn restore_fails_naming_any_missing_object_and_leaves_no_database() {
    let BackedUp { dir, mem, .. } = backed_up(6, 60).await;
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

#[tokio::test]
async fn verify_of_a_point_missing_an_object_names_it() {
    let fx = backed_up(19, 30).await;
    let point = latest_point(&fx.target).await;
    let table = point
        .files
        .keys()
        .find(|k| k.starts_with("index/") && k.len() == 42)
        .unwrap()
        .clone();
    fx.mem.remove(&table);
    let v = verify(fx.target, &VerifyOptions::default()).await.unwrap();
    assert!(!v.is_ok());
    assert!(
        v.problems()
            .iter()
            .any(|p| p.contains(&table) && p.contains("missing")),
        "{:?}",
        v.problems()
    );
}

#[tokio::test]
async fn stray_objects_are_never_restored_or_vouched_for() {
    let fx = backed_up(10, 60).await;
    let (mem, target) = (&fx.mem, fx.target.clone());
    let source = database_files(&fx.db);
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
    let (scratch, what) = (fx.dir.path(), "strays ignored");
    assert_restores_to(
        target.clone(),
        Which::Latest,
        scratch,
        "restored",
        &source,
        what,
    )
    .await;
    let v = verify_read_data(target).await;
    assert!(v.is_ok(), "{:?}", v.problems());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_during_a_backup_give_exactly_a_completed_point() {
    let Settled { dir, db, mut node } = settled(8, 40);
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
