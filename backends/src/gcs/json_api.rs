//! [`GcsJsonWriter`]: writes to Google Cloud Storage through its JSON API.
//!
//! Why not object_store's own writer: its GCS writes (PUT, multipart, copy) use the XML API,
//! which real GCS serves but no GCS emulator that runs here does (fake-gcs-server answers 400
//! "invalid uploadType", Google's storage testbench lacks it too), so the writes could not be
//! tested against a server. The JSON API works on both, so every write goes through it, while
//! reads, listings and deletes stay with object_store (same base URL, same credentials).
//!
//! What it relies on of real GCS (the JSON API's documented behaviour):
//!
//! - bodies up to the part size: one `uploadType=media` POST;
//! - larger ones: a `uploadType=resumable` session (see `resumable`) fed in part-size pieces (a
//!   multiple of 256 KiB) streamed from the upload, one piece in memory at a time; a 308 answer
//!   says how much the server persisted, a failed piece is resumed from there, a failed upload
//!   cancels its session (the object exists only once the last piece completes it);
//! - create-if-absent: `ifGenerationMatch=0` (412 → already exists); fake-gcs-server ignores
//!   preconditions and overwrites, so with a custom endpoint it is off unless
//!   `conditional_put: true` (then `put_if_absent` says "unsupported" rather than lie);
//! - copy: `rewriteTo`, repeated with its `rewriteToken` until done (server-side, any size);
//! - integrity: every upload carries `x-goog-hash: crc32c=…,md5=…` of the whole object (a media
//!   upload on its one request, a resumable one on the request that completes it), and GCS
//!   refuses the object (400) if what it stored hashes differently. (fake-gcs-server 1.54 does
//!   not check it.)
//!
//! Errors follow the same rules as object_store's (`crate::error`): the kind from the HTTP
//! status or reqwest's typed transport failure, the answer or the reqwest error as the source.

use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use crc_fast::{CrcAlgorithm, Digest as Crc};
use esbackup_engine::{TargetError, TargetErrorKind, Upload};
use futures::StreamExt;
use object_store::gcp::GcpCredentialProvider;
use object_store::path::Path;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use crate::client::{Backoff, HttpSettings};
use crate::cloud::CloudSettings;
use crate::error::{map_store_error, status_is_transient};

/// Resumable-upload pieces must be multiples of this (except the last).
pub(crate) const RESUMABLE_QUANTUM: usize = 256 * 1024;

/// Everything but RFC 3986 unreserved characters is encoded (object names may hold `/`).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// GCS writes through the JSON API.
pub(crate) struct GcsJsonWriter {
    http: reqwest::Client,
    /// `https://storage.googleapis.com`, or an emulator's address; no trailing slash.
    base_url: String,
    bucket: String,
    /// object_store's token provider (an empty bearer means no `Authorization` header).
    credentials: GcpCredentialProvider,
    /// Piece size of resumable uploads, a multiple of [`RESUMABLE_QUANTUM`].
    pub(super) part_size: usize,
    /// Whether the server honours `ifGenerationMatch=0` (fake-gcs-server ignores it).
    conditional_put: bool,
    pub(super) settings: HttpSettings,
}

impl fmt::Debug for GcsJsonWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsJsonWriter")
            .field("base_url", &self.base_url)
            .field("bucket", &self.bucket)
            .field("part_size", &self.part_size)
            .finish()
    }
}

