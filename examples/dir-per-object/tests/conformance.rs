//! The example backend against every promise of esbackup's conformance kit.

use std::sync::Arc;

use dir_per_object::DirPerObjectTarget;
use esbackup_engine::conformance::{ConformanceOptions, Kit};
use esbackup_engine::Target;

/// The kit for this store: `put_if_absent` must work; a second handle on the same folder must
/// see every write that returned.
fn kit(root: std::path::PathBuf) -> Kit {
    Kit::new()
        .requires_put_if_absent()
        .reopen(move || Arc::new(DirPerObjectTarget::open(&root).unwrap()) as Arc<dyn Target>)
}

#[tokio::test]
async fn dir_per_object_target_keeps_every_promise() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backup");
    let target = DirPerObjectTarget::open(&root).unwrap();
    let report = kit(root)
        .run(&target)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.put_if_absent_supported, "{report}");
    assert!(report.skipped.is_empty(), "{report}");
    println!("{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_its_promises_under_many_overwrites_on_a_threaded_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let target = DirPerObjectTarget::open(dir.path()).unwrap();
    let sizes = ConformanceOptions {
        large_size: 3_000_001,
        overwrite_size: 300_000,
        overwrite_rounds: 20,
    };
    let kit = kit(dir.path().to_path_buf())
        .with_sizes(sizes)
        .without_large_listing();
    kit.run(&target).await.unwrap_or_else(|e| panic!("{e}"));
    // Nothing is left behind: no object, no version folder.
    for sub in ["objects", "versions"] {
        let left: Vec<_> = std::fs::read_dir(dir.path().join(sub)).unwrap().collect();
        assert!(left.is_empty(), "{sub}: {left:?}");
    }
}

#[tokio::test]
async fn the_leftovers_of_a_killed_write_are_counted_and_removed_but_published_objects_stay() {
    use bytes::Bytes;
    use esbackup_engine::{get_bytes, Upload};
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let target = DirPerObjectTarget::open(dir.path()).unwrap();
    target
        .put("index/indexmap", Upload::bytes(Bytes::from_static(b"map")))
        .await
        .unwrap();
    assert_eq!(target.incomplete_uploads().await.unwrap(), 0);
    // What a write killed before its publish leaves: a version folder and a temporary link.
    std::fs::create_dir(dir.path().join("versions/v-killed")).unwrap();
    std::fs::write(dir.path().join("versions/v-killed/data"), b"half").unwrap();
    std::os::unix::fs::symlink(
        "../versions/v-killed",
        dir.path().join("objects/.tmp-killed"),
    )
    .unwrap();
    assert_eq!(target.incomplete_uploads().await.unwrap(), 2);
    // Younger than asked: kept (a running write's).
    let hour = Duration::from_secs(3600);
    assert_eq!(target.abort_stale_uploads(hour).await.unwrap(), 0);
    assert_eq!(target.abort_stale_uploads(Duration::ZERO).await.unwrap(), 2);
    assert_eq!(target.incomplete_uploads().await.unwrap(), 0);
    let kept = get_bytes(&target, "index/indexmap").await.unwrap();
    assert_eq!(&kept[..], b"map");
}
