//! S3: Garage (the default) or MinIO, in a local Docker image, started through testcontainers.

use std::time::Duration;

use testcontainers::core::{ExecCommand, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::sign::sigv4_headers;
use super::util::{
    all_pages, body_unless_not_found, command_output, env_vars, expect_success, free_port,
    http_client, page_param, random_hex, uri_encode, wait_until, xml_values, CONTAINER_LABEL,
};

/// The Garage version scripts/test-env.sh builds; the image is `esbackup-garage:<this>`.
pub const GARAGE_VERSION: &str = "2.5.0";

/// Which S3 implementation a [`S3Server`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Flavor {
    /// Garage: ignores conditional writes (If-None-Match / If-Match on PUT return 200 and
    /// overwrite), rejects zero-byte multipart parts, has no versioning/tagging/object lock.
    Garage,
    /// MinIO (only when ESBACKUP_MINIO_IMAGE names a local image).
    Minio,
}

/// A real S3 server on 127.0.0.1 with one bucket and one key pair that may read and write it.
/// Stopped and removed when dropped (drop it inside the tokio runtime, e.g. at the end of a
/// `#[tokio::test]`).
pub struct S3Server {
    /// `http://127.0.0.1:<port>`: path-style, plain HTTP.
    pub endpoint: String,
    /// The region requests must be signed for ("garage" on Garage: any other is refused).
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub flavor: S3Flavor,
    /// Garage's admin API (`http://127.0.0.1:<port>`), e.g. `{admin}/metrics` (Prometheus,
    /// no token needed) with `api_s3_request_counter`. None on MinIO.
    pub admin_endpoint: Option<String>,
    /// Bearer token of Garage's admin API. None on MinIO.
    pub admin_token: Option<String>,
    container: ContainerAsync<GenericImage>,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("flavor", &self.flavor)
            .field("container", &self.container.id())
            .finish()
    }
}

/// Splits "name:tag" (the tag after the last ':' that follows the last '/').
fn split_image(image: &str) -> (String, String) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_string(), tag.to_string()),
        _ => (image.to_string(), "latest".to_string()),
    }
}

fn image_present(image: &str) -> bool {
    command_output(
        "docker",
        &["image", "inspect", "--format", "{{.Id}}", image],
    )
    .is_some()
}

fn docker_answers() -> bool {
    command_output("docker", &["info", "--format", "{{.ServerVersion}}"]).is_some()
}

