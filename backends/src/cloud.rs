//! What the cloud openers (`s3`, `azure`, `gcs`) share: the location's description and
//! missing-bucket message, the HTTP settings and upload settings from the `storage:` options,
//! and the errors of a store that cannot be set up.
//!
//! Each opener starts from its builder's `from_env()` (object_store reads the cloud's own
//! variables) and reads settings back with `get_config_value`, except for booleans whose
//! default here differs from object_store's: a builder reports its default for a boolean
//! nobody set, so those (`AWS_ALLOW_HTTP`, `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`,
//! `AWS_CONDITIONAL_PUT`, `AZURE_ALLOW_HTTP`) are read from their variable.

use std::sync::Arc;

use esbackup_engine::BoxError;
use object_store::ObjectStore;

use crate::bucket::{CheckedObjects, MissingBucket, Probe};
use crate::client::HttpSettings;
use crate::error::BackendError;
use crate::keys::Keys;
use crate::multipart::Uploader;
use crate::objects::Objects;
use crate::options::TargetOptions;

/// A cloud location being opened: `scheme://bucket/prefix`, and what the store calls a bucket.
pub(crate) struct CloudLocation<'a> {
    pub scheme: &'static str,
    /// "bucket" or "container".
    pub what: &'static str,
    pub bucket: &'a str,
    pub prefix: &'a str,
}

impl<'a> CloudLocation<'a> {
    /// `scheme://bucket/prefix`, where the store calls a bucket `what`.
    pub fn new(scheme: &'static str, what: &'static str, bucket: &'a str, prefix: &'a str) -> Self {
        CloudLocation {
            scheme,
            what,
            bucket,
            prefix,
        }
    }

    /// What `Target::describe` reports (`s3://bucket/prefix`).
    pub fn describe(&self) -> String {
        match self.prefix {
            "" => format!("{}://{}", self.scheme, self.bucket),
            p => format!("{}://{}/{p}", self.scheme, self.bucket),
        }
    }

    /// The error a missing bucket gives; `place` says where it was looked for ("at
    /// http://127.0.0.1:3900").
    pub fn missing_message(&self, place: &str) -> String {
        format!(
            "{} {:?} does not exist {place} ({}): create it or fix the target URL",
            self.what,
            self.bucket,
            self.describe()
        )
    }

    /// The store's client could not be set up.
    pub fn store_error(&self, reason: &str, source: impl Into<BoxError>) -> BackendError {
        BackendError::Store {
            location: format!("{}://{}", self.scheme, self.bucket),
            reason: reason.into(),
            source: Some(source.into()),
        }
    }

    /// The keys below the prefix in `store`, with the missing-bucket check by `probe` (a
    /// listing of `store` when `None`); `place` says where the bucket was looked for.
    pub fn objects(
        &self,
        store: Arc<dyn ObjectStore>,
        place: &str,
        probe: Option<Probe>,
    ) -> Result<CheckedObjects, BackendError> {
        let keys = Keys::new(self.prefix)
            .map_err(|e| BackendError::Config(format!("bad prefix {:?}: {e}", self.prefix)))?;
        let objects = Objects { store, keys };
        let probe = probe.unwrap_or_else(|| Probe::Listing(objects.clone()));
        let missing = MissingBucket::new(self.missing_message(place), probe);
        Ok(CheckedObjects { objects, missing })
    }
}

/// The settings every cloud takes from the `storage:` options.
pub(crate) struct CloudSettings {
    pub http: HttpSettings,
    pub uploader: Uploader,
}

impl CloudSettings {
    /// From `opts`, with parts of at least `min_part` bytes rounded down to a multiple of
    /// `quantum`.
    pub fn new(
        opts: &TargetOptions,
        min_part: u64,
        quantum: usize,
    ) -> Result<CloudSettings, BackendError> {
        let part_size = opts.part_size(min_part).map_err(BackendError::Config)?;
        let concurrency = opts.concurrency().map_err(BackendError::Config)?;
        Ok(CloudSettings {
            http: HttpSettings::new(opts),
            uploader: Uploader::new(part_size / quantum * quantum, concurrency, opts.memory()),
        })
    }
}
