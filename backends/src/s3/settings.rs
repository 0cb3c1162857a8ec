//! The settings of an S3 store, from the `storage:` options over what
//! `AmazonS3Builder::from_env()` read (see the crate docs for the precedence).

use std::sync::Arc;

use aws_config::meta::region::ProvideRegion;
use aws_config::profile::ProfileFileRegionProvider;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, Checksum, S3ConditionalPut};

use super::credentials::AwsChainCredentials;
use crate::client::{env, env_bool, parse_bool};
use crate::error::BackendError;
use crate::options::TargetOptions;

/// Region used when neither the options, the environment nor the profile name one.
const DEFAULT_REGION: &str = "us-east-1";

/// The endpoint: the option, else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` /
/// `AWS_ENDPOINT` (object_store reads those two into one setting).
pub(super) fn endpoint(opts: &TargetOptions, env: &AmazonS3Builder) -> Option<String> {
    opts.endpoint
        .clone()
        .or_else(|| env.get_config_value(&AmazonS3ConfigKey::S3Endpoint))
        .or_else(|| env.get_config_value(&AmazonS3ConfigKey::Endpoint))
}

/// The region: the option, else `AWS_REGION`, else `AWS_DEFAULT_REGION` (object_store keeps
/// `AWS_REGION` over it), else the profile's `region`, else us-east-1. Never asks IMDS (opening
/// a target makes no request).
pub(super) fn region(opts: &TargetOptions, env: &AmazonS3Builder) -> String {
    opts.region
        .clone()
        .or_else(|| env.get_config_value(&AmazonS3ConfigKey::Region))
        .or_else(|| profile_region(opts.profile.as_deref()))
        .unwrap_or_else(|| DEFAULT_REGION.to_string())
}

/// Path-style addressing: the option, else not `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`, else true
/// exactly with a custom endpoint (S3-compatible stores rarely have the wildcard DNS that
/// virtual-hosted addressing needs).
pub(super) fn path_style(
    opts: &TargetOptions,
    custom_endpoint: bool,
) -> Result<bool, BackendError> {
    Ok(match opts.path_style {
        Some(p) => p,
        None => env_bool("AWS_VIRTUAL_HOSTED_STYLE_REQUEST")?
            .map(|virtual_hosted| !virtual_hosted)
            .unwrap_or(custom_endpoint),
    })
}

/// Sets the endpoint (the bucket's own for virtual-hosted requests).
pub(super) fn with_endpoint(
    builder: AmazonS3Builder,
    endpoint: Option<&str>,
    bucket: &str,
    path_style: bool,
) -> Result<AmazonS3Builder, BackendError> {
    let Some(e) = endpoint else {
        return Ok(builder);
    };
    let e = if path_style {
        e.to_string()
    } else {
        virtual_hosted_endpoint(e, bucket)?
    };
    // Both keys: object_store's own AWS_ENDPOINT_URL_S3 would otherwise win over this one.
    Ok(builder
        .with_endpoint(e.clone())
        .with_config(AmazonS3ConfigKey::S3Endpoint, e))
}

/// The store checks a SHA-256 of every request body (each part of a multipart upload) and
/// refuses one that arrived damaged (the engine's MD5 covers the whole object end to end);
/// create-if-absent writes as [`conditional_put`] says.
pub(super) fn with_integrity(
    mut builder: AmazonS3Builder,
    opts: &TargetOptions,
    custom_endpoint: bool,
) -> AmazonS3Builder {
    if opts.checksum.unwrap_or(true) {
        builder = builder.with_checksum_algorithm(Checksum::SHA256);
    }
    match conditional_put(opts, custom_endpoint) {
        Some(true) => builder.with_conditional_put(S3ConditionalPut::ETagMatch),
        Some(false) => builder.with_conditional_put(S3ConditionalPut::Disabled),
        None => builder,
    }
}

/// Whether to send `If-None-Match: *` for create-if-absent writes: the option, else
/// `AWS_CONDITIONAL_PUT` (object_store read it: `None` leaves it; its variable tells whether it
/// was set, as the builder reports its default otherwise), else on AWS only. Garage and some
/// other S3-compatible stores ignore the header and overwrite, so custom endpoints default to
/// disabled (`put_if_absent` then reports "unsupported" instead of lying).
fn conditional_put(opts: &TargetOptions, custom_endpoint: bool) -> Option<bool> {
    match opts.conditional_put {
        Some(v) => Some(v),
        None if env("AWS_CONDITIONAL_PUT").is_some() => None,
        None => Some(!custom_endpoint),
    }
}

