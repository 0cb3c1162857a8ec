//! S3 and S3-compatible stores (Garage, MinIO, Ceph, R2…) through object_store's `AmazonS3`.

use std::sync::Arc;

use aws_config::meta::region::ProvideRegion;
use aws_config::profile::ProfileFileRegionProvider;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};

use crate::aws_credentials::AwsChainCredentials;
use crate::client::{allow_http, ca_bundle, env, env_bool, is_http, ClientHook, HttpSettings};
use crate::error::BackendError;
use crate::object_store_target::{CloudTarget, ObjectStoreTarget};
use crate::options::{TargetOptions, MIN_PART_SIZE};
use crate::s3_uploads::S3StaleUploads;

/// Region used when neither the options, the environment nor the profile name one.
const DEFAULT_REGION: &str = "us-east-1";

/// Opens `s3://bucket/prefix`.
pub(crate) fn open_s3(
    bucket: &str,
    prefix: &str,
    opts: &TargetOptions,
    hook: &ClientHook,
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
    let client = hook(ca_bundle(
        settings.client_options(http),
        "AWS_CA_BUNDLE",
        endpoint_is_http,
    )?);

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
        .with_client_options(client.clone())
        .with_retry(settings.retry_config());
    if let Some(e) = &endpoint {
        // object_store takes the bucket's own endpoint for virtual-hosted requests.
        let e = if path_style {
            e.clone()
        } else {
            virtual_hosted_endpoint(e, bucket)?
        };
        // Both keys: object_store's own AWS_ENDPOINT_URL_S3 would otherwise win over this one.
        builder = builder
            .with_endpoint(e.clone())
            .with_config(AmazonS3ConfigKey::S3Endpoint, e);
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
    let anonymous = opts.access_key_id.is_none()
        && opts.secret_access_key.is_none()
        && env_bool("AWS_SKIP_SIGNATURE")? == Some(true);
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

    let open_err = |e: &(dyn std::error::Error + 'static)| BackendError::Open {
        location: format!("s3://{bucket}"),
        reason: crate::error::chain(e),
    };
    let store = Arc::new(builder.build().map_err(|e| open_err(&e))?);
    let part_size = opts
        .part_size(MIN_PART_SIZE)
        .map_err(BackendError::Config)?;
    let uploads = S3StaleUploads::new(store.clone(), &client, settings, anonymous)
        .map_err(|e| open_err(&e))?;
    let place = match &endpoint {
        Some(e) => format!("at {e}"),
        None => format!("in AWS region {region}"),
    };
    let target = CloudTarget {
        scheme: "s3",
        what: "bucket",
        bucket,
        prefix,
        place,
        part_size,
    }
    .build(store, opts)?;
    Ok(target.with_stale_uploads(Arc::new(uploads)))
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
        let e = open_s3("bkt", "p", &opts, &|o| o).unwrap_err().to_string();
        assert!(e.contains("virtual-hosted"), "{e}");
        assert!(e.contains("path_style: true"), "{e}");
        let named = TargetOptions {
            endpoint: Some("http://s3.garage.localhost:3900".into()),
            ..opts
        };
        assert!(open_s3("bkt", "p", &named, &|o| o).is_ok());
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
