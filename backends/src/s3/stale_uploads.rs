//! Multipart uploads that a killed run left behind on S3: S3 keeps (and bills) their parts until
//! they are completed or aborted, and nothing else ever does either.
//!
//! object_store can abort an upload but cannot list them, so the listing
//! (`GET /<bucket>?uploads&prefix=…`, ListMultipartUploads) is a URL presigned by the store
//! itself: the same endpoint, addressing style, region and credentials as every other request,
//! sent through an object_store HTTP client built from the same client options (timeouts, CA
//! bundle, proxy). The answer is parsed with quick-xml (object_store's own XML parser); the
//! uploads are then aborted through object_store.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use esbackup_engine::{TargetError, TargetErrorKind};
use object_store::aws::AmazonS3;
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::signer::{SignedUrlOptions, Signer};
use object_store::ClientOptions;
use serde::Deserialize;

use crate::client::{Backoff, HttpSettings};
use crate::error::{
    map_request_error, map_store_error, status_is_transient, transport_is_transient,
};

const WHAT: &str = "listing the bucket's multipart uploads";
/// Lifetime of the presigned listing URL (it is used at once).
const URL_LIFETIME: Duration = Duration::from_secs(600);
/// Pages of 1000 uploads; a bound against a store that never stops saying "truncated".
const MAX_PAGES: usize = 10_000;

/// Lists and aborts the stale multipart uploads of one S3 bucket.
pub(crate) struct S3StaleUploads {
    store: Arc<AmazonS3>,
    http: HttpClient,
    settings: HttpSettings,
    /// `AWS_SKIP_SIGNATURE`: requests are unsigned, listing uploads is not allowed.
    anonymous: bool,
}

impl fmt::Debug for S3StaleUploads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3StaleUploads")
            .field("store", &self.store.to_string())
            .finish()
    }
}

/// One page of a ListMultipartUploads answer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ListPage {
    upload: Vec<InProgress>,
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InProgress {
    key: String,
    upload_id: String,
    initiated: String,
}

impl S3StaleUploads {
    /// Over `store`, with an HTTP client built from the store's own client options.
    pub fn new(
        store: Arc<AmazonS3>,
        client: &ClientOptions,
        settings: HttpSettings,
        anonymous: bool,
    ) -> object_store::Result<Self> {
        let http = object_store::client::ReqwestConnector::default().connect(client)?;
        Ok(S3StaleUploads {
            store,
            http,
            settings,
            anonymous,
        })
    }

    /// One page of the uploads below `prefix`, retried while the failure is transient.
    async fn list_page(
        &self,
        prefix: &str,
        markers: Option<&(String, String)>,
    ) -> Result<ListPage, TargetError> {
        let mut query = vec![("uploads", ""), ("prefix", prefix)];
        if let Some((key, upload)) = markers {
            query.push(("key-marker", key));
            query.push(("upload-id-marker", upload));
        }
        let mut backoff = Backoff::new(self.settings);
        loop {
            let error = match self.try_list_page(&query).await {
                Ok(page) => return Ok(page),
                Err(e) => e,
            };
            if !error.is_transient() || !backoff.wait().await {
                return Err(error);
            }
            tracing::debug!(error = %error, "retrying the listing of multipart uploads");
        }
    }

    async fn try_list_page(&self, query: &[(&str, &str)]) -> Result<ListPage, TargetError> {
        let options = SignedUrlOptions::default().with_query(query.iter().copied());
        let url = self
            .store
            .signed_url_opts(http::Method::GET, &Path::default(), URL_LIFETIME, &options)
            .await
            .map_err(|e| map_request_error(WHAT, e))?;
        let request = http::Request::builder()
            .method(http::Method::GET)
            .uri(url.as_str())
            .body(HttpRequestBody::empty())
            .map_err(|e| TargetError::permanent(WHAT).with_source(e))?;
        let transport = |e: object_store::client::HttpError| {
            let kind = match transport_is_transient(e.kind()) {
                true => TargetErrorKind::Transient,
                false => TargetErrorKind::Permanent,
            };
            TargetError::new(kind, WHAT).with_source(e)
        };
        let response = self.http.execute(request).await.map_err(transport)?;
        let status = response.status();
        let body = response.into_body().bytes().await.map_err(transport)?;
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() {
            return Err(status_error(status, &text));
        }
        quick_xml::de::from_str(&text).map_err(|e| {
            TargetError::permanent(format!("{WHAT}: the answer is not a listing")).with_source(e)
        })
    }
}

