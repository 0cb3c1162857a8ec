//! The SQLite backend against every promise of esbackup's conformance kit.

use std::sync::Arc;

use esbackup_engine::conformance::{ConformanceOptions, Kit};
use esbackup_engine::Target;
use sqlite_objects::SqliteTarget;

/// The kit for this store: `put_if_absent` must work; a second handle on the same file must
/// see every write that returned.
fn kit(path: std::path::PathBuf) -> Kit {
    Kit::new()
        .requires_put_if_absent()
        .reopen(move || Arc::new(SqliteTarget::open(&path).unwrap()) as Arc<dyn Target>)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_target_keeps_every_promise() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backup.sqlite");
    let target = SqliteTarget::open(&path).unwrap();
    let report = kit(path)
        .run(&target)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.skipped.is_empty(), "{report}");
    println!("{report}");
    // Nothing is left behind: no object, no unpublished body.
    assert!(target.list("").await.unwrap().is_empty());
    assert_eq!(target.incomplete_uploads().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_its_promises_under_many_replacements_of_multi_piece_objects() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backup.sqlite");
    let target = SqliteTarget::open(&path).unwrap();
    let sizes = ConformanceOptions {
        large_size: 3_000_001,
        overwrite_size: 2_500_000, // three pieces: readers stream several rows
        overwrite_rounds: 12,
    };
    let kit = kit(path).with_sizes(sizes).without_large_listing();
    kit.run(&target).await.unwrap_or_else(|e| panic!("{e}"));
}
