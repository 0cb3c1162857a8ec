//! Request signing for the fixtures' own independent clients: AWS Signature V4 (S3) and
//! Azure Storage Shared Key. Small on purpose: these clients check what a backup wrote
//! without going through esbackup's own storage code.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::util::uri_encode;

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The headers (host, x-amz-date, x-amz-content-sha256, authorization) that sign `method url`
/// with `body` under AWS Signature V4 for the service "s3".
/// The URL's path must already be URI-encoded (as [`uri_encode`] with `keep_slash` does).
pub fn sigv4_headers(
    method: &str,
    url: &reqwest::Url,
    body: &[u8],
    region: &str,
    access_key: &str,
    secret_key: &str,
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = now.format("%Y%m%d").to_string();
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let payload_hash = hex::encode(Sha256::digest(body));

    let mut query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (uri_encode(&k, false), uri_encode(&v, false)))
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let path = if url.path().is_empty() {
        "/"
    } else {
        url.path()
    };
    let canonical_request = format!(
        "{method}\n{path}\n{canonical_query}\nhost:{host}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{amz_date}\n\nhost;x-amz-content-sha256;x-amz-date\n{payload_hash}"
    );
    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac_sha256(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, b"s3");
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    let signature = hex::encode(hmac_sha256(&k_signing, string_to_sign.as_bytes()));
    vec![
        ("host".into(), host),
        ("x-amz-date".into(), amz_date),
        ("x-amz-content-sha256".into(), payload_hash),
        (
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}"
            ),
        ),
    ]
}

/// The x-ms-version the fixtures' Azure requests declare.
pub const AZURE_API_VERSION: &str = "2021-12-02";

/// The headers (x-ms-date, x-ms-version, authorization, plus `extra`) that sign `method url`
/// for Azure Storage with Shared Key. `extra` must hold every x-ms-* header the request sends
/// (e.g. x-ms-blob-type) and may hold Content-Type; `content_length` is the body's length.
pub fn shared_key_headers(
    method: &str,
    url: &reqwest::Url,
    content_length: usize,
    extra: &[(&str, &str)],
    account: &str,
    key_base64: &str,
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = vec![
        (
            "x-ms-date".into(),
            now.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        ),
        ("x-ms-version".into(), AZURE_API_VERSION.into()),
    ];
    headers.extend(
        extra
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())),
    );

    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut ms: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .cloned()
        .collect();
    ms.sort();
    let canonical_headers: String = ms
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();

    // Resource: /account/path, then each query parameter as "\nname:value", names lowercase
    // and sorted. With the emulator's path-style URLs the account appears twice
    // (/devstoreaccount1/devstoreaccount1/container), as Azure's SDKs sign it.
    let mut resource = format!("/{account}{}", url.path());
    let mut params: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.to_lowercase(), v.into_owned()))
        .collect();
    params.sort();
    for (k, v) in params {
        resource.push_str(&format!("\n{k}:{v}"));
    }

    let length = if content_length == 0 {
        String::new()
    } else {
        content_length.to_string()
    };
    let string_to_sign = format!(
        "{method}\n{}\n{}\n{length}\n{}\n{}\n\n{}\n{}\n{}\n{}\n{}\n{canonical_headers}{resource}",
        get("content-encoding"),
        get("content-language"),
        get("content-md5"),
        get("content-type"),
        get("if-modified-since"),
        get("if-match"),
        get("if-none-match"),
        get("if-unmodified-since"),
        get("range"),
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(key_base64)
        .expect("account key is base64");
    let signature = base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    headers.push((
        "authorization".into(),
        format!("SharedKey {account}:{signature}"),
    ));
    headers
}
