//! Storage safety against real servers started by each test: a missing bucket or container is
//! an error that names it (not an empty location), virtual-hosted S3 addressing reaches the
//! bucket, multipart uploads a killed run left behind are aborted, and GCS uploads carry the
//! hash of what they store.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use esbackup_backends::object_store::aws::AmazonS3Builder;
use esbackup_backends::object_store::client::{DnsFuture, DnsResolver};
use esbackup_backends::object_store::path::Path;
use esbackup_backends::object_store::{ClientOptions, ObjectStoreExt, PutPayload};
use esbackup_backends::{open_target, open_target_with_client, TargetOptions};
use esbackup_engine::get_bytes;
use esbackup_engine::testing::listed_keys;
use esbackup_engine::{Target, TargetError, TargetErrorKind, Upload};
use esbackup_tests::cloud::{azure_options, gcs_options, s3_options};
use esbackup_tests::servers::util::{http_client, xml_values};
use esbackup_tests::servers::{AzuriteServer, GcsServer, S3Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------------------------
// A missing bucket or container
// ---------------------------------------------------------------------------------------------

/// Every way the engine first touches a location (list, the manifest read, head, a write)
/// fails with one permanent, one-line error that names the missing bucket.
async fn assert_missing_bucket_is_named(target: Arc<dyn Target>, expected: &str) {
    let results: Vec<(&str, Result<(), TargetError>)> = vec![
        ("list", target.list("").await.map(drop)),
        (
            "get",
            get_bytes(target.as_ref(), ".esbackup/manifest.json")
                .await
                .map(drop),
        ),
        ("head", target.head("chunk-000000.000000").await.map(drop)),
        (
            "put",
            target
                .put("probe", Upload::bytes(Bytes::from_static(b"x")))
                .await
                .map(drop),
        ),
    ];
    for (op, result) in results {
        match result {
            Err(e) if e.kind() == TargetErrorKind::Permanent => {
                let msg = e.to_string();
                assert!(msg.contains(expected), "{op}: {msg:?} lacks {expected:?}");
                assert!(
                    msg.contains("create it or fix the target URL"),
                    "{op}: {msg}"
                );
                assert!(!msg.contains('\n'), "{op}: {msg:?} is not one line");
            }
            other => panic!("{op} on a missing bucket: {other:?}, expected a permanent error"),
        }
    }
}

/// On the server of `opts`: the location `missing` (in a bucket that does not exist) fails
/// naming it as `expected`; `empty` (an existing bucket, nothing under the prefix) reads as an
/// empty location: an empty listing, and "not found". Returns the empty location.
async fn assert_missing_is_named_and_empty_is_empty(
    opts: &TargetOptions,
    missing: &str,
    expected: &str,
    empty: &str,
) -> Arc<dyn Target> {
    assert_missing_bucket_is_named(open_target(missing, opts).unwrap(), expected).await;
    let empty = open_target(empty, opts).unwrap();
    assert!(empty.list("").await.unwrap().is_empty());
    assert!(matches!(
        get_bytes(empty.as_ref(), ".esbackup/manifest.json").await,
        Err(e) if e.is_not_found()));
    empty
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_s3_bucket_is_named_instead_of_reading_as_empty() {
    let server = S3Server::start().await;
    let at = &server.endpoint;
    let expected = format!("bucket \"nosuch\" does not exist at {at} (s3://nosuch/p)");
    let (opts, empty) = (s3_options(&server), server.url("empty"));
    let empty =
        assert_missing_is_named_and_empty_is_empty(&opts, "s3://nosuch/p", &expected, &empty).await;
    assert!(matches!(
        empty.head("x").await,
        Err(e) if e.is_not_found()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_azure_container_is_named_instead_of_reading_as_empty() {
    let server = AzuriteServer::start().await;
    let at = format!("{}/devstoreaccount1", server.endpoint);
    let expected = format!(
        "container \"nosuch\" does not exist in storage account devstoreaccount1 at {at} \
         (az://nosuch/p)"
    );
    let (opts, empty) = (azure_options(&server), server.url("empty"));
    assert_missing_is_named_and_empty_is_empty(&opts, "az://nosuch/p", &expected, &empty).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_gcs_bucket_is_named_instead_of_reading_as_empty() {
    let server = GcsServer::start().await;
    let at = &server.endpoint;
    let expected = format!("bucket \"nosuch\" does not exist at {at} (gs://nosuch/p)");
    let (opts, empty) = (gcs_options(&server), server.url("empty"));
    assert_missing_is_named_and_empty_is_empty(&opts, "gs://nosuch/p", &expected, &empty).await;
}

// ---------------------------------------------------------------------------------------------
// S3 virtual-hosted addressing
// ---------------------------------------------------------------------------------------------

/// Resolves every `*.localhost` name to 127.0.0.1: the wildcard DNS record a virtual-hosted
/// S3-compatible store needs (this machine's resolver knows only `localhost` itself).
#[derive(Debug)]
struct WildcardLocalhost;

impl DnsResolver for WildcardLocalhost {
    fn resolve(&self, host: &str) -> DnsFuture {
        let known = host.ends_with(".localhost");
        let host = host.to_string();
        Box::pin(async move {
            if known {
                Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
            } else {
                Err(format!("{host} is not a name of this test").into())
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_virtual_hosted_addressing_reaches_the_bucket_on_a_custom_endpoint() {
    let server = S3Server::start().await;
    // The fixture's Garage serves virtual-hosted requests below root_domain .s3.garage.localhost.
    let port = server.endpoint.rsplit(':').next().unwrap();
    let opts = TargetOptions {
        endpoint: Some(format!("http://s3.garage.localhost:{port}")),
        path_style: Some(false),
        ..s3_options(&server)
    };
    let hook = |o: ClientOptions| o.with_dns_resolver(Arc::new(WildcardLocalhost));
    let target = open_target_with_client(&server.url("vh/node1"), &opts, &hook).unwrap();

    target
        .put("index/indexmap", Upload::bytes(Bytes::from_static(b"map")))
        .await
        .unwrap();
    // Written into the bucket, where a path-style client finds it.
    assert_eq!(
        server
            .get_object("vh/node1/index/indexmap")
            .await
            .as_deref(),
        Some(&b"map"[..])
    );
    server.put_object("vh/node1/extra", b"e".to_vec()).await;
    let keys = listed_keys(target.as_ref(), "").await.unwrap();
    assert_eq!(keys, ["extra", "index/indexmap"]);
    assert_eq!(
        get_bytes(target.as_ref(), "extra").await.unwrap(),
        Bytes::from_static(b"e")
    );
    // The presigned listing of multipart uploads takes the same addressing.
    assert_eq!(target.abort_stale_uploads(Duration::ZERO).await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// Stale S3 multipart uploads
// ---------------------------------------------------------------------------------------------

/// The upload ids of the bucket's in-progress multipart uploads below `prefix`, listed with the
/// fixture's own signed client.
async fn in_progress_uploads(server: &S3Server, prefix: &str) -> Vec<String> {
    let path = format!("/{}?uploads=&prefix={prefix}", server.bucket);
    let resp = server.request("GET", &path, Vec::new()).await;
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "ListMultipartUploads: {status} {text}");
    xml_values(&text, "UploadId")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_stale_uploads_aborts_the_multipart_uploads_a_killed_run_left() {
    let server = S3Server::start().await;
    // A run killed mid-upload: a multipart upload started, one part written, never completed
    // nor aborted. Made with a plain object_store client, not esbackup's.
    let raw = AmazonS3Builder::new()
        .with_endpoint(&server.endpoint)
        .with_bucket_name(&server.bucket)
        .with_region(&server.region)
        .with_access_key_id(&server.access_key)
        .with_secret_access_key(&server.secret_key)
        .with_allow_http(true)
        .build()
        .unwrap();
    for key in [
        "stale/node1/chunk-000000.000000",
        "other/chunk-000000.000000",
    ] {
        let mut upload = raw.put_multipart(&Path::from(key)).await.unwrap();
        upload
            .put_part(PutPayload::from(vec![7u8; 64 * 1024]))
            .await
            .unwrap();
        drop(upload);
    }
    assert_eq!(in_progress_uploads(&server, "stale/node1/").await.len(), 1);

    let target = open_target(&server.url("stale/node1"), &s3_options(&server)).unwrap();
    // Younger than `older_than`: kept (it may belong to a run still going).
    assert_eq!(
        target
            .abort_stale_uploads(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(in_progress_uploads(&server, "stale/node1/").await.len(), 1);

    let aborted = target.abort_stale_uploads(Duration::ZERO).await.unwrap();
    assert!(aborted >= 1, "aborted {aborted}");
    assert!(in_progress_uploads(&server, "stale/node1/")
        .await
        .is_empty());
    // Outside the target's prefix: not its business.
    assert_eq!(in_progress_uploads(&server, "other/").await.len(), 1);
    assert_eq!(target.abort_stale_uploads(Duration::ZERO).await.unwrap(), 0);

    // The other stores have nothing to abort.
    let dir = tempfile::tempdir().unwrap();
    let local = open_target(&dir.path().display().to_string(), &TargetOptions::default()).unwrap();
    assert_eq!(local.abort_stale_uploads(Duration::ZERO).await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// GCS upload hashes
// ---------------------------------------------------------------------------------------------

/// A TCP relay to `upstream` that keeps every byte clients send through it.
async fn recording_relay(upstream: SocketAddr) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(Mutex::new(Vec::new()));
    let log = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = inbound.split();
                let (mut server_read, mut server_write) = outbound.split();
                let upstream_leg = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        log.lock().unwrap().extend_from_slice(&buf[..n]);
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = server_write.shutdown().await;
                };
                let downstream_leg = tokio::io::copy(&mut server_read, &mut client_write);
                let _ = tokio::join!(upstream_leg, downstream_leg);
            });
        }
    });
    (address, sent)
}

/// Each request head (up to its blank line) that carries an `x-goog-hash` header, with the
/// header's value.
fn requests_with_hash(sent: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(sent);
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("\r\nx-goog-hash: ") {
        let at = from + at;
        let head_start = ["POST ", "PUT "]
            .iter()
            .filter_map(|m| text[..at].rfind(m))
            .max()
            .unwrap();
        let head_end = at + text[at..].find("\r\n\r\n").unwrap();
        let value_start = at + "\r\nx-goog-hash: ".len();
        let value_end = value_start + text[value_start..].find("\r\n").unwrap();
        out.push((
            text[head_start..head_end].to_string(),
            text[value_start..value_end].to_string(),
        ));
        from = value_end;
    }
    out
}

/// `crc32c=…,md5=…` as the server computed them for the object it stored.
async fn stored_hash(server: &GcsServer, name: &str) -> String {
    let url = format!(
        "{}/storage/v1/b/{}/o/{}",
        server.endpoint,
        server.bucket,
        name.replace('/', "%2F")
    );
    let text = http_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let meta: serde_json::Value = serde_json::from_str(&text).unwrap();
    format!(
        "crc32c={},md5={}",
        meta["crc32c"].as_str().unwrap(),
        meta["md5Hash"].as_str().unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_uploads_send_the_hash_of_the_whole_object() {
    let server = GcsServer::start().await;
    let upstream: SocketAddr = server
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let (relay, sent) = recording_relay(upstream).await;
    let opts = TargetOptions {
        endpoint: Some(relay),
        part_size: Some(esbackup_backends::ByteSize(5 << 20)),
        ..gcs_options(&server)
    };
    let target = open_target(&server.url("h"), &opts).unwrap();

    // One media upload.
    target
        .put("small", Upload::bytes(Bytes::from_static(b"hello, hash")))
        .await
        .unwrap();
    let hashed = requests_with_hash(&sent.lock().unwrap());
    assert_eq!(hashed.len(), 1, "{hashed:?}");
    assert!(hashed[0].0.contains("uploadType=media"), "{}", hashed[0].0);
    assert_eq!(hashed[0].1, stored_hash(&server, "h/small").await);
    sent.lock().unwrap().clear();

    // A resumable upload in two pieces, read from a file: only the request that completes the
    // object carries the hash, and it covers all of it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chunk");
    let total = (5 << 20) + 12_345u64;
    let data: Vec<u8> = (0..total).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    target.put("big", Upload::file(&file, total)).await.unwrap();
    assert_eq!(server.get_object("h/big").await.unwrap(), data);
    let hashed = requests_with_hash(&sent.lock().unwrap());
    assert_eq!(hashed.len(), 1, "{hashed:?}");
    let last_piece = format!("content-range: bytes {}-{}/{total}", 5 << 20, total - 1);
    assert!(hashed[0].0.contains(&last_piece), "{}", hashed[0].0);
    assert_eq!(hashed[0].1, stored_hash(&server, "h/big").await);
}

/// Whether the emulator itself checks `x-goog-hash` (real GCS answers 400 to a mismatch): a
/// media upload with a deliberately wrong hash. fake-gcs-server 1.54 stores it anyway, so the
/// hash checks above rest on comparing what is sent with what the server computed; should a
/// later emulator refuse it, this test says so and can become a rejection test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_gcs_server_does_not_check_upload_hashes() {
    let server = GcsServer::start().await;
    let url = format!(
        "{}/upload/storage/v1/b/{}/o?uploadType=media&name=wrong",
        server.endpoint, server.bucket
    );
    let resp = http_client()
        .post(url)
        .header("content-type", "application/octet-stream")
        .header(
            "x-goog-hash",
            "crc32c=AAAAAA==,md5=AAAAAAAAAAAAAAAAAAAAAA==",
        )
        .body("not what the hash says")
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert!(
        status.is_success(),
        "fake-gcs-server now refuses a wrong x-goog-hash ({status}): make this a test that \
         expects the rejection"
    );
}