pub(super) fn enc(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

/// The `x-goog-hash` value of an object with this CRC32C and MD5: both base64, the CRC32C of
/// its 4 big-endian bytes.
pub(crate) fn goog_hash(crc32c: u32, md5: Option<[u8; 16]>) -> String {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let mut value = format!("crc32c={}", b64.encode(crc32c.to_be_bytes()));
    if let Some(md5) = md5 {
        value.push_str(&format!(",md5={}", b64.encode(md5)));
    }
    value
}

/// CRC32C (Castagnoli), the checksum GCS keeps for every object.
fn crc32c(data: &[u8]) -> u32 {
    crc_fast::checksum(CrcAlgorithm::Crc32Iscsi, data) as u32
}

/// What GCS answered to a failed request (the source of its [`TargetError`]).
#[derive(Debug, thiserror::Error)]
#[error("{status}: {body}")]
struct Answer {
    status: StatusCode,
    body: String,
}

/// A request that got no answer: transient when reqwest says it timed out or could not
/// connect or send.
pub(super) fn http_error(key: &str, what: &str, e: reqwest::Error) -> TargetError {
    let transient = e.is_timeout() || e.is_connect() || e.is_request() || e.is_body();
    let kind = match transient {
        true => TargetErrorKind::Transient,
        false => TargetErrorKind::Permanent,
    };
    TargetError::new(kind, what).with_key(key).with_source(e)
}

/// A request GCS answered with a failure status: the kind by the status.
pub(super) async fn status_error(key: &str, what: &str, resp: Response) -> TargetError {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let body = body
        .chars()
        .take(300)
        .collect::<String>()
        .trim()
        .to_string();
    let error = match status {
        StatusCode::NOT_FOUND => TargetError::not_found(key),
        StatusCode::PRECONDITION_FAILED => TargetError::already_exists(key),
        s if status_is_transient(s.as_u16()) => TargetError::transient(what),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => TargetError::permanent(format!(
            "{what} (check the GCS credentials: GOOGLE_SERVICE_ACCOUNT or \
             GOOGLE_APPLICATION_CREDENTIALS)"
        )),
        _ => TargetError::permanent(what),
    };
    error.with_key(key).with_source(Answer { status, body })
}

/// A failed request, and whether an earlier attempt of it may have reached the server.
pub(super) struct Failure {
    pub error: TargetError,
    pub retried: bool,
}

impl From<Failure> for TargetError {
    fn from(f: Failure) -> TargetError {
        f.error
    }
}

impl GcsJsonWriter {
    /// Writes to `bucket` at `base_url` with the cloud's timeouts, retries and part size;
    /// `allow_http` and `conditional_put` as resolved by the opener.
    pub(super) fn new(
        base_url: String,
        bucket: &str,
        credentials: GcpCredentialProvider,
        cloud: &CloudSettings,
        (allow_http, conditional_put): (bool, bool),
    ) -> Result<GcsJsonWriter, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(cloud.http.request_timeout)
            .connect_timeout(cloud.http.connect_timeout)
            .https_only(!allow_http)
            .build()?;
        Ok(GcsJsonWriter {
            http,
            base_url,
            bucket: bucket.to_string(),
            credentials,
            part_size: cloud.uploader.part_size,
            conditional_put,
            settings: cloud.http,
        })
    }

    pub(super) fn upload_url(&self, name: &str, kind: &str) -> String {
        format!(
            "{}/upload/storage/v1/b/{}/o?uploadType={kind}&name={}",
            self.base_url,
            enc(&self.bucket),
            enc(name)
        )
    }

    fn object_url(&self, name: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base_url,
            enc(&self.bucket),
            enc(name)
        )
    }

    /// A request with the current bearer token (refreshed by object_store's provider).
    pub(super) async fn request(
        &self,
        method: Method,
        url: &str,
        key: &str,
    ) -> Result<RequestBuilder, TargetError> {
        let credential = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| map_store_error(key, e))?;
        let req = self.http.request(method, url);
        Ok(if credential.bearer.is_empty() {
            req
        } else {
            req.bearer_auth(&credential.bearer)
        })
    }

    /// Sends a request built afresh for each attempt, retrying transient failures; a failure
    /// also tells whether an earlier attempt failed in a way that may still have reached the
    /// server.
    pub(super) async fn send(
        &self,
        key: &str,
        what: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
        method: Method,
        url: &str,
    ) -> Result<Response, Failure> {
        let mut backoff = Backoff::new(self.settings);
        let mut retried = false;
        loop {
            let req = build(
                self.request(method.clone(), url, key)
                    .await
                    .map_err(|error| Failure { error, retried })?,
            );
            let error = match req.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => status_error(key, what, resp).await,
                Err(e) => http_error(key, what, e),
            };
            if !error.is_transient() || !backoff.wait().await {
                return Err(Failure { error, retried });
            }
            tracing::debug!(key, error = %error, "retrying a GCS request");
            retried = true;
        }
    }

    /// One `uploadType=media` POST of `data`, with its hash (`md5` if already known).
    async fn media_upload(
        &self,
        name: &str,
        key: &str,
        data: Bytes,
        md5: Option<[u8; 16]>,
        if_absent: bool,
    ) -> Result<(), Failure> {
        let mut url = self.upload_url(name, "media");
        if if_absent {
            url.push_str("&ifGenerationMatch=0");
        }
        let hash = goog_hash(
            crc32c(&data),
            Some(md5.unwrap_or_else(|| esbackup_engine::md5(&data))),
        );
        let body = |r: RequestBuilder| {
            r.header("content-type", "application/octet-stream")
                .header("x-goog-hash", &hash)
                .body(data.clone())
        };
        self.send(key, "upload", body, Method::POST, &url)
            .await
            .map(drop)
    }

    /// The object's bytes (to tell our own earlier write from someone else's).
    async fn read_object(&self, name: &str, key: &str) -> Result<Bytes, TargetError> {
        let url = format!("{}?alt=media", self.object_url(name));
        let resp = self
            .send(key, "read back", |r| r, Method::GET, &url)
            .await?;
        resp.bytes()
            .await
            .map_err(|e| http_error(key, "read back", e))
    }

    /// Stores `body` at `path`: one media upload up to the part size, else a resumable one.
    pub async fn put(&self, path: &Path, key: &str, body: Upload) -> Result<(), TargetError> {
        if body.len() > self.part_size as u64 {
            return self.resumable_upload(path.as_ref(), key, body).await;
        }
        let pieces: Vec<Bytes> = body
            .stream(self.part_size)
            .map(|p| p.map_err(|e| TargetError::body(key, e)))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let data: Bytes = pieces.concat().into();
        let md5 = body.stored(key)?.md5;
        Ok(self
            .media_upload(path.as_ref(), key, data, Some(md5), false)
            .await?)
    }

    /// A media upload with `ifGenerationMatch=0`.
    pub async fn put_if_absent(
        &self,
        path: &Path,
        key: &str,
        data: Bytes,
    ) -> Result<(), TargetError> {
        if !self.conditional_put {
            return Err(TargetError::unsupported(
                "create-if-absent is disabled for this GCS endpoint (storage.conditional_put)",
            )
            .with_key(key));
        }
        let name = path.as_ref();
        match self.media_upload(name, key, data.clone(), None, true).await {
            Ok(()) => Ok(()),
            // A lost answer then 412 on the retry: the object may be our own first attempt.
            Err(Failure {
                error,
                retried: true,
            }) if error.kind() == TargetErrorKind::AlreadyExists => {
                match self.read_object(name, key).await {
                    Ok(existing) if existing == data => Ok(()),
                    _ => Err(error),
                }
            }
            Err(f) => Err(f.error),
        }
    }

    /// `GET /storage/v1/b/<bucket>`: 404 when the bucket is missing. (fake-gcs-server answers
    /// a listing of a missing bucket with 500, real GCS with 404.)
    pub async fn bucket_exists(&self) -> Option<bool> {
        let url = format!("{}/storage/v1/b/{}", self.base_url, enc(&self.bucket));
        let response = self
            .request(Method::GET, &url, &self.bucket)
            .await
            .ok()?
            .send()
            .await
            .ok()?;
        match response.status() {
            s if s.is_success() => Some(true),
            StatusCode::NOT_FOUND => Some(false),
            _ => None,
        }
    }

    /// Server-side copy (`rewriteTo`), repeated until GCS says it is done.
    pub async fn copy(&self, from: &Path, to: &Path, key: &str) -> Result<(), TargetError> {
        let base = format!(
            "{}/rewriteTo/b/{}/o/{}",
            self.object_url(from.as_ref()),
            enc(&self.bucket),
            enc(to.as_ref())
        );
        let mut token: Option<String> = None;
        for _ in 0..10_000 {
            let url = match &token {
                Some(t) => format!("{base}?rewriteToken={}", enc(t)),
                None => base.clone(),
            };
            match self.rewrite_step(&url, key).await? {
                None => return Ok(()),
                next => token = next,
            }
        }
        Err(TargetError::transient("copy did not finish").with_key(key))
    }

    /// One `rewriteTo` request: `None` when done, else the token to continue with.
    async fn rewrite_step(&self, url: &str, key: &str) -> Result<Option<String>, TargetError> {
        let json = |r: RequestBuilder| r.header("content-type", "application/json").body("{}");
        let resp = self.send(key, "copy", json, Method::POST, url).await?;
        let text = resp.bytes().await.map_err(|e| http_error(key, "copy", e))?;
        let answer: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
            TargetError::permanent("copy answered invalid JSON")
                .with_key(key)
                .with_source(e)
        })?;
        if answer["done"].as_bool().unwrap_or(true) {
            return Ok(None);
        }
        match answer["rewriteToken"].as_str() {
            Some(token) => Ok(Some(token.to_string())),
            None => Err(
                TargetError::permanent("copy answered not done but gave no rewriteToken")
                    .with_key(key),
            ),
        }
    }

    /// The hash of a resumable upload's last piece: the CRC32C of all its bytes and the MD5
    /// the upload recorded once its last piece was read.
    pub(super) fn final_hash(crc: &Crc, body: &Upload, key: &str) -> String {
        goog_hash(crc.finalize() as u32, body.stored(key).ok().map(|s| s.md5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_encoded_as_gcs_shows_them() {
        // The empty object, as GCS lists its hashes.
        assert_eq!(
            goog_hash(crc32c(b""), Some(esbackup_engine::md5(b""))),
            "crc32c=AAAAAA==,md5=1B2M2Y8AsgTpgAmY7PhCfg=="
        );
        // CRC-32C check value of "123456789" is 0xE3069283.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(goog_hash(0xE306_9283, None), "crc32c=4waSgw==");
    }

    #[test]
    fn names_are_encoded_whole() {
        assert_eq!(enc("index/indexmap"), "index%2Findexmap");
        assert_eq!(enc("chunk-000001.000000~"), "chunk-000001.000000~");
        assert_eq!(enc("a b#?"), "a%20b%23%3F");
    }
}
