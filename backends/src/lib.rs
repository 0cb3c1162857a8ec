//! Storage targets for esbackup, one [`Target`](esbackup_engine::Target) type per store:
//! [`FolderTarget`] (a local folder), [`S3Target`] (S3 and S3-compatible stores),
//! [`AzureTarget`] (Azure Blob Storage) and [`GcsTarget`] (Google Cloud Storage), each in its
//! own module. [`open_target`] opens one from a URL and [`TargetOptions`] (the `storage:`
//! section of the YAML config). [`ObjectStoreTarget`] is a plain target over any other
//! `object_store` store of your own (e.g. `InMemory`), with no store-specific behaviour.
//!
//! What the stores share is in small modules: `keys` (key ↔ path), `objects` (the
//! object_store requests for keys below a prefix), `multipart` (streamed uploads and the shared
//! part buffers), `bucket` (the missing-bucket check), `cloud` (what the cloud openers share),
//! `error` (the one mapping of object_store's errors).
//!
//! # URLs
//!
//! | URL | store |
//! | --- | --- |
//! | `/backups/node1`, `rel/dir`, `file:///backups/node1` | a local folder |
//! | `s3://bucket/prefix` | S3 or an S3-compatible store |
//! | `az://container/prefix`, `azure://container/prefix` | Azure Blob Storage / Azurite |
//! | `gs://bucket/prefix` | Google Cloud Storage / fake-gcs-server |
//!
//! Anything else that starts like a URL scheme (`word:`) is refused, with the spelling that
//! works for a typo (`s3:/bucket/node1`: "did you mean s3://bucket/node1?"): write a folder
//! whose name has a colon as `./name:x`.
//!
//! A missing local folder reads as empty and is created by the first write: read-only
//! commands create nothing.
//!
//! A bucket or container that does not exist is an error that names it, never an empty
//! location.
//!
//! # Settings
//!
//! Each setting comes from the `storage:` options if given, else from the cloud's standard
//! environment variables, else a default.
//!
//! **Every cloud** (YAML only): `memory` (upload parts held in memory across all uploads,
//! default `32MiB`), `concurrency` (parts in flight per upload, default 2), `part_size`
//! (default `16MiB`, at least `5MiB`), `request_timeout` (whole request, default `15m`),
//! `connect_timeout` (`10s`), `max_retries` (10, jittered exponential backoff),
//! `retry_timeout` (`4m`), `allow_http` (default: true exactly when the endpoint is `http://`).
//!
//! **Local folder**: no settings; the clouds' are accepted and ignored (a folder writes each
//! file in one native pass: no multipart upload, no part buffers, no `concurrency`). Keys are
//! plain files (`index/indexmap` is `<root>/index/indexmap`), written to a staging file beside
//! the target and renamed into place, fsynced. Names ending in `#<digits>` are reserved for
//! staging files. The target's [`local_root`](esbackup_engine::Target::local_root) is the
//! folder's absolute, canonical path.
//!
//! **S3** (`s3://`):
//! - `endpoint`, else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` or `AWS_ENDPOINT`
//!   (object_store reads these two into one setting: set one);
//! - `region`, else `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, else
//!   `us-east-1` (S3-compatible stores need theirs: `garage` on Garage);
//! - `path_style`, else not `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`, else true with a custom
//!   endpoint; virtual-hosted requests to a custom endpoint go to `<bucket>.<endpoint host>`
//!   (as with the AWS SDKs; an endpoint whose host already starts with `<bucket>.` is kept),
//!   which needs a DNS name with a wildcard record (MinIO's `MINIO_DOMAIN`, Garage's
//!   `root_domain`): an IP address or `localhost` endpoint is refused;
//! - `allow_http`, else `AWS_ALLOW_HTTP`;
//! - credentials: `access_key_id` + `secret_access_key` (+ `session_token`) if given, else the
//!   AWS SDK default chain: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, the
//!   shared files (`AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE`) with `profile` /
//!   `AWS_PROFILE`, SSO, `credential_process`, web identity (`AWS_WEB_IDENTITY_TOKEN_FILE`,
//!   `AWS_ROLE_ARN`), ECS, then EC2 IMDS (`AWS_EC2_METADATA_DISABLED=true` skips it);
//!   `AWS_SKIP_SIGNATURE=true` for public buckets;
//! - `conditional_put`, else `AWS_CONDITIONAL_PUT` (`etag`/`disabled`), else on for AWS and off
//!   with a custom endpoint (Garage silently ignores `If-None-Match`; off makes `put_if_absent`
//!   say "unsupported" rather than overwrite);
//! - `checksum` (default true): a SHA-256 checksum on every upload request, verified by the store;
//! - `AWS_CA_BUNDLE`: extra root certificates for https endpoints (ignored for http ones);
//! - [`abort_stale_uploads`](esbackup_engine::Target::abort_stale_uploads) lists the bucket's
//!   multipart uploads below the prefix (ListMultipartUploads, a request presigned by
//!   object_store) and aborts the old ones: the credentials need `s3:ListBucketMultipartUploads`
//!   and `s3:AbortMultipartUpload`;
//! - object_store's other `AWS_*` variables (e.g. `AWS_CHECKSUM_ALGORITHM`,
//!   `AWS_SERVER_SIDE_ENCRYPTION`) are honoured too.
//!
//! **Azure** (`az://`, `azure://`):
//! - `account`, else `AZURE_STORAGE_ACCOUNT_NAME`; `access_key`, else
//!   `AZURE_STORAGE_ACCOUNT_KEY`; `sas_token`, else `AZURE_STORAGE_SAS_TOKEN`; else
//!   object_store's chain (`AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`/`AZURE_TENANT_ID`, workload
//!   identity, managed identity, `AZURE_USE_AZURE_CLI`);
//! - `endpoint`, else `AZURE_STORAGE_ENDPOINT`; `allow_http`, else `AZURE_ALLOW_HTTP`;
//! - `use_emulator`, else `AZURE_STORAGE_USE_EMULATOR`: Azurite with its well-known account, at
//!   `endpoint` if given, else `AZURITE_BLOB_STORAGE_URL`, else `http://127.0.0.1:10000`.
//!
//! **GCS** (`gs://`):
//! - `service_account` (JSON key file), else `GOOGLE_SERVICE_ACCOUNT` /
//!   `GOOGLE_SERVICE_ACCOUNT_PATH` / `SERVICE_ACCOUNT`, or inline `GOOGLE_SERVICE_ACCOUNT_KEY`;
//!   `application_credentials`, else `GOOGLE_APPLICATION_CREDENTIALS`, else the gcloud ADC
//!   file; else the metadata server;
//! - `endpoint`, else `STORAGE_EMULATOR_HOST` (no auth), else `GOOGLE_BASE_URL`, else the key's
//!   `gcs_base_url`; a key with `"disable_oauth": true` sends no token (emulators).
//! - `conditional_put`: default on with Google's endpoint, off with any other (fake-gcs-server
//!   ignores `ifGenerationMatch`);
//! - writes use the JSON API (resumable uploads, sequential pieces): object_store writes GCS
//!   through the XML API, which no GCS emulator that runs here serves (see `gcs::json_api`).
//!
//! # Example `storage:` section
//!
//! ```yaml
//! storage:
//!   endpoint: http://127.0.0.1:3900
//!   region: garage
//!   path_style: true
//!   part_size: 32MiB
//!   concurrency: 8
//! ```

mod azure;
mod bucket;
mod client;
mod cloud;
mod error;
mod folder;
mod gcs;
mod keys;
mod multipart;
mod object_store_target;
mod objects;
mod options;
mod remote;
mod s3;
mod url;

pub use azure::AzureTarget;
pub use client::ClientHook;
pub use error::{BackendError, BackendErrorCause};
pub use folder::{open_local, FolderTarget};
pub use gcs::GcsTarget;
pub use object_store_target::ObjectStoreTarget;
pub use options::{
    ByteSize, HumanDuration, TargetOptions, DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, MIN_PART_SIZE,
};
pub use s3::{AwsChainCredentials, S3Target};
pub use url::{open_target, open_target_with_client, parse_location, Location};

/// The `object_store` crate, for building an [`ObjectStoreTarget`] over a store of your own.
pub use object_store;
