//! Writes to Google Cloud Storage through its JSON API.
//!
//! Why not object_store: its GCS writes (PUT, multipart, copy) use the XML API, which real GCS
//! serves but the GCS emulators do not (fake-gcs-server answers 400 "invalid uploadType"). The
//! JSON API works on both, so every write goes through it, while reads, listings and deletes
//! stay with object_store (same base URL, same credentials):
//!
//! - bodies up to the part size: one `uploadType=media` POST;
//! - larger ones: a `uploadType=resumable` session fed in part-size pieces (a multiple of
//!   256 KiB) streamed from the upload, one piece in memory at a time; a failed piece is resumed
//!   from what the server says it persisted; a failed upload cancels its session;
//! - create-if-absent: `ifGenerationMatch=0` (412 → already exists); fake-gcs-server ignores
//!   preconditions and overwrites, so with a custom endpoint it is off unless
//!   `conditional_put: true` (then `put_if_absent` says "unsupported" rather than lie);
//! - copy: `rewriteTo`, repeated until done (server-side, any size);
//! - integrity: every upload carries `x-goog-hash: crc32c=…,md5=…` of the whole object (a
//!   media upload on its one request, a resumable one on the request that completes it), and
//!   GCS refuses the object (400) if what it stored hashes differently. (fake-gcs-server 1.54
//!   does not check it.)

use std::fmt;

use async_trait::async_trait;
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
use crate::error::{map_store_error, upload_read_error};
use crate::object_store_target::ObjectWriter;

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
    pub http: reqwest::Client,
    /// `https://storage.googleapis.com`, or an emulator's address; no trailing slash.
    pub base_url: String,
    pub bucket: String,
    /// object_store's token provider (an empty bearer means no `Authorization` header).
    pub credentials: GcpCredentialProvider,
    /// Piece size of resumable uploads, a multiple of [`RESUMABLE_QUANTUM`].
    pub part_size: usize,
    /// Whether the server honours `ifGenerationMatch=0` (fake-gcs-server ignores it).
    pub conditional_put: bool,
    pub settings: HttpSettings,
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

