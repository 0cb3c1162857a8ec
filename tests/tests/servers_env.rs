//! The fixtures' `env()` is what a CLI run gets: check that object_store, configured from
//! exactly those process variables (`from_env`, as the CLI would) plus the fixture's `url()`,
//! reaches the server, and that what it writes is what the fixture's independent client reads.
//!
//! One test in its own binary: it sets process environment variables, which must not race
//! with other tests.

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{path::Path, ObjectStore, ObjectStoreExt, PutPayload};

use esbackup_tests::servers::{AzuriteServer, GcsServer, ObjectServer, S3Server};

fn set_env(server: &dyn ObjectServer) {
    for (k, v) in server.env() {
        std::env::set_var(k, v);
    }
}

fn clear_env(server: &dyn ObjectServer) {
    for (k, _) in server.env() {
        std::env::remove_var(k);
    }
}

async fn list(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(Some(&Path::from(prefix)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

/// object_store writes, the fixture reads; the fixture writes, object_store reads.
async fn check_both_ways(
    server: &dyn ObjectServer,
    store: &dyn ObjectStore,
    object_store_writes: bool,
) {
    let kind = server.kind();
    if object_store_writes {
        store
            .put(
                &Path::from("env/by-object-store"),
                PutPayload::from_static(b"from object_store"),
            )
            .await
            .unwrap();
        assert_eq!(
            server.get_object("env/by-object-store").await.as_deref(),
            Some(&b"from object_store"[..]),
            "{kind}"
        );
    }
    server
        .put_object("env/by-fixture", b"from the fixture".to_vec())
        .await;
    let got = store
        .get(&Path::from("env/by-fixture"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], b"from the fixture", "{kind}");
    let mut expected = vec!["env/by-fixture".to_string()];
    if object_store_writes {
        expected.push("env/by-object-store".to_string());
    }
    assert_eq!(
        list(store, "env").await,
        expected,
        "{kind}: object_store's listing"
    );
    assert_eq!(
        server.list_keys("env/").await,
        expected,
        "{kind}: the fixture's listing"
    );
}

/// With the fixture's variables set, builds a store with `from_env` (the builder's `from_env`
/// and the fixture's url) and checks it both ways; then clears the variables.
async fn check_from_env<S: ObjectStore>(
    server: &dyn ObjectServer,
    from_env: impl FnOnce(String) -> object_store::Result<S>,
    object_store_writes: bool,
) {
    set_env(server);
    let store = from_env(server.url("")).unwrap();
    check_both_ways(server, &store, object_store_writes).await;
    clear_env(server);
}

#[tokio::test]
async fn object_store_from_env_reaches_every_fixture() {
    let s3 = S3Server::start().await;
    let from_env = |url| AmazonS3Builder::from_env().with_url(url).build();
    check_from_env(&s3, from_env, true).await;

    let az = AzuriteServer::start().await;
    let from_env = |url| MicrosoftAzureBuilder::from_env().with_url(url).build();
    check_from_env(&az, from_env, true).await;

    // fake-gcs-server does not implement the XML API that object_store writes through:
    // only reads are checked (see tests/src/servers/gcs.rs).
    let gcs = GcsServer::start().await;
    let from_env = |url| GoogleCloudStorageBuilder::from_env().with_url(url).build();
    check_from_env(&gcs, from_env, false).await;
}
