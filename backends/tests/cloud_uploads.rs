//! Multipart uploads where they apply, on the cloud stores (a real server each, started by the
//! test): with 5 MiB parts and 3 in flight, bodies of several parts pass the conformance kit,
//! and a body that fails after some parts were sent leaves no object.

use esbackup_backends::{open_target, ByteSize, TargetOptions};
use esbackup_engine::conformance::{run_conformance_with, ConformanceOptions};
use esbackup_engine::{Target, TargetErrorKind, Upload};
use esbackup_tests::cloud::{azure_options, gcs_options, s3_options};
use esbackup_tests::servers::{AzuriteServer, GcsServer, S3Server};

const PART: u64 = 5 << 20;

fn small_parts(opts: TargetOptions) -> TargetOptions {
    TargetOptions {
        part_size: Some(ByteSize(PART)),
        concurrency: Some(3),
        ..opts
    }
}

/// Conformance with bodies of three parts and more, then a body that ends after two parts.
async fn multipart_uploads_hold_their_promises(target: &dyn Target) {
    let sizes = ConformanceOptions {
        large_size: (3 * PART + 12_345) as usize,
        overwrite_size: (PART + 1) as usize,
        overwrite_rounds: 2,
    };
    run_conformance_with(target, &sizes)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", target.describe()));

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("chunk");
    std::fs::write(&src, vec![7u8; (2 * PART + 1) as usize]).unwrap();
    // The engine saw four parts' worth, but the file now holds just over two.
    let err = target
        .put("short", Upload::file(&src, 4 * PART))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), TargetErrorKind::Body, "{err:?}");
    assert!(
        matches!(target.head("short").await, Err(e) if e.is_not_found()),
        "{}: a short body was stored",
        target.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_multipart_uploads_hold_their_promises() {
    let server = S3Server::start().await;
    let target = open_target(&server.url("multipart"), &small_parts(s3_options(&server))).unwrap();
    multipart_uploads_hold_their_promises(target.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_block_uploads_hold_their_promises() {
    let server = AzuriteServer::start().await;
    let opts = small_parts(azure_options(&server));
    let target = open_target(&server.url("multipart"), &opts).unwrap();
    multipart_uploads_hold_their_promises(target.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_resumable_uploads_hold_their_promises() {
    let server = GcsServer::start().await;
    let target = open_target(&server.url("multipart"), &small_parts(gcs_options(&server))).unwrap();
    multipart_uploads_hold_their_promises(target.as_ref()).await;
}