/// A listing answered `status` with `body`: the kind by the status, the answer as the source.
fn status_error(status: http::StatusCode, body: &str) -> TargetError {
    let excerpt: String = body.chars().take(300).collect();
    let answer = format!("status code: {status}: {}", excerpt.trim());
    let error = match status.as_u16() {
        404 => TargetError::new(TargetErrorKind::NotFound, WHAT),
        401 | 403 => TargetError::permanent(format!(
            "{WHAT} (the credentials need s3:ListBucketMultipartUploads and \
             s3:AbortMultipartUpload on the bucket)"
        )),
        s if status_is_transient(s) => TargetError::transient(WHAT),
        _ => TargetError::permanent(WHAT),
    };
    error.with_source(answer)
}

/// Whether an upload started at `initiated` (S3's ISO 8601 time) is at least `older_than` old.
/// An unreadable time is never stale.
fn is_stale(initiated: &str, older_than: Duration, now: SystemTime) -> bool {
    let Ok(at) = chrono::DateTime::parse_from_rfc3339(initiated.trim()) else {
        return false;
    };
    let at = SystemTime::from(at);
    // A start in the future (clock skew) is age zero.
    let age = now.duration_since(at).unwrap_or(Duration::ZERO);
    age >= older_than
}

impl S3StaleUploads {
    /// Every upload in progress below `prefix` (all pages).
    async fn in_progress(&self, prefix: &Path) -> Result<Vec<InProgress>, TargetError> {
        let below = match prefix.as_ref() {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let mut all = Vec::new();
        let mut markers: Option<(String, String)> = None;
        for _ in 0..MAX_PAGES {
            let page = self.list_page(&below, markers.as_ref()).await?;
            all.extend(
                page.upload
                    .into_iter()
                    .filter(|u| u.key.starts_with(&below)),
            );
            markers = match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (true, Some(k), Some(u)) if !k.is_empty() => Some((k, u)),
                _ => break,
            };
        }
        Ok(all)
    }
}

impl S3StaleUploads {
    /// Aborts the uploads below `prefix` started at least `older_than` ago; returns how many.
    pub async fn abort_stale(
        &self,
        prefix: &Path,
        older_than: Duration,
    ) -> Result<u64, TargetError> {
        if self.anonymous {
            tracing::debug!("unsigned requests (AWS_SKIP_SIGNATURE): stale uploads left alone");
            return Ok(0);
        }
        let now = SystemTime::now();
        let mut aborted = 0;
        for upload in self.in_progress(prefix).await? {
            if !is_stale(&upload.initiated, older_than, now) {
                continue;
            }
            let Ok(path) = Path::parse(&upload.key) else {
                tracing::warn!(key = upload.key, "not aborting an upload with an odd key");
                continue;
            };
            match self.store.abort_multipart(&path, &upload.upload_id).await {
                Ok(()) => {
                    tracing::info!(
                        key = upload.key,
                        initiated = upload.initiated,
                        "aborted a stale multipart upload"
                    );
                    aborted += 1;
                }
                // Completed or aborted meanwhile.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(map_store_error(&upload.key, e)),
            }
        }
        Ok(aborted)
    }

    /// How many uploads are in progress below `prefix`.
    pub async fn count(&self, prefix: &Path) -> Result<u64, TargetError> {
        if self.anonymous {
            return Ok(0);
        }
        Ok(self.in_progress(prefix).await?.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_answers_parse() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>p/k2</NextKeyMarker><NextUploadIdMarker>u2</NextUploadIdMarker>
  <Prefix>p/</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>p/k1</Key><UploadId>u1</UploadId><Initiated>2024-05-01T10:00:00.000Z</Initiated>
    <StorageClass>STANDARD</StorageClass></Upload>
  <Upload><Key>p/a&amp;b</Key><UploadId>u2</UploadId>
    <Initiated>2024-05-01T10:00:01Z</Initiated></Upload>
</ListMultipartUploadsResult>"#;
        let page: ListPage = quick_xml::de::from_str(xml).unwrap();
        assert_eq!(page.upload.len(), 2);
        assert_eq!(page.upload[1].key, "p/a&b");
        assert!(page.is_truncated);
        assert_eq!(page.next_upload_id_marker.as_deref(), Some("u2"));
        let empty: ListPage = quick_xml::de::from_str(
            "<ListMultipartUploadsResult><Bucket>b</Bucket><IsTruncated>false</IsTruncated>\
             </ListMultipartUploadsResult>",
        )
        .unwrap();
        assert!(empty.upload.is_empty() && !empty.is_truncated);
    }

    #[test]
    fn staleness_by_start_time() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_557_600 + 3600);
        let started = "2024-05-01T10:00:00.000Z"; // 1_714_557_600
        assert!(is_stale(started, Duration::ZERO, now));
        assert!(is_stale(started, Duration::from_secs(3600), now));
        assert!(!is_stale(started, Duration::from_secs(3601), now));
        assert!(!is_stale("yesterday", Duration::ZERO, now));
        // Started "in the future" (skew): age zero.
        assert!(is_stale("2030-01-01T00:00:00Z", Duration::ZERO, now));
    }
}
