//! Storage URLs: a plain path, `file://`, `s3://`, `az://` / `azure://` and `gs://`, and
//! [`open_target`], which opens the right backend for one.

use std::path::PathBuf;
use std::sync::Arc;

use esbackup_engine::Target;

use crate::client::ClientHook;
use crate::error::BackendError;
use crate::options::TargetOptions;

/// Where a storage URL points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local folder (a plain path or `file:///abs/path`).
    Local(PathBuf),
    /// `s3://bucket/prefix`
    S3 { bucket: String, prefix: String },
    /// `az://container/prefix` or `azure://container/prefix`
    Azure { container: String, prefix: String },
    /// `gs://bucket/prefix`
    Gcs { bucket: String, prefix: String },
}

const SCHEMES: &str = "a path, file:///path, s3://bucket/prefix, az://container/prefix, \
                       azure://container/prefix or gs://bucket/prefix";

/// Parses a storage URL: a plain path (absolute, or relative to the current folder) is a local
/// folder, and so is `file:///abs/path`; anything that starts like a URL scheme (`word:`) must
/// be one of the known schemes written in full (`s3://…`): a typo such as `s3:/bucket` is
/// refused with the right spelling rather than taken for a folder named `s3:`.
pub fn parse_location(url: &str) -> Result<Location, BackendError> {
    let err = |reason: String| BackendError::url(url, reason);
    let trimmed = url.trim();
    if trimmed.is_empty() {
        return Err(err(format!("it is empty: give {SCHEMES}")));
    }
    let Some((scheme, after)) = split_scheme(trimmed) else {
        return Ok(Location::Local(PathBuf::from(trimmed)));
    };
    let Some(rest) = after.strip_prefix("//") else {
        return Err(err(misspelt(scheme, after, trimmed)));
    };
    if rest.contains(['?', '#']) {
        return Err(err(
            "query strings and fragments are not supported: put options under `storage:` in the \
             config"
                .into(),
        ));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "file" => parse_file(rest).map(Location::Local).map_err(err),
        "s3" | "s3a" => {
            let (bucket, prefix) = split_bucket(rest, "bucket").map_err(err)?;
            check_bucket(&bucket).map_err(err)?;
            Ok(Location::S3 { bucket, prefix })
        }
        "az" | "azure" => {
            let (container, prefix) = split_bucket(rest, "container").map_err(err)?;
            check_container(&container).map_err(err)?;
            Ok(Location::Azure { container, prefix })
        }
        "gs" | "gcs" => {
            let (bucket, prefix) = split_bucket(rest, "bucket").map_err(err)?;
            check_bucket(&bucket).map_err(err)?;
            Ok(Location::Gcs { bucket, prefix })
        }
        other => Err(err(format!("unknown scheme {other:?}: use {SCHEMES}"))),
    }
}

/// Splits a leading URL scheme (`word:`, the word made of ASCII letters, digits, `+`, `-` and
/// `.`) from the rest. A path such as `./a:b` or `/x/y:z` has none.
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (word, after) = s.split_once(':')?;
    let is_scheme = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    is_scheme.then_some((word, after))
}

/// Why `scheme:after` (no `//` after the colon) is refused, with the spelling that works.
fn misspelt(scheme: &str, after: &str, whole: &str) -> String {
    let lower = scheme.to_ascii_lowercase();
    let tail = after.trim_start_matches(['/', '\\']);
    match lower.as_str() {
        "s3" | "s3a" | "az" | "azure" | "gs" | "gcs" => {
            let what = if matches!(lower.as_str(), "az" | "azure") {
                "container"
            } else {
                "bucket"
            };
            let example = if tail.is_empty() {
                format!("{what}/prefix")
            } else {
                tail.to_string()
            };
            format!("{lower}: URLs take two slashes: did you mean {lower}://{example}?")
        }
        "file" if after.starts_with('/') => {
            let path = format!("/{}", after.trim_start_matches('/'));
            format!(
                "file: URLs take three slashes before an absolute path: did you mean \
                 file://{path}? (or give the plain path {path})"
            )
        }
        "file" => format!(
            "file: URLs need an absolute path (file:///abs/path): for a folder relative to the \
             current one give the plain path ./{tail}"
        ),
        _ => format!(
            "{scheme}: looks like a URL scheme esbackup does not know: use {SCHEMES}; for a \
             local folder whose name has a colon, write ./{whole}"
        ),
    }
}

/// `file:///abs/path` or `file://localhost/abs/path`, percent-decoded.
fn parse_file(rest: &str) -> Result<PathBuf, String> {
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    if !path.starts_with('/') {
        return Err(format!(
            "file:// URLs need an absolute path with three slashes (file:///{rest}), or give a \
             plain path"
        ));
    }
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| "the path is not valid UTF-8 once decoded".to_string())?;
    Ok(PathBuf::from(decoded.as_ref()))
}

