//! S3 and S3-compatible stores (Garage, MinIO, Ceph, R2…) through object_store's `AmazonS3`.

use std::sync::Arc;

use aws_config::meta::region::ProvideRegion;
use aws_config::profile::ProfileFileRegionProvider;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};

use crate::aws_credentials::AwsChainCredentials;
use crate::client::{allow_http, ca_bundle, env, env_bool, is_http, HttpSettings};
use crate::error::BackendError;
use crate::object_store_target::{CloudTarget, ObjectStoreTarget};
use crate::options::{TargetOptions, MIN_PART_SIZE};

/// Region used when neither the options, the environment nor the profile name one.
const DEFAULT_REGION: &str = "us-east-1";

/// Opens `s3://bucket/prefix`.
pub(crate) fn open_s3(
    bucket: &str,
    prefix: &str,
    opts: &TargetOptions,
) -> Result<ObjectStoreTarget, BackendError> {
    let settings = HttpSettings::new(opts);
    let endpoint = opts
        .endpoint
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .or_else(|| env("AWS_ENDPOINT"));
    let profile = opts.profile.clone().or_else(|| env("AWS_PROFILE"));
    let region = resolve_region(opts, profile.as_deref());

    let explicit_http = opts.allow_http.or(env_bool("AWS_ALLOW_HTTP")?);
    let http = allow_http(explicit_http, endpoint.as_deref())?;
    let endpoint_is_http = endpoint.as_deref().is_some_and(is_http);
    let client = ca_bundle(
        settings.client_options(http),
        "AWS_CA_BUNDLE",
        endpoint_is_http,
    )?;

    // Path-style by default for custom endpoints (S3-compatible stores rarely have the wildcard
    // DNS that virtual-hosted addressing needs), virtual-hosted on AWS.
    let path_style = match opts.path_style {
        Some(p) => p,
        None => env_bool("AWS_VIRTUAL_HOSTED_STYLE_REQUEST")?
            .map(|virtual_hosted| !virtual_hosted)
            .unwrap_or(endpoint.is_some()),
    };

    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_region(region.clone())
        .with_virtual_hosted_style_request(!path_style)
        .with_client_options(client)
        .with_retry(settings.retry_config());
    if let Some(e) = &endpoint {
        builder = builder.with_endpoint(e.clone());
    }
    // The store checks a SHA-256 of every request body (each part of a multipart upload) and
    // refuses one that arrived damaged; the engine's MD5 covers the whole object end to end.
    if opts.checksum.unwrap_or(true) {
        builder = builder.with_checksum_algorithm(object_store::aws::Checksum::SHA256);
    }
    builder = match conditional_put(opts, endpoint.is_some()) {
        Some(true) => builder.with_conditional_put(S3ConditionalPut::ETagMatch),
        Some(false) => builder.with_conditional_put(S3ConditionalPut::Disabled),
        None => builder,
    };
    builder = match (&opts.access_key_id, &opts.secret_access_key) {
        (Some(id), Some(secret)) => {
            let b = builder
                .with_access_key_id(id.clone())
                .with_secret_access_key(secret.clone());
            match &opts.session_token {
                Some(t) => b.with_token(t.clone()),
                None => b,
            }
        }
        (None, None) if env_bool("AWS_SKIP_SIGNATURE")? == Some(true) => builder,
        (None, None) => builder.with_credentials(Arc::new(AwsChainCredentials::new(
            profile.clone(),
            region.clone(),
        ))),
        _ => {
            return Err(BackendError::Config(
                "storage.access_key_id and storage.secret_access_key go together: set both or \
                 neither"
                    .into(),
            ))
        }
    };

    let store = builder.build().map_err(|e| BackendError::Open {
        location: format!("s3://{bucket}"),
        reason: crate::error::chain(&e),
    })?;
    let part_size = opts
        .part_size(MIN_PART_SIZE)
        .map_err(BackendError::Config)?;
    let place = match &endpoint {
        Some(e) => format!("at {e}"),
        None => format!("in AWS region {region}"),
    };
    CloudTarget {
        scheme: "s3",
        what: "bucket",
        bucket,
        prefix,
        place,
        part_size,
    }
    .build(Arc::new(store), opts)
}

/// Whether to send `If-None-Match: *` for create-if-absent writes: the option, else
/// `AWS_CONDITIONAL_PUT` (object_store reads it: `None` leaves it), else on AWS only. Garage and
/// some other S3-compatible stores ignore the header and overwrite, so custom endpoints default
/// to disabled (`put_if_absent` then reports "unsupported" instead of lying).
fn conditional_put(opts: &TargetOptions, custom_endpoint: bool) -> Option<bool> {
    match opts.conditional_put {
        Some(v) => Some(v),
        None if env("AWS_CONDITIONAL_PUT").is_some() => None,
        None => Some(!custom_endpoint),
    }
}

/// The region: option, `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, else
/// us-east-1. Never asks IMDS (opening a target makes no request).
fn resolve_region(opts: &TargetOptions, profile: Option<&str>) -> String {
    if let Some(r) = opts
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
    {
        return r;
    }
    profile_region(profile).unwrap_or_else(|| DEFAULT_REGION.to_string())
}

/// The `region` of the profile in the shared AWS config files. aws-config reads them
/// asynchronously; a helper thread runs that to completion so `open_target` stays synchronous
/// (and callable from inside a runtime).
fn profile_region(profile: Option<&str>) -> Option<String> {
    let profile = profile.map(str::to_string);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let mut builder = ProfileFileRegionProvider::builder();
            if let Some(p) = profile {
                builder = builder.profile_name(p);
            }
            builder.build().region().await.map(|r| r.to_string())
        })
    })
    .join()
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_region_wins() {
        let opts = TargetOptions {
            region: Some("garage".into()),
            ..Default::default()
        };
        assert_eq!(resolve_region(&opts, None), "garage");
    }

    #[test]
    fn conditional_put_defaults_off_for_custom_endpoints() {
        let opts = TargetOptions::default();
        if env("AWS_CONDITIONAL_PUT").is_none() {
            assert_eq!(conditional_put(&opts, true), Some(false));
            assert_eq!(conditional_put(&opts, false), Some(true));
        }
        let on = TargetOptions {
            conditional_put: Some(true),
            ..Default::default()
        };
        assert_eq!(conditional_put(&on, true), Some(true));
    }
}
