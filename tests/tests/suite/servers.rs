//! Each server fixture starts a real server, answers real requests, and leaves nothing
//! running once dropped. Needs scripts/test-env.sh (scripts/test.sh runs it).

use std::time::Instant;

use esbackup_tests::servers::{sign, AzuriteServer, GcsServer, ObjectServer, S3Flavor, S3Server};

/// Put, list, get, delete through the fixture's own client.
async fn round_trip(server: &dyn ObjectServer) {
    let kind = server.kind();
    assert!(
        server.list_keys("").await.is_empty(),
        "{kind}: a new bucket is empty"
    );
    let body = b"hello from esbackup's tests".to_vec();
    server.put_object("p/q/hello world.txt", body.clone()).await;
    server.put_object("other", b"x".to_vec()).await;
    assert_eq!(
        server.list_keys("p/").await,
        vec!["p/q/hello world.txt".to_string()],
        "{kind}: list under p/"
    );
    assert_eq!(server.list_keys("").await.len(), 2, "{kind}: list all");
    assert_eq!(
        server.get_object("p/q/hello world.txt").await,
        Some(body),
        "{kind}: get"
    );
    assert_eq!(
        server.get_object("absent").await,
        None,
        "{kind}: get of an absent key"
    );
    server.delete_object("other").await;
    assert_eq!(
        server.list_keys("").await.len(),
        1,
        "{kind}: list after delete"
    );
}

fn env_of(server: &dyn ObjectServer) -> std::collections::HashMap<String, String> {
    server.env().into_iter().collect()
}

/// Asserts that the process `pid` (the server `what`) no longer runs.
fn assert_process_gone(pid: u32, what: &str) {
    let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(gone, "{what} (PID {pid}) still runs after drop");
}

/// Starts a fixture with `start` and says how long it took and where it listens.
async fn started<S: ObjectServer>(start: impl std::future::Future<Output = S>) -> S {
    let t = Instant::now();
    let server = start.await;
    let (kind, took) = (server.kind(), t.elapsed());
    eprintln!("{kind} ready in {took:?} at {}", server.endpoint());
    server
}

#[tokio::test]
async fn s3_server_starts_and_serves() {
    let s3 = started(S3Server::start()).await;
    eprintln!("S3 flavor: {:?}", s3.flavor);

    // One real request, signed with the fixture's key: list the (empty) bucket.
    let resp = s3
        .request("GET", &format!("/{}?list-type=2", s3.bucket), Vec::new())
        .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("<ListBucketResult"), "not a listing: {text}");
    assert!(
        text.contains(&format!("<Name>{}</Name>", s3.bucket)),
        "listing of another bucket: {text}"
    );

    round_trip(&s3).await;

    let env = env_of(&s3);
    assert_eq!(env["AWS_ENDPOINT_URL"], s3.endpoint);
    assert_eq!(env["AWS_REGION"], s3.region);
    assert_eq!(env["AWS_ACCESS_KEY_ID"], s3.access_key);
    assert_eq!(env["AWS_ALLOW_HTTP"], "true");
    assert_eq!(s3.url("/a/b/"), format!("s3://{}/a/b", s3.bucket));
    assert_eq!(s3.url(""), format!("s3://{}", s3.bucket));

    if s3.flavor == S3Flavor::Garage {
        assert_eq!(s3.region, "garage");
        // The admin endpoint counts S3 requests (the benchmark reads the same counter).
        let count = s3.s3_request_count().await.expect("Garage metrics");
        assert!(
            count >= 8,
            "api_s3_request_counter = {count} after the requests above"
        );
    }

    let id = s3.container_id().to_string();
    drop(s3);
    let left = std::process::Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter", &format!("id={id}")])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "container {id} still exists after drop"
    );
}

#[tokio::test]
async fn azurite_starts_and_serves() {
    let az = started(AzuriteServer::start()).await;

    // One real request, Shared Key signed: list the (empty) container.
    let path = format!(
        "/{}/{}?restype=container&comp=list",
        az.account, az.container
    );
    let resp = az.request("GET", &path, Vec::new(), &[]).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("<EnumerationResults"),
        "not a listing: {text}"
    );
    assert!(
        text.contains(&az.container),
        "listing of another container: {text}"
    );

    // A request signed with another key is refused: the emulator really checks signatures,
    // so the 200 above proves the Shared Key signing right.
    let url = reqwest::Url::parse(&format!("{}{path}", az.endpoint)).unwrap();
    let wrong_key =
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";
    let headers = sign::shared_key_headers(
        "GET",
        &url,
        0,
        &[],
        &az.account,
        wrong_key,
        chrono::Utc::now(),
    );
    let mut req = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    assert_eq!(
        req.send().await.unwrap().status(),
        403,
        "a wrong key must be refused"
    );

    round_trip(&az).await;

    let env = env_of(&az);
    assert_eq!(env["AZURE_STORAGE_USE_EMULATOR"], "true");
    assert_eq!(env["AZURITE_BLOB_STORAGE_URL"], az.endpoint);
    assert_eq!(env["AZURE_CONTAINER_NAME"], az.container);
    assert_eq!(az.url("x"), format!("az://{}/x", az.container));

    let pid = az.pid();
    drop(az);
    assert_process_gone(pid, "azurite-blob");
}

#[tokio::test]
async fn fake_gcs_starts_and_serves() {
    let gcs = started(GcsServer::start()).await;

    // One real request: the bucket's metadata.
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/storage/v1/b/{}", gcs.endpoint, gcs.bucket))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let meta: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(meta["name"], gcs.bucket.as_str());

    round_trip(&gcs).await;

    let sa: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&gcs.service_account_file).unwrap()).unwrap();
    assert_eq!(sa["gcs_base_url"], gcs.endpoint.as_str());
    assert_eq!(sa["disable_oauth"], true);
    assert_eq!(
        env_of(&gcs)["GOOGLE_SERVICE_ACCOUNT"],
        gcs.service_account_file.display().to_string()
    );
    assert_eq!(gcs.url("p"), format!("gs://{}/p", gcs.bucket));

    let (pid, file) = (gcs.pid(), gcs.service_account_file.clone());
    drop(gcs);
    assert_process_gone(pid, "fake-gcs-server");
    assert!(!file.exists(), "service-account file left behind");
}
