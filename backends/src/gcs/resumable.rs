//! Resumable uploads to GCS (JSON API): a session fed in part-size pieces streamed from the
//! upload, each resumed from what the server says it persisted (see `json_api`).

use bytes::Bytes;
use crc_fast::{CrcAlgorithm, Digest as Crc};
use esbackup_engine::{TargetError, Upload};
use futures::StreamExt;
use reqwest::{Method, Response};

use super::json_api::{http_error, status_error, GcsJsonWriter};
use crate::client::Backoff;

/// What a session says it holds.
enum Progress {
    /// The object is complete.
    Done,
    /// The server holds bytes `0..n`.
    Persisted(u64),
}

impl GcsJsonWriter {
    pub(super) async fn resumable_upload(
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
                TargetError::permanent("the resumable upload answer has no Location header")
                    .with_key(key)
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
            let piece = piece.map_err(|e| TargetError::body(key, e))?;
            crc.update(&piece);
            let end = offset + piece.len() as u64;
            // The request that completes the object carries the hash of all of it (the
            // upload records its MD5 once its last piece has been read).
            let hash = (end == total).then(|| GcsJsonWriter::final_hash(&crc, &body, key));
            self.put_piece(session, key, &piece, offset, total, hash.as_deref())
                .await?;
            offset = end;
        }
        if offset != total {
            return Err(TargetError::permanent(format!(
                "the upload yielded {offset} of {total} bytes"
            ))
            .with_key(key));
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
                            "the server keeps refusing part of a piece at {n}"
                        ))
                        .with_key(key));
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
            e if e.is_not_found() => TargetError::permanent("the resumable upload session expired")
                .with_key(key)
                .with_source(e),
            e => e,
        })
    }
}
