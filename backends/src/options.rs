//! [`TargetOptions`]: the `storage:` section of the YAML config. Every field is optional; unset
//! fields fall back to the cloud's standard environment variables, then to defaults.

use std::time::Duration;

use serde::Deserialize;

/// Default size of one multipart part / resumable-upload piece (16 MiB: a 256 MiB chunk file is 16
/// parts, and S3's 10 000-part limit allows objects up to 160 GiB).
pub const DEFAULT_PART_SIZE: u64 = 16 << 20;
/// Smallest part size the clouds accept for every part but the last (S3: 5 MiB).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Default number of parts of one upload in flight at once: the fewest that keep a local store
/// as busy as more would (with the engine's 4 files at once, 8 requests in flight); more parts
/// cost memory, not time. The measurements: `bench/results/upload-parts.md`.
pub const DEFAULT_CONCURRENCY: usize = 2;
/// Default memory for upload parts, across every upload at once: 2 parts of 16 MiB, the least
/// that does not lower the throughput (the store, not the client, bounds the rate). The
/// measurements: `bench/results/upload-parts.md`.
pub const DEFAULT_MEMORY: u64 = 32 << 20;
/// Default timeout of one whole HTTP request, body included: a 16 MiB part needs ~20 KiB/s to
/// make it, a single GET of a 256 MiB chunk ~300 KiB/s (object_store also resumes a broken
/// download from where it stopped, within the retry budget).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Default timeout to establish a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of retries of one request (jittered exponential backoff).
pub const DEFAULT_MAX_RETRIES: usize = 10;
/// Default time after the first attempt of a request past which no retry starts.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(240);

/// Storage options, from the `storage:` key of the YAML config (or built in code).
///
/// Options given here override the environment variables each cloud reads (see the crate docs).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TargetOptions {
    /// Custom endpoint URL (S3-compatible stores, Azurite, fake-gcs-server, private links).
    pub endpoint: Option<String>,
    /// S3 region. Must equal the server's region for S3-compatible stores (`garage` on Garage).
    pub region: Option<String>,
    /// S3 path-style addressing (`endpoint/bucket/key`) instead of virtual-hosted
    /// (`bucket.endpoint/key`, which needs a DNS name for the endpoint: an IP address or
    /// `localhost` is refused). Defaults to true when `endpoint` is set, false otherwise.
    pub path_style: Option<bool>,
    /// Allow plain `http://` endpoints.
    pub allow_http: Option<bool>,
    /// Parts of one upload in flight at once (default 2).
    pub concurrency: Option<usize>,
    /// Memory for upload parts, across every upload at once (`32MiB` by default: 2 parts of
    /// 16 MiB; at least two parts).
    pub memory: Option<ByteSize>,
    /// Part size of large uploads (`16MiB`, `8M` or a number of bytes; default 16 MiB, at least
    /// 5 MiB on clouds).
    pub part_size: Option<ByteSize>,
    /// Timeout of one whole HTTP request, body included (`900s`, `15m` or seconds; default 15
    /// minutes). Raise it on links slower than ~300 KiB/s.
    pub request_timeout: Option<HumanDuration>,
    /// Timeout to connect (default 10 s).
    pub connect_timeout: Option<HumanDuration>,
    /// Retries of one failed request, with jittered exponential backoff (default 10).
    pub max_retries: Option<usize>,
    /// No retry starts later than this after the first attempt (default 4 minutes).
    pub retry_timeout: Option<HumanDuration>,
    /// S3 and GCS: whether the store honours create-if-absent writes (`If-None-Match: *`,
    /// `ifGenerationMatch=0`). When false, `put_if_absent` reports "unsupported" instead of
    /// silently overwriting. Default: true on AWS / Google, false with a custom endpoint (Garage
    /// and fake-gcs-server ignore these conditions).
    pub conditional_put: Option<bool>,
    /// S3: send a SHA-256 checksum with every upload request so the store verifies each part
    /// (default true; false for stores that reject `x-amz-checksum-*` headers).
    pub checksum: Option<bool>,
    /// S3: named profile of the shared AWS config files (overrides `AWS_PROFILE`).
    pub profile: Option<String>,
    /// S3: static access key id (prefer the AWS credential chain; overrides it when set).
    pub access_key_id: Option<String>,
    /// S3: static secret access key, with `access_key_id`.
    pub secret_access_key: Option<String>,
    /// S3: session token, with static keys.
    pub session_token: Option<String>,
    /// Azure: storage account name (overrides `AZURE_STORAGE_ACCOUNT_NAME`).
    pub account: Option<String>,
    /// Azure: storage account key (overrides `AZURE_STORAGE_ACCOUNT_KEY`).
    pub access_key: Option<String>,
    /// Azure: SAS token (query string, with or without the leading `?`).
    pub sas_token: Option<String>,
    /// Azure: talk to the Azurite emulator with its well-known account (overrides
    /// `AZURE_STORAGE_USE_EMULATOR`).
    pub use_emulator: Option<bool>,
    /// GCS: path of a service-account JSON key (overrides `GOOGLE_SERVICE_ACCOUNT`).
    pub service_account: Option<String>,
    /// GCS: path of an application-default-credentials JSON file (overrides
    /// `GOOGLE_APPLICATION_CREDENTIALS`).
    pub application_credentials: Option<String>,
}

