//! Azure Blob: Azurite (npm), started as a child process.

use std::path::PathBuf;
use std::time::Duration;

use super::s3::join_url;
use super::sign::shared_key_headers;
use super::util::{
    all_pages, assert_deleted, body_unless_not_found, cache_dir, env_vars, expect_success,
    free_port, http_client, page_param, random_hex, tool_path, uri_encode, wait_until, xml_values,
    ServerProcess,
};

/// The Azurite version scripts/test-env.sh installs.
pub const AZURITE_VERSION: &str = "3.35.0";
/// The emulator's well-known account and key.
pub const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
pub const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A real Azure Blob emulator (azurite-blob) on 127.0.0.1 with one container.
/// Killed when dropped; its data lives in a temporary folder removed with it.
#[derive(Debug)]
pub struct AzuriteServer {
    /// `http://127.0.0.1:<port>` (the blob service; the account is the first path segment).
    pub endpoint: String,
    pub account: String,
    /// The account key, base64.
    pub key: String,
    pub container: String,
    process: ServerProcess,
    // Dropped after `process` (fields drop in order): the folder outlives the server.
    _dir: tempfile::TempDir,
}

impl AzuriteServer {
    /// Starts azurite-blob (`$ESBACKUP_AZURITE_BIN`, else the copy scripts/test-env.sh
    /// installs) on a free port and creates a container. Panics with a clear message if it cannot.
    pub async fn start() -> AzuriteServer {
        let bin = tool_path(
            "ESBACKUP_AZURITE_BIN",
            "Azurite",
            &[cache_dir().join(format!(
                "azurite-{AZURITE_VERSION}/node_modules/.bin/azurite-blob"
            ))],
        );
        let dir = tempfile::Builder::new()
            .prefix("esbackup-azurite-")
            .tempdir()
            .expect("temporary folder");
        let port = free_port();
        let data = dir.path().join("data");
        let args: Vec<String> = vec![
            "--blobHost".into(),
            "127.0.0.1".into(),
            "--blobPort".into(),
            port.to_string(),
            "--location".into(),
            data.display().to_string(),
            // Telemetry is on by default: off, there is no network anyway.
            "--disableTelemetry".into(),
            // Accept whatever x-ms-version a client declares (SDKs are often newer than the emulator).
            "--skipApiVersionCheck".into(),
        ];
        let process =
            ServerProcess::spawn("azurite-blob", &bin, &args, &dir.path().join("azurite.log"));
        let server = AzuriteServer {
            endpoint: format!("http://127.0.0.1:{port}"),
            account: EMULATOR_ACCOUNT.into(),
            key: EMULATOR_KEY.into(),
            container: format!("test-{}", random_hex(4)),
            process,
            _dir: dir,
        };
        let log: PathBuf = server.process.log().to_path_buf();
        let probe = format!("/{}?comp=list", server.account);
        wait_until("Azurite", Duration::from_secs(30), Some(&log), || async {
            // Fail fast, with the log, if the process died (bad binary, port taken…).
            server.process.assert_running();
            server
                .try_request("GET", &probe, Vec::new(), &[])
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        let path = format!("/{}/{}?restype=container", server.account, server.container);
        let resp = server.request("PUT", &path, Vec::new(), &[]).await;
        let what = format!("Azurite: creating container {} failed", server.container);
        expect_success(resp, &what).await;
        server
    }

    /// PID of the azurite-blob process.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The environment a CLI run needs: object_store's emulator mode
    /// (AZURE_STORAGE_USE_EMULATOR + AZURITE_BLOB_STORAGE_URL), the explicit account, key and
    /// endpoint, and the Azure SDKs' connection string.
    pub fn env(&self) -> Vec<(String, String)> {
        let blob_endpoint = format!("{}/{}", self.endpoint, self.account);
        let connection_string = format!(
            "DefaultEndpointsProtocol=http;AccountName={};AccountKey={};BlobEndpoint={blob_endpoint};",
            self.account, self.key
        );
        env_vars(&[
            ("AZURE_STORAGE_USE_EMULATOR", "true"),
            ("AZURITE_BLOB_STORAGE_URL", self.endpoint.as_str()),
            ("AZURE_STORAGE_ACCOUNT_NAME", self.account.as_str()),
            ("AZURE_STORAGE_ACCOUNT_KEY", self.key.as_str()),
            ("AZURE_STORAGE_ENDPOINT", blob_endpoint.as_str()),
            ("AZURE_ALLOW_HTTP", "true"),
            ("AZURE_CONTAINER_NAME", self.container.as_str()),
            (
                "AZURE_STORAGE_CONNECTION_STRING",
                connection_string.as_str(),
            ),
        ])
    }

    /// `az://<container>/<prefix>` (`az://<container>` for an empty prefix).
    pub fn url(&self, prefix: &str) -> String {
        join_url("az", &self.container, prefix)
    }

    /// A request signed with Shared Key. `path_and_query` starts with `/<account>`; `extra`
    /// holds the x-ms-* headers beyond date and version (and may hold Content-Type).
    pub async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        body: Vec<u8>,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        self.try_request(method, path_and_query, body, extra)
            .await
            .unwrap_or_else(|e| panic!("Azure {method} {path_and_query} failed: {e}"))
    }

    async fn try_request(
        &self,
        method: &str,
        path_and_query: &str,
        body: Vec<u8>,
        extra: &[(&str, &str)],
    ) -> reqwest::Result<reqwest::Response> {
        let url =
            reqwest::Url::parse(&format!("{}{path_and_query}", self.endpoint)).expect("valid URL");
        let headers = shared_key_headers(
            method,
            &url,
            body.len(),
            extra,
            &self.account,
            &self.key,
            chrono::Utc::now(),
        );
        let mut req = http_client().request(method.parse().expect("HTTP method"), url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.body(body).send().await
    }

    fn blob_path(&self, key: &str) -> String {
        format!(
            "/{}/{}/{}",
            self.account,
            self.container,
            uri_encode(key, true)
        )
    }

    /// Writes a block blob with one PUT (independently of esbackup's storage code).
    pub async fn put_object(&self, key: &str, body: Vec<u8>) {
        let resp = self
            .request(
                "PUT",
                &self.blob_path(key),
                body,
                &[("x-ms-blob-type", "BlockBlob")],
            )
            .await;
        expect_success(resp, &format!("Azure PUT {key}")).await;
    }

    /// Reads a blob; None if it does not exist.
    pub async fn get_object(&self, key: &str) -> Option<Vec<u8>> {
        let resp = self
            .request("GET", &self.blob_path(key), Vec::new(), &[])
            .await;
        body_unless_not_found(resp, &format!("Azure GET {key}")).await
    }

    /// Deletes a blob (no error if absent).
    pub async fn delete_object(&self, key: &str) {
        let resp = self
            .request("DELETE", &self.blob_path(key), Vec::new(), &[])
            .await;
        assert_deleted(&resp, &format!("Azure DELETE {key}"));
    }

    /// Every blob name under `prefix`, sorted (List Blobs, all pages).
    pub async fn list_keys(&self, prefix: &str) -> Vec<String> {
        let first = format!(
            "/{}/{}?restype=container&comp=list&prefix={}",
            self.account,
            self.container,
            uri_encode(prefix, false)
        );
        all_pages(|marker| {
            let path = format!("{first}{}", page_param("marker", marker));
            async move {
                let resp = self.request("GET", &path, Vec::new(), &[]).await;
                let text = expect_success(resp, &format!("Azure list {prefix}")).await;
                let next = xml_values(&text, "NextMarker").into_iter().next();
                (xml_values(&text, "Name"), next.filter(|m| !m.is_empty()))
            }
        })
        .await
    }
}