impl S3Server {
    /// Starts Garage (image `$ESBACKUP_GARAGE_IMAGE`, default `esbackup-garage:2.5.0`), or
    /// MinIO if `$ESBACKUP_MINIO_IMAGE` names an image present locally, with a fresh bucket.
    /// Panics with a clear message if it cannot (never skips).
    pub async fn start() -> S3Server {
        assert!(
            docker_answers(),
            "no Docker daemon answers (`docker info` fails): run scripts/test-env.sh (it installs and starts one)"
        );
        if let Some(minio) = std::env::var("ESBACKUP_MINIO_IMAGE")
            .ok()
            .filter(|s| !s.is_empty())
        {
            if image_present(&minio) {
                return Self::start_minio(&minio).await;
            }
            eprintln!("ESBACKUP_MINIO_IMAGE={minio} is not a local image: starting Garage instead");
        }
        let image = std::env::var("ESBACKUP_GARAGE_IMAGE")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("esbackup-garage:{GARAGE_VERSION}"));
        assert!(
            image_present(&image),
            "Garage image {image} not found: run scripts/test-env.sh (it builds it)"
        );
        Self::start_garage(&image).await
    }

    async fn start_garage(image: &str) -> S3Server {
        let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
        let region = "garage".to_string();
        let admin_token = random_hex(16);
        let config = format!(
            r#"metadata_dir = "/var/lib/garage/meta"
data_dir = "/var/lib/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "{region}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
admin_token = "{admin_token}"
"#,
            rpc_secret = random_hex(32),
        );
        let (name, tag) = split_image(image);
        // Host network: no port mapping, the ports above are chosen free on the host.
        let container = GenericImage::new(name, tag)
            .with_wait_for(WaitFor::message_on_either_std("S3 API server listening"))
            .with_cmd(["-c", "/etc/garage.toml", "server"])
            .with_copy_to("/etc/garage.toml", config.into_bytes())
            .with_network("host")
            .with_label(CONTAINER_LABEL.0, CONTAINER_LABEL.1)
            .with_startup_timeout(Duration::from_secs(60))
            .start()
            .await
            .unwrap_or_else(|e| panic!("cannot start Garage from image {image}: {e}"));

        let garage = |args: &[&str]| {
            let mut cmd: Vec<String> = ["/garage", "-c", "/etc/garage.toml"]
                .map(String::from)
                .to_vec();
            cmd.extend(args.iter().map(|a| a.to_string()));
            exec(&container, cmd)
        };
        let node = garage(&["node", "id", "-q"]).await;
        let node = node
            .trim()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string();
        garage(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]).await;
        garage(&["layout", "apply", "--version", "1"]).await;
        // Garage key ids are "GK" + 24 hex digits, secrets 64 hex digits.
        let access_key = format!("GK{}", random_hex(12));
        let secret_key = random_hex(32);
        garage(&[
            "key",
            "import",
            "--yes",
            "-n",
            "test",
            &access_key,
            &secret_key,
        ])
        .await;
        let bucket = format!("test-{}", random_hex(4));
        garage(&["bucket", "create", &bucket]).await;
        garage(&[
            "bucket", "allow", "--read", "--write", "--owner", &bucket, "--key", "test",
        ])
        .await;

        let server = S3Server {
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            region,
            bucket,
            access_key,
            secret_key,
            flavor: S3Flavor::Garage,
            admin_endpoint: Some(format!("http://127.0.0.1:{admin_port}")),
            admin_token: Some(admin_token),
            container,
        };
        server.wait_bucket_ready().await;
        server
    }

    async fn start_minio(image: &str) -> S3Server {
        let (port, console_port) = (free_port(), free_port());
        let access_key = format!("minio{}", random_hex(6));
        let secret_key = random_hex(20);
        let (name, tag) = split_image(image);
        // The official image's entrypoint prepends `minio` to a command that lacks it.
        let container = GenericImage::new(name, tag)
            .with_cmd([
                "server".to_string(),
                "/data".to_string(),
                "--address".to_string(),
                format!("127.0.0.1:{port}"),
                "--console-address".to_string(),
                format!("127.0.0.1:{console_port}"),
            ])
            .with_env_var("MINIO_ROOT_USER", &access_key)
            .with_env_var("MINIO_ROOT_PASSWORD", &secret_key)
            .with_network("host")
            .with_label(CONTAINER_LABEL.0, CONTAINER_LABEL.1)
            .start()
            .await
            .unwrap_or_else(|e| panic!("cannot start MinIO from image {image}: {e}"));
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = http_client();
        let ready = format!("{endpoint}/minio/health/ready");
        wait_until("MinIO", Duration::from_secs(60), None, || async {
            matches!(client.get(&ready).send().await, Ok(r) if r.status().is_success())
        })
        .await;
        let server = S3Server {
            endpoint,
            region: "us-east-1".into(),
            bucket: format!("test-{}", random_hex(4)),
            access_key,
            secret_key,
            flavor: S3Flavor::Minio,
            admin_endpoint: None,
            admin_token: None,
            container,
        };
        let resp = server
            .request("PUT", &format!("/{}", server.bucket), Vec::new())
            .await;
        let what = format!("MinIO: creating bucket {} failed", server.bucket);
        expect_success(resp, &what).await;
        server.wait_bucket_ready().await;
        server
    }

    /// Waits until a signed listing of the bucket answers 200 (Garage applies the layout and
    /// the key's permissions asynchronously).
    async fn wait_bucket_ready(&self) {
        let path = format!("/{}?list-type=2&max-keys=1", self.bucket);
        wait_until("the S3 bucket", Duration::from_secs(30), None, || async {
            self.try_request("GET", &path, Vec::new())
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
    }

    /// The environment a CLI run needs to reach this server (object_store's `from_env` names,
    /// plus the AWS SDKs' ones).
    pub fn env(&self) -> Vec<(String, String)> {
        env_vars(&[
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", self.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.as_str()),
            ("AWS_REGION", self.region.as_str()),
            ("AWS_DEFAULT_REGION", self.region.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false"),
            ("AWS_BUCKET", self.bucket.as_str()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ])
    }

    /// `s3://<bucket>/<prefix>` (`s3://<bucket>` for an empty prefix).
    pub fn url(&self, prefix: &str) -> String {
        join_url("s3", &self.bucket, prefix)
    }

    /// A request signed with this server's key. `path_and_query` starts with '/', path
    /// already URI-encoded, e.g. `/<bucket>?list-type=2`.
    pub async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.try_request(method, path_and_query, body)
            .await
            .unwrap_or_else(|e| panic!("S3 {method} {path_and_query} failed: {e}"))
    }

    async fn try_request(
        &self,
        method: &str,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> reqwest::Result<reqwest::Response> {
        let url =
            reqwest::Url::parse(&format!("{}{path_and_query}", self.endpoint)).expect("valid URL");
        let headers = sigv4_headers(
            method,
            &url,
            &body,
            &self.region,
            &self.access_key,
            &self.secret_key,
            chrono::Utc::now(),
        );
        let mut req = http_client().request(method.parse().expect("HTTP method"), url);
        for (k, v) in headers {
            if k != "host" {
                req = req.header(k, v);
            }
        }
        req.body(body).send().await
    }

    fn object_path(&self, key: &str) -> String {
        format!("/{}/{}", self.bucket, uri_encode(key, true))
    }

    /// Writes an object with a plain PUT (independently of esbackup's storage code).
    pub async fn put_object(&self, key: &str, body: Vec<u8>) {
        let resp = self.request("PUT", &self.object_path(key), body).await;
        expect_success(resp, &format!("S3 PUT {key}")).await;
    }

    /// Reads an object; None if it does not exist.
    pub async fn get_object(&self, key: &str) -> Option<Vec<u8>> {
        let resp = self
            .request("GET", &self.object_path(key), Vec::new())
            .await;
        body_unless_not_found(resp, &format!("S3 GET {key}")).await
    }

    /// Deletes an object (no error if absent).
    pub async fn delete_object(&self, key: &str) {
        let resp = self
            .request("DELETE", &self.object_path(key), Vec::new())
            .await;
        assert!(
            resp.status().is_success(),
            "S3 DELETE {key}: {}",
            resp.status()
        );
    }

    /// Every key under `prefix`, sorted (ListObjectsV2, all pages).
    pub async fn list_keys(&self, prefix: &str) -> Vec<String> {
        let first = format!(
            "/{}?list-type=2&prefix={}",
            self.bucket,
            uri_encode(prefix, false)
        );
        all_pages(|token| {
            let path = format!("{first}{}", page_param("continuation-token", token));
            async move {
                let resp = self.request("GET", &path, Vec::new()).await;
                let text = expect_success(resp, &format!("S3 list {prefix}")).await;
                let truncated = xml_values(&text, "IsTruncated")
                    .first()
                    .is_some_and(|t| t == "true");
                let next = xml_values(&text, "NextContinuationToken")
                    .into_iter()
                    .next();
                (xml_values(&text, "Key"), next.filter(|_| truncated))
            }
        })
        .await
    }

    /// Garage's Prometheus metrics (text), e.g. for `api_s3_request_counter`. None on MinIO.
    pub async fn metrics(&self) -> Option<String> {
        let admin = self.admin_endpoint.as_ref()?;
        let resp = http_client()
            .get(format!("{admin}/metrics"))
            .send()
            .await
            .ok()?;
        resp.text().await.ok()
    }

    /// Total of Garage's `api_s3_request_counter` over all API endpoints. None on MinIO.
    pub async fn s3_request_count(&self) -> Option<u64> {
        Some(sum_metric(&self.metrics().await?, "api_s3_request_counter"))
    }

    /// The id of the container (for `docker logs`, say).
    pub fn container_id(&self) -> &str {
        self.container.id()
    }
}

/// Sum of every sample of `name` (any labels) in a Prometheus text exposition.
pub fn sum_metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

pub(crate) fn join_url(scheme: &str, bucket: &str, prefix: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("{scheme}://{bucket}")
    } else {
        format!("{scheme}://{bucket}/{prefix}")
    }
}

/// Runs a command in the container, panics (with its output) unless it exits 0, returns stdout.
async fn exec(container: &ContainerAsync<GenericImage>, cmd: Vec<String>) -> String {
    let shown = cmd.join(" ");
    let mut result = container
        .exec(ExecCommand::new(cmd))
        .await
        .unwrap_or_else(|e| panic!("cannot run `{shown}` in the S3 container: {e}"));
    // The output streams end when the command exits; its exit code follows shortly.
    let stdout =
        String::from_utf8_lossy(&result.stdout_to_vec().await.unwrap_or_default()).into_owned();
    let stderr =
        String::from_utf8_lossy(&result.stderr_to_vec().await.unwrap_or_default()).into_owned();
    let mut code = None;
    for _ in 0..200 {
        code = result.exit_code().await.ok().flatten();
        if code.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        code,
        Some(0),
        "`{shown}` in the S3 container failed:\n{stdout}\n{stderr}"
    );
    stdout
}
