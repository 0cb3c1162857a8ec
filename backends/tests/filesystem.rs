//! The filesystem target against the conformance suite, and its on-disk layout.

use bytes::Bytes;
use esbackup_backends::{open_target, TargetOptions};
use esbackup_engine::conformance::{ConformanceOptions, Kit};
use esbackup_engine::get_bytes;
use esbackup_engine::testing::listed_keys;
use esbackup_engine::{Target, TargetErrorKind, Upload};

#[tokio::test]
async fn filesystem_target_passes_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let target = open_target(dir.path().to_str().unwrap(), &TargetOptions::default()).unwrap();
    let report = Kit::new().run(target.as_ref()).await.unwrap();
    assert!(report.put_if_absent_supported, "{report}");
    // Everything the suite wrote is gone, folders included.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// The folder target writes each file in one native pass: the clouds' upload options are
/// accepted and change nothing (multipart uploads are checked on the cloud stores, in
/// `cloud_uploads.rs`).
#[tokio::test]
async fn a_file_url_to_a_missing_folder_passes_conformance_whatever_the_part_options() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("created/on/open").display());
    let opts = TargetOptions {
        part_size: Some(esbackup_backends::ByteSize(64 * 1024)),
        concurrency: Some(3),
        ..Default::default()
    };
    let target = open_target(&url, &opts).unwrap();
    let sizes = ConformanceOptions {
        large_size: 1_000_003,
        overwrite_size: 200_000,
        overwrite_rounds: 6,
    };
    Kit::new()
        .with_sizes(sizes)
        .run(target.as_ref())
        .await
        .unwrap();
}

#[tokio::test]
async fn keys_are_plain_files_under_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backup");
    let target = open_target(root.to_str().unwrap(), &TargetOptions::default()).unwrap();
    for key in [
        "chunk-000001.000000",
        "index/indexmap",
        ".esbackup/manifest.json",
        "odd name, ünïcode %41 (#1)",
    ] {
        target
            .put(key, Upload::bytes(Bytes::from(key.to_string())))
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(root.join(key)).unwrap(), key);
        // Named for kernel copies on restore, also through a wrapper that must forward it.
        let wrapped = esbackup_engine::RetryTarget::new(target.clone(), Default::default());
        for t in [target.as_ref(), &wrapped as &dyn Target] {
            let file = t.local_file(key).unwrap();
            assert_eq!(std::fs::read_to_string(file).unwrap(), key);
        }
    }
    // Files put there by hand are objects too.
    std::fs::write(root.join("index/by-hand"), b"hand").unwrap();
    assert_eq!(
        &get_bytes(target.as_ref(), "index/by-hand").await.unwrap()[..],
        b"hand"
    );
    let keys = listed_keys(target.as_ref(), "").await.unwrap();
    assert_eq!(
        keys,
        [
            ".esbackup/manifest.json",
            "chunk-000001.000000",
            "index/by-hand",
            "index/indexmap",
            "odd name, ünïcode %41 (#1)"
        ]
    );
    assert!(
        target.describe().ends_with("backup"),
        "{}",
        target.describe()
    );
}

#[tokio::test]
async fn bad_keys_and_bad_roots_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = open_target(dir.path().to_str().unwrap(), &TargetOptions::default()).unwrap();
    for key in [
        "",
        "/abs",
        "a//b",
        "../escape",
        "a/./b",
        "trailing/",
        "a\nb",
    ] {
        let err = target
            .put(key, Upload::bytes(Bytes::new()))
            .await
            .unwrap_err();
        assert!(err.kind() == TargetErrorKind::Permanent, "{key:?}: {err:?}");
    }
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = open_target(file.to_str().unwrap(), &TargetOptions::default()).unwrap_err();
    assert!(err.to_string().contains("a-file"), "{err}");
}

#[tokio::test]
async fn a_file_that_shrinks_fails_the_put_and_leaves_no_object() {
    let dir = tempfile::tempdir().unwrap();
    let opts = TargetOptions {
        part_size: Some(esbackup_backends::ByteSize(4096)),
        ..Default::default()
    };
    let target = open_target(dir.path().join("t").to_str().unwrap(), &opts).unwrap();
    let src = dir.path().join("src");
    std::fs::write(&src, vec![1u8; 10_000]).unwrap();
    // The engine saw 20 000 bytes, but the file has only 10 000 now.
    let upload = Upload::file(&src, 20_000);
    let err = target.put("chunk", upload).await.unwrap_err();
    assert_eq!(err.kind(), TargetErrorKind::Body, "{err:?}");
    assert_eq!(err.body_failure(), Some(std::io::ErrorKind::UnexpectedEof));
    assert!(matches!(
        target.head("chunk").await,
        Err(e) if e.is_not_found()));
    assert!(target.list("").await.unwrap().is_empty());
}
