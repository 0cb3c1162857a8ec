//! What a backup copies: everything of the database folders but temp files and sockets, the
//! secondary index only on request, an index outside the db folder where it is; a full backup
//! stores everything again; a dry run changes nothing.

use esbackup_engine::{backup, restore, RestoreOptions};
use esbackup_tests::scenarios::sim_config;
use esbackup_tests::support::{
    assert_same_files, backup_options, check_restored, database_files, restore_and_check,
};

use crate::common::{mem, settled, Settled};

#[tokio::test]
async fn the_secondary_index_is_copied_only_on_request() {
    let Settled { dir, db, .. } = settled(17, 10);
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
    let Settled { dir: _dir, db, .. } = settled(19, 10);
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
    let Settled { dir: _dir, db, .. } = settled(21, 10);
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
    let Settled { dir, db, .. } = settled(27, 30);
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