impl TargetOptions {
    /// Part size to use, checked against `min` (clouds need at least [`MIN_PART_SIZE`]).
    pub(crate) fn part_size(&self, min: u64) -> Result<usize, String> {
        let size = self.part_size.map_or(DEFAULT_PART_SIZE, |s| s.0);
        if size < min {
            return Err(format!(
                "storage.part_size {size} is too small: use at least {min} bytes"
            ));
        }
        usize::try_from(size).map_err(|_| format!("storage.part_size {size} is too large"))
    }

    /// Bytes of upload parts held in memory at once.
    pub(crate) fn memory(&self) -> usize {
        self.memory.map_or(DEFAULT_MEMORY, |m| m.0) as usize
    }

    pub(crate) fn concurrency(&self) -> Result<usize, String> {
        match self.concurrency.unwrap_or(DEFAULT_CONCURRENCY) {
            0 => Err("storage.concurrency must be at least 1".into()),
            n => Ok(n),
        }
    }
}

pub use esbackup_engine::{ByteSize, HumanDuration};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_storage_section_parses() {
        let yaml = "endpoint: http://127.0.0.1:3900\nregion: garage\npath_style: true\n\
                    allow_http: true\nconcurrency: 8\npart_size: 32MiB\nrequest_timeout: 10m\n\
                    connect_timeout: 5\nconditional_put: false\n";
        let o: TargetOptions = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(o.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(o.part_size, Some(ByteSize(32 << 20)));
        assert_eq!(
            o.request_timeout,
            Some(HumanDuration(Duration::from_secs(600)))
        );
        assert_eq!(
            o.connect_timeout,
            Some(HumanDuration(Duration::from_secs(5)))
        );
        assert_eq!(o.conditional_put, Some(false));
        assert_eq!(o.part_size(MIN_PART_SIZE).unwrap(), 32 << 20);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let err = serde_yaml::from_str::<TargetOptions>("endpiont: x").unwrap_err();
        assert!(err.to_string().contains("endpiont"), "{err}");
        assert!(serde_yaml::from_str::<TargetOptions>("part_size: lots").is_err());
        let small = TargetOptions {
            part_size: Some(ByteSize(1024)),
            ..Default::default()
        };
        assert!(small
            .part_size(MIN_PART_SIZE)
            .unwrap_err()
            .contains("part_size"));
        let zero = TargetOptions {
            concurrency: Some(0),
            ..Default::default()
        };
        assert!(zero.concurrency().is_err());
    }
}
