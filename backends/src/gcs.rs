//! Google Cloud Storage (and fake-gcs-server): object_store's `GoogleCloudStorage` for reads,
//! listings and deletes, [`GcsJsonWriter`] for writes (see `gcs_upload` for why).

use std::sync::Arc;

use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::StaticCredentialProvider;

use crate::client::{allow_http, env, ClientHook, HttpSettings};
use crate::error::BackendError;
use crate::gcs_upload::{GcsJsonWriter, RESUMABLE_QUANTUM};
use crate::object_store_target::{CloudTarget, ObjectStoreTarget};
use crate::options::{TargetOptions, MIN_PART_SIZE};

const DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";

/// Opens `gs://bucket/prefix`.
pub(crate) fn open_gcs(
    bucket: &str,
    prefix: &str,
    opts: &TargetOptions,
    hook: &ClientHook,
) -> Result<ObjectStoreTarget, BackendError> {
    let settings = HttpSettings::new(opts);
    let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
    if let Some(path) = &opts.service_account {
        builder = builder.with_service_account_path(path.clone());
    }
    if let Some(path) = &opts.application_credentials {
        builder = builder.with_application_credentials(path.clone());
    }

    // The base URL: the option, else STORAGE_EMULATOR_HOST (Google's SDKs' emulator variable,
    // no auth), else object_store's own settings (GOOGLE_BASE_URL, or `gcs_base_url` in the
    // service-account file), else Google's.
    let account = service_account_json(&builder)?;
    let emulator_host = env("STORAGE_EMULATOR_HOST").map(|h| {
        if h.contains("://") {
            h
        } else {
            format!("http://{h}")
        }
    });
    let base_url = opts
        .endpoint
        .clone()
        .or_else(|| emulator_host.clone())
        .or_else(|| builder.get_config_value(&GoogleConfigKey::BaseUrl))
        .or_else(|| account.as_ref().and_then(|a| a.base_url.clone()))
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    let base_url = base_url.trim_end_matches('/').to_string();
    builder = builder.with_base_url(&base_url);
    // STORAGE_EMULATOR_HOST means an emulator, as for Google's SDKs: no token (and never the
    // metadata server).
    let no_auth = account.as_ref().is_some_and(|a| a.disable_oauth) || emulator_host.is_some();
    if no_auth {
        builder =
            builder.with_credentials(Arc::new(StaticCredentialProvider::new(GcpCredential {
                bearer: String::new(),
            })));
    }

    let http = allow_http(opts.allow_http, Some(&base_url))?;
    let store = builder
        .with_client_options(hook(settings.client_options(http)))
        .with_retry(settings.retry_config())
        .build()
        .map_err(|e| BackendError::Open {
            location: format!("gs://{bucket}"),
            reason: crate::error::chain(&e),
        })?;

    let part_size = opts
        .part_size(MIN_PART_SIZE)
        .map_err(BackendError::Config)?;
    let part_size = part_size / RESUMABLE_QUANTUM * RESUMABLE_QUANTUM;
    let http_client = reqwest::Client::builder()
        .timeout(settings.request_timeout)
        .connect_timeout(settings.connect_timeout)
        .https_only(!http)
        .build()
        .map_err(|e| BackendError::Open {
            location: format!("gs://{bucket}"),
            reason: format!("HTTP client: {}", crate::error::chain(&e)),
        })?;
    let writer = GcsJsonWriter {
        http: http_client,
        base_url: base_url.clone(),
        bucket: bucket.to_string(),
        credentials: store.credentials().clone(),
        part_size,
        conditional_put: opts.conditional_put.unwrap_or(base_url == DEFAULT_BASE_URL),
        settings,
    };
    let target = CloudTarget {
        scheme: "gs",
        what: "bucket",
        bucket,
        prefix,
        place: format!("at {base_url}"),
        part_size,
    }
    .build(Arc::new(store), opts)?;
    Ok(target.with_writer(Arc::new(writer)))
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