fn enc(s: &str) -> String {
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

/// What a failed attempt says: the error, and whether it is worth another try.
fn http_error(key: &str, what: &str, e: reqwest::Error) -> TargetError {
    let msg = format!("{key}: {what}: {}", crate::error::chain(&e));
    if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() {
        TargetError::transient(msg)
    } else {
        TargetError::permanent(msg)
    }
}

async fn status_error(key: &str, what: &str, resp: Response) -> TargetError {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    let msg = format!("{key}: {what}: {status}: {}", body.trim());
    match status {
        StatusCode::NOT_FOUND => TargetError::not_found(key),
        StatusCode::PRECONDITION_FAILED => TargetError::already_exists(key),
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => TargetError::transient(msg),
        s if s.is_server_error() => TargetError::transient(msg),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => TargetError::permanent(format!(
            "{msg} (check the GCS credentials: GOOGLE_SERVICE_ACCOUNT or \
             GOOGLE_APPLICATION_CREDENTIALS)"
        )),
        _ => TargetError::permanent(msg),
    }
}

impl GcsJsonWriter {
    fn upload_url(&self, name: &str, kind: &str) -> String {
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
    async fn request(
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

    /// Sends a request built afresh for each attempt, retrying transient failures.
    async fn send(
        &self,
        key: &str,
        what: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
        method: Method,
        url: &str,
    ) -> Result<Response, TargetError> {
        self.send_tracked(key, what, build, method, url)
            .await
            .map_err(|f| f.error)
    }

    /// [`Self::send`], also telling on failure whether an earlier attempt had failed in a way
    /// that may still have reached the server.
    async fn send_tracked(
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
        self.send_tracked(key, "upload", body, Method::POST, &url)
            .await
            .map(|_| ())
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

    async fn resumable_upload(
        &self,
        name: &str,
        key: &str,
        body: Upload,
    ) -> Result<(), TargetError> {
        let total = body.len();
        let resp = self
            .send(
                key,
                "start a resumable upload",
                |r| {
                    r.header("x-upload-content-type", "application/octet-stream")
                        .header("x-upload-content-length", total)
                        .header("content-length", 0)
                },
                Method::POST,
                &self.upload_url(name, "resumable"),
            )
            .await?;
        let session = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                TargetError::permanent(format!(
                    "{key}: the resumable upload answer has no Location header"
                ))
            })?;
        let result = self.feed_session(&session, key, body, total).await;
        if result.is_err() {
            // Cancel the session so nothing half-written lingers (GCS answers 499).
            if let Ok(req) = self.request(Method::DELETE, &session, key).await {
                let _ = req.header("content-length", 0).send().await;
            }
        }
        result
    }

    async fn feed_session(
        &self,
        session: &str,
        key: &str,
        body: Upload,
        total: u64,
    ) -> Result<(), TargetError> {
        let mut pieces = body.stream(self.part_size);
        let mut offset = 0u64;
        let mut crc = Crc::new(CrcAlgorithm::Crc32Iscsi);
        while let Some(piece) = pieces.next().await {
            let piece = piece.map_err(|e| upload_read_error(key, e))?;
            crc.update(&piece);
            let end = offset + piece.len() as u64;
            // The request that completes the object carries the hash of all of it (the
            // upload records its MD5 once its last piece has been read).
            let hash = (end == total)
                .then(|| goog_hash(crc.finalize() as u32, body.stored(key).ok().map(|s| s.md5)));
            self.put_piece(session, key, &piece, offset, total, hash.as_deref())
                .await?;
            offset = end;
        }
        if offset != total {
            return Err(TargetError::permanent(format!(
                "{key}: the upload yielded {offset} of {total} bytes"
            )));
        }
        Ok(())
    }

    /// Sends `piece` (at `offset` of `total`), resuming from what the server persisted after a
    /// failure. `hash` (the whole object's `x-goog-hash`) goes with the last piece.
    async fn put_piece(
        &self,
        session: &str,
        key: &str,
        piece: &Bytes,
        offset: u64,
        total: u64,
        hash: Option<&str>,
    ) -> Result<(), TargetError> {
        let end = offset + piece.len() as u64;
        let mut sent = offset;
        let mut backoff = Backoff::new(self.settings);
        loop {
            let part = piece.slice((sent - offset) as usize..);
            let range = format!("bytes {sent}-{}/{total}", end - 1);
            let mut request = self
                .request(Method::PUT, session, key)
                .await?
                .header("content-range", range);
            if let Some(hash) = hash {
                request = request.header("x-goog-hash", hash);
            }
            let attempt = match request.body(part).send().await {
                Ok(resp) => self.session_progress(key, resp).await,
                Err(e) => Err(http_error(key, "upload a piece", e)),
            };
            match attempt {
                Ok(Progress::Done) => return Ok(()),
                Ok(Progress::Persisted(n)) if n >= end => return Ok(()),
                Ok(Progress::Persisted(n)) => {
                    // The server kept only part of the piece: send the rest.
                    sent = n.max(offset);
                    if !backoff.wait().await {
                        return Err(TargetError::transient(format!(
                            "{key}: the server keeps refusing part of a piece at {n}"
                        )));
                    }
                }
                Err(e) if e.is_transient() => {
                    if !backoff.wait().await {
                        return Err(e);
                    }
                    sent = match self.query_session(session, key, total).await? {
                        Progress::Done => return Ok(()),
                        Progress::Persisted(n) if n >= end => return Ok(()),
                        Progress::Persisted(n) => n.max(offset),
                    };
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Asks a session how much it has persisted.
    async fn query_session(
        &self,
        session: &str,
        key: &str,
        total: u64,
    ) -> Result<Progress, TargetError> {
        let resp = self
            .request(Method::PUT, session, key)
            .await?
            .header("content-range", format!("bytes */{total}"))
            .header("content-length", 0)
            .send()
            .await
            .map_err(|e| http_error(key, "query the resumable upload", e))?;
        self.session_progress(key, resp).await
    }

    async fn session_progress(&self, key: &str, resp: Response) -> Result<Progress, TargetError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(Progress::Done);
        }
        if status.as_u16() == 308 {
            // `Range: bytes=0-N`; none means nothing persisted yet.
            let persisted = resp
                .headers()
                .get("range")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit('-').next())
                .and_then(|n| n.trim().parse::<u64>().ok())
                .map_or(0, |last| last + 1);
            return Ok(Progress::Persisted(persisted));
        }
        let err = status_error(key, "upload a piece", resp).await;
        Err(match err {
            // The session is gone (expired or cancelled): start the whole upload again.
            e if e.is_not_found() => {
                TargetError::permanent(format!("{key}: the resumable upload session expired"))
            }
            e => e,
        })
    }
}

/// A failed request, and whether an earlier attempt of it may have reached the server.
struct Failure {
    error: TargetError,
    retried: bool,
}

enum Progress {
    /// The object is complete.
    Done,
    /// The server holds bytes `0..n`.
    Persisted(u64),
}

#[async_trait]
impl ObjectWriter for GcsJsonWriter {
    async fn put(&self, path: &Path, key: &str, body: Upload) -> Result<(), TargetError> {
        if body.len() > self.part_size as u64 {
            return self.resumable_upload(path.as_ref(), key, body).await;
        }
        let pieces: Vec<Bytes> = body
            .stream(self.part_size)
            .map(|p| p.map_err(|e| upload_read_error(key, e)))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let data: Bytes = pieces.concat().into();
        let md5 = body.stored(key)?.md5;
        self.media_upload(path.as_ref(), key, data, Some(md5), false)
            .await
            .map_err(|f| f.error)
    }

    async fn put_if_absent(&self, path: &Path, key: &str, data: Bytes) -> Result<(), TargetError> {
        if !self.conditional_put {
            return Err(TargetError::unsupported(format!(
                "{key}: create-if-absent is disabled for this GCS endpoint (storage.conditional_put)"
            )));
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
    async fn bucket_exists(&self) -> Option<bool> {
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

    async fn copy(&self, from: &Path, to: &Path, key: &str) -> Result<(), TargetError> {
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
            let resp = self
                .send(
                    key,
                    "copy",
                    |r| r.header("content-type", "application/json").body("{}"),
                    Method::POST,
                    &url,
                )
                .await?;
            let text = resp.bytes().await.map_err(|e| http_error(key, "copy", e))?;
            let answer: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
                TargetError::permanent(format!("{key}: copy answered invalid JSON: {e}"))
            })?;
            if answer["done"].as_bool().unwrap_or(true) {
                return Ok(());
            }
            token = answer["rewriteToken"].as_str().map(str::to_string);
            if token.is_none() {
                return Err(TargetError::permanent(format!(
                    "{key}: copy answered not done but gave no rewriteToken"
                )));
            }
        }
        Err(TargetError::transient(format!(
            "{key}: copy did not finish"
        )))
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