/// The credentials: static keys from the options, else none with `AWS_SKIP_SIGNATURE=true`
/// (returns true: anonymous), else the AWS SDK chain for `profile` (or `AWS_PROFILE`).
pub(super) fn with_credentials(
    builder: AmazonS3Builder,
    opts: &TargetOptions,
    region: &str,
) -> Result<(AmazonS3Builder, bool), BackendError> {
    let skip = builder.get_config_value(&AmazonS3ConfigKey::SkipSignature);
    match (&opts.access_key_id, &opts.secret_access_key) {
        (Some(id), Some(secret)) => {
            let b = builder
                .with_access_key_id(id.clone())
                .with_secret_access_key(secret.clone());
            Ok((
                match &opts.session_token {
                    Some(t) => b.with_token(t.clone()),
                    None => b,
                },
                false,
            ))
        }
        (None, None) if parse_bool("AWS_SKIP_SIGNATURE", skip)? == Some(true) => {
            Ok((builder, true))
        }
        (None, None) => {
            let chain = AwsChainCredentials::new(opts.profile.clone(), region.to_string());
            Ok((builder.with_credentials(Arc::new(chain)), false))
        }
        _ => Err(BackendError::Config(
            "storage.access_key_id and storage.secret_access_key go together: set both or \
             neither"
                .into(),
        )),
    }
}

/// The endpoint of `bucket` for virtual-hosted addressing (`bucket.host`), built from the
/// store's endpoint as the AWS SDKs do; an endpoint whose host already starts with
/// `bucket.` is kept. Refused for an IP address or `localhost`: the bucket's name cannot be
/// put in front of those, virtual-hosted addressing needs a DNS name (with a wildcard record
/// on a self-hosted store: MinIO's `MINIO_DOMAIN`, Garage's `root_domain`).
fn virtual_hosted_endpoint(endpoint: &str, bucket: &str) -> Result<String, BackendError> {
    let mut url = reqwest::Url::parse(endpoint).map_err(|e| {
        BackendError::Config(format!(
            "endpoint {endpoint:?} is not a URL ({e}): write e.g. https://s3.example.com"
        ))
    })?;
    // `domain()` is None for an IP address.
    let host = match url.domain() {
        Some(d) if !d.eq_ignore_ascii_case("localhost") => d.to_ascii_lowercase(),
        _ => {
            return Err(BackendError::Config(format!(
                "virtual-hosted addressing (storage.path_style: false or \
                 AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true) sends requests to <bucket>.<endpoint \
                 host>, which needs a DNS name, but endpoint {endpoint} has none: set \
                 path_style: true, or give the store's DNS name as endpoint"
            )))
        }
    };
    if host.starts_with(&format!("{bucket}.")) {
        return Ok(endpoint.to_string());
    }
    let prefixed = format!("{bucket}.{host}");
    url.set_host(Some(&prefixed)).map_err(|e| {
        BackendError::Config(format!(
            "bucket {bucket:?} cannot prefix the host of endpoint {endpoint} ({e}): set \
             path_style: true"
        ))
    })?;
    Ok(url.as_str().trim_end_matches('/').to_string())
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
        assert_eq!(region(&opts, &AmazonS3Builder::new()), "garage");
    }

    #[test]
    fn virtual_hosted_addressing_puts_the_bucket_in_the_host() {
        let v = |e: &str, b: &str| virtual_hosted_endpoint(e, b).unwrap();
        assert_eq!(
            v("http://s3.garage.localhost:3900", "bkt"),
            "http://bkt.s3.garage.localhost:3900"
        );
        assert_eq!(
            v("https://S3.Example.com/", "bkt"),
            "https://bkt.s3.example.com"
        );
        assert_eq!(
            v("https://bkt.s3.example.com", "bkt"),
            "https://bkt.s3.example.com"
        );
        assert_eq!(
            v("https://minio.internal:9000/base", "my.bkt"),
            "https://my.bkt.minio.internal:9000/base"
        );
        for ip in [
            "http://127.0.0.1:3900",
            "http://[::1]:3900",
            "http://localhost:9000",
        ] {
            let e = virtual_hosted_endpoint(ip, "bkt").unwrap_err().to_string();
            assert!(e.contains("path_style: true"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn virtual_hosted_addressing_to_an_ip_endpoint_is_refused_at_open() {
        let opts = TargetOptions {
            endpoint: Some("http://127.0.0.1:3900".into()),
            region: Some("garage".into()),
            path_style: Some(false),
            access_key_id: Some("GK0000".into()),
            secret_access_key: Some("secret".into()),
            ..Default::default()
        };
        let e = super::super::open_s3("bkt", "p", &opts, &|o| o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("virtual-hosted"), "{e}");
        assert!(e.contains("path_style: true"), "{e}");
        let named = TargetOptions {
            endpoint: Some("http://s3.garage.localhost:3900".into()),
            ..opts
        };
        assert!(super::super::open_s3("bkt", "p", &named, &|o| o).is_ok());
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
