//! Wrong folders never lose data: a backup never reads from or writes into the wrong place
//! (swapped arguments, another database, a non-empty folder or prefix without a backup,
//! overlapping folders), and a restore never writes into a backup location or a folder that is
//! not empty or being restored.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Semaphore;

use esbackup_backends::{open_target, TargetOptions};
use esbackup_engine::testing::{Intercept, Op};
use esbackup_engine::{backup, restore, EngineError, ErrorKind, RestoreOptions, Target};
use esbackup_tests::scenarios::{settled_node, sim_config};
use esbackup_tests::support::{
    assert_same_files, backup_options, check_restored, database_files, files_under,
};

use crate::common::{backed_up, mem, settled, Settled};

fn folder(path: &Path) -> Arc<dyn Target> {
    open_target(&path.display().to_string(), &TargetOptions::default()).unwrap()
}

/// A backup of `db` into the folder `target`, which must be refused as the wrong location:
/// its error.
async fn refused_into_folder(db: &Path, target: &Path) -> EngineError {
    let err = backup(folder(target), &backup_options(db))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongLocation, "{err}");
    err
}

/// A settled node at `dir/src` in a new temporary folder, backed up into the folder `dir/bk`:
/// `(dir, src, bk)`.
async fn backed_up_to_folder() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (src, bk) = (dir.path().join("src"), dir.path().join("bk"));
    settled_node(&src, 3, 20);
    backup(folder(&bk), &backup_options(&src)).await.unwrap();
    (dir, src, bk)
}

#[tokio::test]
async fn swapped_arguments_never_touch_the_live_database() {
    let (_dir, src, bk) = backed_up_to_folder().await;
    let before = files_under(&src);
    // backup --db BK --target SRC
    let err = refused_into_folder(&bk, &src).await;
    assert!(err.to_string().contains("swapped"), "{err}");
    assert_eq!(files_under(&src), before, "the live database is untouched");
}

#[tokio::test]
async fn another_database_folder_is_never_a_target() {
    let (src, other) = (settled(3, 20), settled(4, 20));
    let before = files_under(&other.db);
    let err = refused_into_folder(&src.db, &other.db).await;
    assert!(err.to_string().contains("is a database"), "{err}");
    assert_eq!(
        files_under(&other.db),
        before,
        "the other database is untouched"
    );
}

#[tokio::test]
async fn a_non_empty_folder_or_prefix_without_a_backup_is_refused_before_any_write() {
    let Settled { dir, db: src, .. } = settled(3, 20);
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
    refused_into_folder(&src, &busy).await;
    assert_eq!(files_under(&busy), before, "nothing written or deleted");
    // The same on a bucket prefix that holds another tool's objects.
    let (mem, target) = mem();
    mem.insert("exports/2026-11.csv", b"a,b".to_vec());
    let err = backup(target, &backup_options(&src)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongLocation, "{err}");
    assert_eq!(mem.snapshot().len(), 1);
}

#[tokio::test]
async fn target_and_database_folders_may_not_overlap() {
    let Settled { dir, db: src, .. } = settled(3, 20);
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
async fn restore_never_writes_into_a_backup_location() {
    let (dir, src, bk) = backed_up_to_folder().await;
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
async fn another_database_is_not_mixed_into_a_backup() {
    let (one, two) = (settled(1, 10), settled(2, 10));
    let (young1, young2) = (one.dir.path().join("y1"), one.dir.path().join("y2"));
    for (db, seed) in [(&young1, 1), (&young2, 2)] {
        let mut n = esdb_sim::Node::create(db, sim_config(seed)).unwrap();
        n.append(30).unwrap();
        n.settle().unwrap();
    }
    for (a, b) in [(&one.db, &two.db), (&young1, &young2)] {
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
    let Settled { dir, db, .. } = settled(9, 10);
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
    let fx = backed_up(11, 10).await;
    // The first restore stops at its first chunk download until the gate opens.
    let reached = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::new(Semaphore::new(0));
    let (r, g) = (reached.clone(), gate.clone());
    let paused: Arc<dyn Target> = Arc::new(Intercept::new(
        fx.mem.clone(),
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
    let into = fx.dir.path().join("r");
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
    let err = restore(fx.target, &forced).await.unwrap_err();
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
    assert_same_files(&database_files(&into), &database_files(&fx.db), "restored");
}
