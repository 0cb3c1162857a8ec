//! [`GcsTarget`]: Google Cloud Storage (and fake-gcs-server): object_store's
//! `GoogleCloudStorage` for reads, listings and deletes, [`GcsJsonWriter`] (the JSON API) for
//! writes (see `json_api` for why).

mod json_api;
mod resumable;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use esbackup_engine::{Stored, Target, TargetError, Upload};
use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::StaticCredentialProvider;

pub(crate) use json_api::GcsJsonWriter;
use json_api::RESUMABLE_QUANTUM;

use crate::bucket::{CheckedObjects, Probe};
use crate::client::{allow_http, env, ClientHook};
use crate::cloud::{CloudLocation, CloudSettings};
use crate::error::BackendError;
use crate::multipart::PartBuffers;
use crate::options::{TargetOptions, MIN_PART_SIZE};

const DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";

/// A GCS bucket below a prefix, as a [`Target`].
///
/// Reads, listings and deletes are object_store's; writes and copies go through the JSON API
/// (`GcsJsonWriter`): one media upload up to the part size, else a resumable session fed one
/// piece at a time, each piece taking one of the target's part buffers. Resumable sessions
/// that a killed run left expire after a week, unbilled as objects, so there is nothing for
/// `abort_stale_uploads` to do. A missing bucket is an error that names it.
#[derive(Debug)]
pub struct GcsTarget {
    description: String,
    /// Reads, listings and deletes (object_store).
    reads: CheckedObjects,
    /// Writes and copies (the JSON API).
    writer: Arc<GcsJsonWriter>,
    buffers: PartBuffers,
}

/// Opens `gs://bucket/prefix`.
pub(crate) fn open_gcs(
    bucket: &str,
    prefix: &str,
    opts: &TargetOptions,
    hook: &ClientHook,
) -> Result<GcsTarget, BackendError> {
    let location = CloudLocation::new("gs", "bucket", bucket, prefix);
    let cloud = CloudSettings::new(opts, MIN_PART_SIZE, RESUMABLE_QUANTUM)?;
    let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
    if let Some(path) = &opts.service_account {
        builder = builder.with_service_account_path(path.clone());
    }
    if let Some(path) = &opts.application_credentials {
        builder = builder.with_application_credentials(path.clone());
    }
    let (builder, base_url) = with_base_url(builder, opts)?;
    let http = allow_http(opts.allow_http, Some(&base_url))?;
    let store = builder
        .with_client_options(hook(cloud.http.client_options(http)))
        .with_retry(cloud.http.retry_config())
        .build()
        .map_err(|e| location.store_error("the GCS client", e))?;
    let conditional_put = opts.conditional_put.unwrap_or(base_url == DEFAULT_BASE_URL);
    let writer = GcsJsonWriter::new(
        base_url.clone(),
        bucket,
        store.credentials().clone(),
        &cloud,
        (http, conditional_put),
    )
    .map_err(|e| location.store_error("the HTTP client", e))?;
    let writer = Arc::new(writer);
    let place = format!("at {base_url}");
    let reads = location.objects(Arc::new(store), &place, Some(Probe::Gcs(writer.clone())))?;
    Ok(GcsTarget {
        description: location.describe(),
        reads,
        writer,
        buffers: cloud.uploader.buffers,
    })
}

/// The base URL: the option, else `STORAGE_EMULATOR_HOST` (Google's SDKs' emulator variable,
/// no auth), else object_store's own settings (`GOOGLE_BASE_URL`, or `gcs_base_url` in the
/// service-account file), else Google's. With an emulator, or a key saying
/// `"disable_oauth": true`, no token is sent (and the metadata server never asked).
fn with_base_url(
    builder: GoogleCloudStorageBuilder,
    opts: &TargetOptions,
) -> Result<(GoogleCloudStorageBuilder, String), BackendError> {
    let account = service_account_json(&builder)?;
    let emulator_host = env("STORAGE_EMULATOR_HOST").map(|h| match h.contains("://") {
        true => h,
        false => format!("http://{h}"),
    });
    let base_url = opts
        .endpoint
        .clone()
        .or_else(|| emulator_host.clone())
        .or_else(|| builder.get_config_value(&GoogleConfigKey::BaseUrl))
        .or_else(|| account.as_ref().and_then(|a| a.base_url.clone()))
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    let base_url = base_url.trim_end_matches('/').to_string();
    let builder = builder.with_base_url(&base_url);
    let no_auth = account.as_ref().is_some_and(|a| a.disable_oauth) || emulator_host.is_some();
    if !no_auth {
        return Ok((builder, base_url));
    }
    let anonymous = StaticCredentialProvider::new(GcpCredential {
        bearer: String::new(),
    });
    Ok((builder.with_credentials(Arc::new(anonymous)), base_url))
}

/// The emulator settings of a service-account JSON key (object_store's extension).
struct AccountSettings {
    base_url: Option<String>,
    disable_oauth: bool,
}

/// Reads `gcs_base_url` and `disable_oauth` from the service-account key the builder will use
/// (a file path or inline JSON), if any.
fn service_account_json(
    builder: &GoogleCloudStorageBuilder,
) -> Result<Option<AccountSettings>, BackendError> {
    let text = if let Some(path) = builder.get_config_value(&GoogleConfigKey::ServiceAccount) {
        std::fs::read_to_string(&path).map_err(|e| {
            BackendError::Config(format!(
                "GCS service account file {path}: {e} (fix GOOGLE_SERVICE_ACCOUNT or \
                 storage.service_account)"
            ))
        })?
    } else if let Some(key) = builder.get_config_value(&GoogleConfigKey::ServiceAccountKey) {
        key
    } else {
        return Ok(None);
    };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        BackendError::Config(format!(
            "the GCS service account key is not valid JSON: {e}"
        ))
    })?;
    Ok(Some(AccountSettings {
        base_url: json["gcs_base_url"].as_str().map(str::to_string),
        disable_oauth: json["disable_oauth"].as_bool().unwrap_or(false),
    }))
}

#[async_trait]
impl Target for GcsTarget {
    fn describe(&self) -> String {
        self.description.clone()
    }

    crate::remote::through!(reads: list, head, get, delete);

    /// Through the JSON API, holding one part buffer: a media upload up to the part size, else
    /// a resumable session fed one piece at a time (cancelled on failure).
    async fn put(&self, key: &str, body: Upload) -> Result<Stored, TargetError> {
        let path = self.reads.objects.keys.path(key)?;
        let _buffer = self.buffers.take().await;
        let sent = self.writer.put(&path, key, body.clone()).await;
        self.reads.check(sent).await?;
        body.stored(key)
    }

    /// A media upload with `ifGenerationMatch=0`, or `Unsupported` where conditional puts are
    /// disabled (any endpoint but Google's, unless `conditional_put: true`).
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        let path = self.reads.objects.keys.path(key)?;
        let created = self.writer.put_if_absent(&path, key, data).await;
        self.reads.check(created).await
    }

    /// A `rewriteTo` through the JSON API, repeated until done.
    async fn copy(&self, from: &str, to: &str) -> Result<(), TargetError> {
        let keys = &self.reads.objects.keys;
        let (src, dst) = (keys.path(from)?, keys.path(to)?);
        let copied = self.writer.copy(&src, &dst, from).await;
        self.reads.check(copied).await
    }

    // Resumable sessions expire after a week, unbilled as objects: nothing to abort.
    crate::remote::stored_remotely!(no_stale_uploads);
}
