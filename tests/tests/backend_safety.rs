//! Storage safety against real servers started by each test: a missing bucket or container is
//! an error that names it (not an empty location), and virtual-hosted S3 addressing reaches the
//! bucket.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bytes::Bytes;
use esbackup_backends::object_store::client::{DnsFuture, DnsResolver};
use esbackup_backends::object_store::ClientOptions;
use esbackup_backends::{open_target, open_target_with_client, TargetOptions};
use esbackup_engine::target::get_bytes;
use esbackup_engine::{Target, TargetError, Upload};
use esbackup_tests::cloud::{azure_options, gcs_options, s3_options};
use esbackup_tests::servers::{AzuriteServer, GcsServer, S3Server};

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
                .await,
        ),
    ];
    for (op, result) in results {
        match result {
            Err(TargetError::Permanent(msg)) => {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_s3_bucket_is_named_instead_of_reading_as_empty() {
    let server = S3Server::start().await;
    let opts = s3_options(&server);
    let target = open_target("s3://nosuch/p", &opts).unwrap();
    let expected = format!(
        "bucket \"nosuch\" does not exist at {} (s3://nosuch/p)",
        server.endpoint
    );
    assert_missing_bucket_is_named(target, &expected).await;

    // The bucket exists, the location is empty: still an empty location and "not found".
    let empty = open_target(&server.url("empty"), &opts).unwrap();
    assert!(empty.list("").await.unwrap().is_empty());
    assert!(matches!(
        get_bytes(empty.as_ref(), ".esbackup/manifest.json").await,
        Err(TargetError::NotFound(_))
    ));
    assert!(matches!(
        empty.head("x").await,
        Err(TargetError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_azure_container_is_named_instead_of_reading_as_empty() {
    let server = AzuriteServer::start().await;
    let opts = azure_options(&server);
    let target = open_target("az://nosuch/p", &opts).unwrap();
    let expected = format!(
        "container \"nosuch\" does not exist in storage account devstoreaccount1 at \
         {}/devstoreaccount1 (az://nosuch/p)",
        server.endpoint
    );
    assert_missing_bucket_is_named(target, &expected).await;

    let empty = open_target(&server.url("empty"), &opts).unwrap();
    assert!(empty.list("").await.unwrap().is_empty());
    assert!(matches!(
        get_bytes(empty.as_ref(), ".esbackup/manifest.json").await,
        Err(TargetError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_gcs_bucket_is_named_instead_of_reading_as_empty() {
    let server = GcsServer::start().await;
    let opts = gcs_options(&server);
    let target = open_target("gs://nosuch/p", &opts).unwrap();
    let expected = format!(
        "bucket \"nosuch\" does not exist at {} (gs://nosuch/p)",
        server.endpoint
    );
    assert_missing_bucket_is_named(target, &expected).await;

    let empty = open_target(&server.url("empty"), &opts).unwrap();
    assert!(empty.list("").await.unwrap().is_empty());
    assert!(matches!(
        get_bytes(empty.as_ref(), ".esbackup/manifest.json").await,
        Err(TargetError::NotFound(_))
    ));
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
    let mut keys: Vec<String> = target
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    assert_eq!(keys, ["extra", "index/indexmap"]);
    assert_eq!(
        get_bytes(target.as_ref(), "extra").await.unwrap(),
        Bytes::from_static(b"e")
    );
}
