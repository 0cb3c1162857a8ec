//! [`AzureTarget`]: Azure Blob Storage (and the Azurite emulator) through object_store's
//! `MicrosoftAzure`.

use std::sync::Arc;

use async_trait::async_trait;
use esbackup_engine::{Stored, Target, TargetError, Upload};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};

use crate::bucket::CheckedObjects;
use crate::client::{allow_http, env, env_bool, parse_bool, ClientHook};
use crate::cloud::{CloudLocation, CloudSettings};
use crate::error::BackendError;
use crate::multipart::Uploader;
use crate::options::{TargetOptions, MIN_PART_SIZE};

/// Azurite's well-known account and key.
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// An Azure Blob Storage container below a prefix, as a [`Target`].
///
/// Writes are object_store's: one PUT up to the part size, else blocks streamed from the body
/// and committed as a block list only once all arrived (uncommitted blocks are discarded by
/// Azure after 7 days, so there is nothing for `abort_stale_uploads` to do). A missing
/// container is an error that names it.
#[derive(Debug)]
pub struct AzureTarget {
    description: String,
    blobs: CheckedObjects,
    uploader: Uploader,
}

/// Where the container is: its blob endpoint, and the account addressed there.
struct Account {
    name: String,
    /// The endpoint given to the builder, if any.
    endpoint: Option<String>,
    /// Where the blobs are, for the missing-container message.
    blob_endpoint: String,
}

/// Opens `az://container/prefix`.
pub(crate) fn open_azure(
    container: &str,
    prefix: &str,
    opts: &TargetOptions,
    hook: &ClientHook,
) -> Result<AzureTarget, BackendError> {
    let location = CloudLocation::new("az", "container", container, prefix);
    let cloud = CloudSettings::new(opts, MIN_PART_SIZE, 1)?;
    let builder = MicrosoftAzureBuilder::from_env().with_container_name(container);
    let (builder, account) = with_account(builder, opts)?;
    // `AZURE_ALLOW_HTTP` from its variable: see `cloud`.
    let explicit_http = opts.allow_http.or(env_bool("AZURE_ALLOW_HTTP")?);
    let http = allow_http(explicit_http, account.endpoint.as_deref())?;
    let store = builder
        .with_client_options(hook(cloud.http.client_options(http)))
        .with_retry(cloud.http.retry_config())
        .build()
        .map_err(|e| location.store_error("the Azure client", e))?;
    let place = format!(
        "in storage account {} at {}",
        account.name, account.blob_endpoint
    );
    let blobs = location.objects(Arc::new(store), &place, None)?;
    Ok(AzureTarget {
        description: location.describe(),
        blobs,
        uploader: cloud.uploader,
    })
}

/// The account, key, SAS token and endpoint: the options over what `from_env()` read
/// (`AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_TOKEN`,
/// `AZURE_STORAGE_ENDPOINT`, `AZURE_STORAGE_USE_EMULATOR`).
fn with_account(
    builder: MicrosoftAzureBuilder,
    opts: &TargetOptions,
) -> Result<(MicrosoftAzureBuilder, Account), BackendError> {
    let from_env = |key| builder.get_config_value(&key);
    let emulator = match opts.use_emulator {
        Some(v) => v,
        None => parse_bool(
            "AZURE_STORAGE_USE_EMULATOR",
            from_env(AzureConfigKey::UseEmulator),
        )?
        .unwrap_or(false),
    };
    let account = opts
        .account
        .clone()
        .or_else(|| from_env(AzureConfigKey::AccountName));
    let has_key = opts.access_key.is_some() || from_env(AzureConfigKey::AccessKey).is_some();
    let endpoint = opts
        .endpoint
        .clone()
        .or_else(|| from_env(AzureConfigKey::Endpoint));
    let mut builder = builder.with_use_emulator(false);
    if let Some(k) = &opts.access_key {
        builder = builder.with_access_key(k.clone());
    }
    if let Some(sas) = &opts.sas_token {
        builder = builder.with_config(AzureConfigKey::SasKey, sas.clone());
    }
    if emulator {
        let name = account.unwrap_or_else(|| EMULATOR_ACCOUNT.into());
        // An emulator needs no key of its own: Azurite's well-known one.
        let default_key = !has_key && opts.sas_token.is_none();
        return Ok(emulator_account(builder, opts, name, default_key));
    }
    let Some(name) = account else {
        return Err(BackendError::Config(
            "Azure needs a storage account: set AZURE_STORAGE_ACCOUNT_NAME or storage.account \
             (or AZURE_STORAGE_USE_EMULATOR=true for Azurite)"
                .into(),
        ));
    };
    let blob_endpoint = endpoint
        .clone()
        .unwrap_or_else(|| format!("https://{name}.blob.core.windows.net"));
    builder = builder.with_account(name.clone());
    if let Some(ep) = &endpoint {
        builder = builder.with_endpoint(ep.clone());
    }
    let account = Account {
        name,
        endpoint,
        blob_endpoint,
    };
    Ok((builder, account))
}

/// Azurite's account `name`: object_store's emulator mode without an endpoint option, else a
/// plain account at `<endpoint>/<name>` (object_store's emulator mode takes its address only
/// from `AZURITE_BLOB_STORAGE_URL`).
fn emulator_account(
    builder: MicrosoftAzureBuilder,
    opts: &TargetOptions,
    name: String,
    default_key: bool,
) -> (MicrosoftAzureBuilder, Account) {
    let builder = builder.with_account(name.clone());
    let Some(ep) = &opts.endpoint else {
        // object_store reads AZURITE_BLOB_STORAGE_URL when it builds the client.
        let blob_endpoint =
            env("AZURITE_BLOB_STORAGE_URL").unwrap_or_else(|| "http://127.0.0.1:10000".into());
        let account = Account {
            name,
            endpoint: None,
            blob_endpoint,
        };
        return (builder.with_use_emulator(true), account);
    };
    let builder = match default_key {
        true => builder.with_access_key(EMULATOR_KEY),
        false => builder,
    };
    let ep = ep.trim_end_matches('/');
    let url = match ep.ends_with(&format!("/{name}")) {
        true => ep.to_string(),
        false => format!("{ep}/{name}"),
    };
    let account = Account {
        name,
        endpoint: Some(url.clone()),
        blob_endpoint: url.clone(),
    };
    (builder.with_endpoint(url), account)
}

#[async_trait]
impl Target for AzureTarget {
    fn describe(&self) -> String {
        self.description.clone()
    }

    // `put_if_absent`: `If-None-Match: *` (Azure and Azurite honour it).
    crate::remote::through!(blobs: list, head, put_if_absent, get, copy, delete);

    /// One PUT up to the part size, else streamed blocks committed at the end.
    async fn put(&self, key: &str, body: Upload) -> Result<Stored, TargetError> {
        self.blobs.upload(&self.uploader, key, body).await
    }

    // Azure discards uncommitted blocks after 7 days, unbilled as blobs: nothing to
    // abort.
    crate::remote::stored_remotely!(no_stale_uploads);
}
