//! The example backend against esbackup's Target conformance suite.

use dir_per_object::DirPerObjectTarget;
use esbackup_engine::conformance::{run_conformance, run_conformance_with, ConformanceOptions};

#[tokio::test]
async fn dir_per_object_target_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let target = DirPerObjectTarget::open(dir.path().join("backup")).unwrap();
    let report = run_conformance(&target).await.unwrap();
    assert!(report.put_if_absent_supported, "{report}");
    println!("{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_with_many_overwrites_on_a_threaded_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let target = DirPerObjectTarget::open(dir.path()).unwrap();
    let sizes = ConformanceOptions {
        large_size: 3_000_001,
        overwrite_size: 300_000,
        overwrite_rounds: 20,
    };
    run_conformance_with(&target, &sizes).await.unwrap();
    // Nothing is left behind: no object, no version folder.
    for sub in ["objects", "versions"] {
        let left: Vec<_> = std::fs::read_dir(dir.path().join(sub)).unwrap().collect();
        assert!(left.is_empty(), "{sub}: {left:?}");
    }
}
