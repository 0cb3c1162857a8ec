//! [`S3Target`]: S3 and S3-compatible stores (Garage, MinIO, Ceph, R2…) through object_store's
//! `AmazonS3`.

mod credentials;
mod settings;
mod stale_uploads;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use esbackup_engine::{Stored, Target, TargetError, Upload};
use object_store::aws::AmazonS3Builder;

pub use credentials::AwsChainCredentials;

use crate::bucket::CheckedObjects;
use crate::client::{allow_http, ca_bundle, env_bool, is_http, ClientHook};
use crate::cloud::{CloudLocation, CloudSettings};
use crate::error::BackendError;
use crate::multipart::Uploader;
use crate::options::{TargetOptions, MIN_PART_SIZE};
use stale_uploads::S3StaleUploads;

/// An S3 bucket below a prefix, as a [`Target`].
///
/// Writes are object_store's: one PUT up to the part size, else a multipart upload streamed
/// from the body and aborted if anything fails (see `multipart`). A missing bucket is an
/// error that names it. `abort_stale_uploads` lists the bucket's multipart uploads below the
/// prefix and aborts the old ones.
#[derive(Debug)]
pub struct S3Target {
    description: String,
    objects: CheckedObjects,
    uploader: Uploader,
    uploads: S3StaleUploads,
}

/// Opens `s3://bucket/prefix`.
pub(crate) fn open_s3(
    bucket: &str,
    prefix: &str,
    opts: &TargetOptions,
    hook: &ClientHook,
) -> Result<S3Target, BackendError> {
    let location = CloudLocation::new("s3", "bucket", bucket, prefix);
    let cloud = CloudSettings::new(opts, MIN_PART_SIZE, 1)?;
    let from_env = AmazonS3Builder::from_env();
    let endpoint = settings::endpoint(opts, &from_env);
    let region = settings::region(opts, &from_env);
    let path_style = settings::path_style(opts, endpoint.is_some())?;
    // `AWS_ALLOW_HTTP` from its variable: see `cloud`.
    let http = allow_http(
        opts.allow_http.or(env_bool("AWS_ALLOW_HTTP")?),
        endpoint.as_deref(),
    )?;
    let endpoint_is_http = endpoint.as_deref().is_some_and(is_http);
    let client = cloud.http.client_options(http);
    let client = hook(ca_bundle(client, "AWS_CA_BUNDLE", endpoint_is_http)?);

    let builder = from_env
        .with_bucket_name(bucket)
        .with_region(region.clone())
        .with_virtual_hosted_style_request(!path_style)
        .with_client_options(client.clone())
        .with_retry(cloud.http.retry_config());
    let builder = settings::with_endpoint(builder, endpoint.as_deref(), bucket, path_style)?;
    let builder = settings::with_integrity(builder, opts, endpoint.is_some());
    let (builder, anonymous) = settings::with_credentials(builder, opts, &region)?;
    let store = builder
        .build()
        .map_err(|e| location.store_error("the S3 client", e))?;
    let store = Arc::new(store);
    let uploads = S3StaleUploads::new(store.clone(), &client, cloud.http, anonymous)
        .map_err(|e| location.store_error("the HTTP client", e))?;
    let place = match &endpoint {
        Some(e) => format!("at {e}"),
        None => format!("in AWS region {region}"),
    };
    let objects = location.objects(store, &place, None)?;
    Ok(S3Target {
        description: location.describe(),
        objects,
        uploader: cloud.uploader,
        uploads,
    })
}

#[async_trait]
impl Target for S3Target {
    fn describe(&self) -> String {
        self.description.clone()
    }

    // `put_if_absent`: `If-None-Match: *`, or `Unsupported` where conditional puts are
    // disabled.
    crate::remote::through!(objects: list, head, put_if_absent, get, copy, delete);

    /// One PUT up to the part size, else a streamed multipart upload (aborted on failure).
    async fn put(&self, key: &str, body: Upload) -> Result<Stored, TargetError> {
        self.objects.upload(&self.uploader, key, body).await
    }

    crate::remote::stored_remotely!();

    /// Lists the bucket's in-progress multipart uploads below the prefix and aborts those
    /// started at least `older_than` ago (S3 bills their parts until then).
    async fn abort_stale_uploads(&self, older_than: Duration) -> Result<u64, TargetError> {
        let prefix = self.objects.objects.keys.prefix();
        let aborted = self.uploads.abort_stale(prefix, older_than).await;
        self.objects.check(aborted).await
    }

    async fn incomplete_uploads(&self) -> Result<u64, TargetError> {
        let counted = self.uploads.count(self.objects.objects.keys.prefix()).await;
        self.objects.check(counted).await
    }
}