/// Splits `bucket/some/prefix/` into the bucket and a prefix without outer slashes.
fn split_bucket(rest: &str, what: &str) -> Result<(String, String), String> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("missing {what} name: write scheme://{what}/prefix"));
    }
    let prefix = prefix.trim_end_matches('/');
    if prefix.split('/').any(|s| s == "." || s == "..")
        || (!prefix.is_empty() && prefix.split('/').any(str::is_empty))
    {
        return Err(format!(
            "bad prefix {prefix:?}: use /-separated names with no empty, . or .. segment"
        ));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// S3 and GCS bucket names: 3 to 63 (GCS: up to 222 with dots) lowercase letters, digits, `-`,
/// `.` and (GCS) `_`.
fn check_bucket(bucket: &str) -> Result<(), String> {
    let ok_chars = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_'));
    if !ok_chars || bucket.len() < 3 || bucket.len() > 222 {
        return Err(format!(
            "bad bucket name {bucket:?}: use 3 to 63 lowercase letters, digits, '-' or '.'"
        ));
    }
    Ok(())
}

/// Azure container names: 3 to 63 lowercase letters, digits and `-`.
fn check_container(container: &str) -> Result<(), String> {
    let ok_chars = container
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok_chars || container.len() < 3 || container.len() > 63 {
        return Err(format!(
            "bad container name {container:?}: use 3 to 63 lowercase letters, digits or '-'"
        ));
    }
    Ok(())
}

/// Opens the target a storage URL names, configured by `opts` over the cloud's environment
/// variables (see the crate docs). Makes no request and creates nothing (a local folder is
/// created by the first write): credentials are fetched on first use.
pub fn open_target(url: &str, opts: &TargetOptions) -> Result<Arc<dyn Target>, BackendError> {
    open_target_with_client(url, opts, &|client| client)
}

/// [`open_target`], with `hook` adjusting the HTTP client options of a cloud target once the
/// storage options are applied (a proxy, a DNS resolver, default headers). It applies to every
/// S3 and Azure request, and to GCS reads, listings and deletes (GCS writes use their own
/// client). Library use: the CLI has no need for it.
pub fn open_target_with_client(
    url: &str,
    opts: &TargetOptions,
    hook: &ClientHook,
) -> Result<Arc<dyn Target>, BackendError> {
    Ok(match parse_location(url)? {
        Location::Local(root) => Arc::new(crate::folder::open_local(&root)?),
        Location::S3 { bucket, prefix } => {
            Arc::new(crate::s3::open_s3(&bucket, &prefix, opts, hook)?)
        }
        Location::Azure { container, prefix } => {
            Arc::new(crate::azure::open_azure(&container, &prefix, opts, hook)?)
        }
        Location::Gcs { bucket, prefix } => {
            Arc::new(crate::gcs::open_gcs(&bucket, &prefix, opts, hook)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(url: &str) -> Location {
        parse_location(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn fails(url: &str, needle: &str) {
        let e = parse_location(url).unwrap_err().to_string();
        assert!(e.contains(needle), "{url}: {e:?} lacks {needle:?}");
        assert!(!e.contains('\n'), "{e:?} is not one line");
    }

    /// `url` is the local folder `path`.
    fn local(url: &str, path: &str) {
        assert_eq!(loc(url), Location::Local(path.into()), "{url}");
    }

    #[test]
    fn paths_and_file_urls() {
        local("/backups/node1", "/backups/node1");
        local("rel/dir", "rel/dir");
        local("file:///backups/a%20b", "/backups/a b");
        local("file://localhost/b", "/b");
        fails("file://backups", "three slashes");
        fails("", "empty");
    }

    #[test]
    fn relative_plain_paths_stay_local_folders() {
        for path in ["backups/node1", "./x", "../x", "node1"] {
            local(path, path);
        }
        // A colon after the first slash, or behind ./, is part of a folder name.
        for path in ["./s3:x", "dir/s3:x", "/abs/a:b"] {
            local(path, path);
        }
    }

    #[test]
    fn scheme_typos_are_refused_with_the_right_spelling() {
        fails("s3:/bucket/node1", "did you mean s3://bucket/node1?");
        fails("s3:bucket/node1", "did you mean s3://bucket/node1?");
        fails("S3:/bucket", "did you mean s3://bucket?");
        fails("gs:/bucket", "did you mean gs://bucket?");
        fails("gcs:bucket", "did you mean gcs://bucket?");
        fails("az:container/x", "did you mean az://container/x?");
        fails("azure:/c/x", "did you mean azure://c/x?");
        fails("s3:", "did you mean s3://bucket/prefix?");
        fails("file:/abs/path", "did you mean file:///abs/path?");
        fails("file://abs", "three slashes");
        fails("file:relative", "give the plain path ./relative");
        fails("backup:2024", "write ./backup:2024");
        fails("C:\\backups", "does not know");
        fails("ftp:/host/x", "does not know");
    }

    #[test]
    fn cloud_urls() {
        let s3 = |b: &str, p: &str| Location::S3 {
            bucket: b.into(),
            prefix: p.into(),
        };
        assert_eq!(loc("s3://bkp/node1/"), s3("bkp", "node1"));
        assert_eq!(loc("s3://bkp"), s3("bkp", ""));
        assert_eq!(loc("S3://bkp/a/b"), s3("bkp", "a/b"));
        let az = Location::Azure {
            container: "cont".into(),
            prefix: "x".into(),
        };
        assert_eq!(loc("az://cont/x"), az);
        assert_eq!(loc("azure://cont/x"), az);
        assert_eq!(
            loc("gs://my_bucket.example/p"),
            Location::Gcs {
                bucket: "my_bucket.example".into(),
                prefix: "p".into()
            }
        );
    }

    #[test]
    fn bad_urls_say_what_to_fix() {
        fails("ftp://host/x", "unknown scheme \"ftp\"");
        fails("s3://", "missing bucket");
        fails("s3:///prefix", "missing bucket");
        fails("az://", "missing container");
        fails("gs://Bad_Bucket/x", "bad bucket name");
        fails("az://under_score/x", "bad container name");
        fails("s3://bkp/a//b", "bad prefix");
        fails("s3://bkp/../b", "bad prefix");
        fails("s3://bkp/p?region=x", "query strings");
    }

    /// Opening a cloud target makes no request: these run without any server.
    mod open {
        use super::super::*;
        use crate::options::ByteSize;
        use bytes::Bytes;
        use esbackup_engine::TargetErrorKind;

        fn garage() -> TargetOptions {
            TargetOptions {
                endpoint: Some("http://127.0.0.1:9".into()),
                region: Some("garage".into()),
                access_key_id: Some("GK0000".into()),
                secret_access_key: Some("secret".into()),
                ..Default::default()
            }
        }

        fn open_err(url: &str, opts: &TargetOptions) -> String {
            let e = open_target(url, opts).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{e:?} is not one line");
            e
        }

        #[tokio::test]
        async fn s3_opens_and_refuses_create_if_absent_on_compatible_stores() {
            let t = open_target("s3://bkt/p/q/", &garage()).unwrap();
            assert_eq!(t.describe(), "s3://bkt/p/q");
            let e = t.put_if_absent("lock", Bytes::new()).await.unwrap_err();
            assert!(e.kind() == TargetErrorKind::Unsupported, "{e:?}");
            let https = TargetOptions {
                endpoint: Some("https://s3.example.com".into()),
                ..garage()
            };
            assert_eq!(
                open_target("s3://bkt", &https).unwrap().describe(),
                "s3://bkt"
            );
        }

        #[test]
        fn s3_configuration_errors_say_what_to_fix() {
            let no_http = TargetOptions {
                allow_http: Some(false),
                ..garage()
            };
            assert!(open_err("s3://bkt", &no_http).contains("allow_http"));
            let half_keys = TargetOptions {
                secret_access_key: None,
                ..garage()
            };
            assert!(open_err("s3://bkt", &half_keys).contains("secret_access_key"));
            let tiny_parts = TargetOptions {
                part_size: Some(ByteSize(1 << 20)),
                ..garage()
            };
            assert!(open_err("s3://bkt", &tiny_parts).contains("part_size"));
        }

        #[test]
        fn azure_opens_an_emulator_endpoint_and_needs_an_account() {
            let emulator = TargetOptions {
                use_emulator: Some(true),
                endpoint: Some("http://127.0.0.1:10000".into()),
                ..Default::default()
            };
            let t = open_target("azure://cont/x", &emulator).unwrap();
            assert_eq!(t.describe(), "az://cont/x");
            if std::env::var_os("AZURE_STORAGE_ACCOUNT_NAME").is_none() {
                let real = TargetOptions {
                    use_emulator: Some(false),
                    ..Default::default()
                };
                assert!(open_err("az://cont", &real).contains("AZURE_STORAGE_ACCOUNT_NAME"));
            }
        }

        #[tokio::test]
        async fn gcs_reads_the_emulator_key_and_disables_preconditions_off_google() {
            let dir = tempfile::tempdir().unwrap();
            let key = dir.path().join("sa.json");
            std::fs::write(
                &key,
                r#"{"gcs_base_url": "http://127.0.0.1:9", "disable_oauth": true,
                    "client_email": "", "private_key": "", "private_key_id": ""}"#,
            )
            .unwrap();
            let opts = TargetOptions {
                service_account: Some(key.display().to_string()),
                ..Default::default()
            };
            let t = open_target("gs://bkt/pre", &opts).unwrap();
            assert_eq!(t.describe(), "gs://bkt/pre");
            let e = t.put_if_absent("lock", Bytes::new()).await.unwrap_err();
            assert!(e.kind() == TargetErrorKind::Unsupported, "{e:?}");

            let missing = TargetOptions {
                service_account: Some(dir.path().join("nope.json").display().to_string()),
                ..Default::default()
            };
            assert!(open_err("gs://bkt", &missing).contains("GOOGLE_SERVICE_ACCOUNT"));
        }
    }
}
