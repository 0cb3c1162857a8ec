//! Azure Blob Storage (and the Azurite emulator) through object_store's `MicrosoftAzure`.

use std::sync::Arc;

use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};

use crate::client::{allow_http, env, env_bool, ClientHook, HttpSettings};
use crate::error::BackendError;
use crate::object_store_target::{CloudTarget, ObjectStoreTarget};
use crate::options::{TargetOptions, MIN_PART_SIZE};

/// Azurite's well-known account and key.
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Opens `az://container/prefix`.
pub(crate) fn open_azure(
    container: &str,
    prefix: &str,
    opts: &TargetOptions,
    hook: &ClientHook,
) -> Result<ObjectStoreTarget, BackendError> {
    let settings = HttpSettings::new(opts);
    let emulator = match opts.use_emulator {
        Some(v) => v,
        None => env_bool("AZURE_STORAGE_USE_EMULATOR")?.unwrap_or(false),
    };
    let account = opts
        .account
        .clone()
        .or_else(|| env("AZURE_STORAGE_ACCOUNT_NAME"));
    let has_key = opts.access_key.is_some() || env("AZURE_STORAGE_ACCOUNT_KEY").is_some();

    let mut builder = MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .with_use_emulator(false);
    if let Some(a) = &account {
        builder = builder.with_account(a.clone());
    }
    if let Some(k) = &opts.access_key {
        builder = builder.with_access_key(k.clone());
    }
    if let Some(sas) = &opts.sas_token {
        builder = builder.with_config(AzureConfigKey::SasKey, sas.clone());
    }
    let endpoint = match (&opts.endpoint, emulator) {
        // object_store's emulator mode takes its address only from AZURITE_BLOB_STORAGE_URL; with
        // an explicit endpoint, address the emulator as a plain account at <endpoint>/<account>.
        (Some(ep), true) => {
            let account = account.clone().unwrap_or_else(|| EMULATOR_ACCOUNT.into());
            builder = builder.with_account(account.clone());
            if !has_key && opts.sas_token.is_none() {
                builder = builder.with_access_key(EMULATOR_KEY);
            }
            let ep = ep.trim_end_matches('/');
            let url = if ep.ends_with(&format!("/{account}")) {
                ep.to_string()
            } else {
                format!("{ep}/{account}")
            };
            Some(url)
        }
        (None, true) => {
            builder = builder.with_use_emulator(true);
            None
        }
        (Some(ep), false) => Some(ep.clone()),
        (None, false) => env("AZURE_STORAGE_ENDPOINT").or_else(|| env("AZURE_ENDPOINT")),
    };
    if let Some(ep) = &endpoint {
        builder = builder.with_endpoint(ep.clone());
    }
    if !emulator && account.is_none() {
        return Err(BackendError::Config(
            "Azure needs a storage account: set AZURE_STORAGE_ACCOUNT_NAME or storage.account \
             (or AZURE_STORAGE_USE_EMULATOR=true for Azurite)"
                .into(),
        ));
    }

    let explicit_http = opts.allow_http.or(env_bool("AZURE_ALLOW_HTTP")?);
    let http = allow_http(explicit_http, endpoint.as_deref())?;
    let store = builder
        .with_client_options(hook(settings.client_options(http)))
        .with_retry(settings.retry_config())
        .build()
        .map_err(|e| BackendError::Open {
            location: format!("az://{container}"),
            reason: crate::error::chain(&e),
        })?;
    let part_size = opts
        .part_size(MIN_PART_SIZE)
        .map_err(BackendError::Config)?;
    let account_name = if emulator {
        account.as_deref().unwrap_or(EMULATOR_ACCOUNT)
    } else {
        account.as_deref().unwrap_or_default()
    };
    let blob_endpoint = match (&endpoint, emulator) {
        (Some(ep), _) => ep.clone(),
        (None, true) => {
            env("AZURITE_BLOB_STORAGE_URL").unwrap_or_else(|| "http://127.0.0.1:10000".into())
        }
        (None, false) => format!("https://{account_name}.blob.core.windows.net"),
    };
    CloudTarget {
        scheme: "az",
        what: "container",
        bucket: container,
        prefix,
        place: format!("in storage account {account_name} at {blob_endpoint}"),
        part_size,
    }
    .build(Arc::new(store), opts)
}
