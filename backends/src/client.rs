//! HTTP settings shared by the cloud backends: timeouts and retries sized for 256 MiB objects on
//! slow links, plain-HTTP endpoints, extra CA certificates.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use esbackup_engine::equal_jitter;
use object_store::{BackoffConfig, Certificate, ClientOptions, RetryConfig};

use crate::error::BackendError;
use crate::options::{
    TargetOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RETRIES, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_RETRY_TIMEOUT,
};

/// Request timeout, connect timeout, retries and retry deadline from `opts`, else defaults.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HttpSettings {
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_retries: usize,
    pub retry_timeout: Duration,
}

impl HttpSettings {
    pub fn new(opts: &TargetOptions) -> Self {
        HttpSettings {
            request_timeout: opts
                .request_timeout
                .map_or(DEFAULT_REQUEST_TIMEOUT, |d| d.0),
            connect_timeout: opts
                .connect_timeout
                .map_or(DEFAULT_CONNECT_TIMEOUT, |d| d.0),
            max_retries: opts.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
            retry_timeout: opts.retry_timeout.map_or(DEFAULT_RETRY_TIMEOUT, |d| d.0),
        }
    }

    /// object_store's retries: its decorrelated-jitter backoff, 200 ms up to 30 s.
    pub fn retry_config(&self) -> RetryConfig {
        RetryConfig {
            backoff: self.backoff(),
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }

    pub fn backoff(&self) -> BackoffConfig {
        BackoffConfig {
            init_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            base: 2.0,
        }
    }

    /// object_store client options: the overall request timeout leaves room for a whole part
    /// or a whole chunk download on a slow link.
    pub fn client_options(&self, allow_http: bool) -> ClientOptions {
        ClientOptions::new()
            .with_timeout(self.request_timeout)
            .with_connect_timeout(self.connect_timeout)
            .with_allow_http(allow_http)
    }
}

/// The waits between tries of our own requests (those object_store does not make for us): the
/// engine's [`equal_jitter`] backoff from `init_backoff` up to `max_backoff`, at most
/// `max_retries` of them and none once `retry_timeout` has passed since the first try. (Its
/// bounds are those of object_store's backoff; object_store draws its own jitter.)
pub(crate) struct Backoff {
    start: Instant,
    delays: <ExponentialBuilder as BackoffBuilder>::Backoff,
    retry_timeout: Duration,
}

impl Backoff {
    pub fn new(settings: HttpSettings) -> Self {
        let b = settings.backoff();
        Backoff {
            start: Instant::now(),
            delays: equal_jitter(b.init_backoff, b.max_backoff)
                .with_factor(b.base as f32)
                .with_max_times(settings.max_retries)
                .build(),
            retry_timeout: settings.retry_timeout,
        }
    }

    /// Sleeps before the next attempt, or returns false when retries are exhausted.
    pub async fn wait(&mut self) -> bool {
        if self.start.elapsed() > self.retry_timeout {
            return false;
        }
        let Some(delay) = self.delays.next() else {
            return false;
        };
        tokio::time::sleep(delay).await;
        true
    }
}

/// Whether plain HTTP is allowed: `explicit` (option or environment) if given, else whether
/// `endpoint` is `http://` (naming an http endpoint is taken as the intent). An explicit `false`
/// with an http endpoint is an error.
pub(crate) fn allow_http(
    explicit: Option<bool>,
    endpoint: Option<&str>,
) -> Result<bool, BackendError> {
    let is_http = endpoint.is_some_and(is_http);
    match explicit {
        Some(false) if is_http => Err(BackendError::Config(format!(
            "endpoint {} is plain http:// but storage.allow_http is false: use https:// or set \
             allow_http: true",
            endpoint.unwrap_or_default()
        ))),
        Some(v) => Ok(v),
        None => Ok(is_http),
    }
}

/// Extra root certificates from a PEM bundle named by the environment variable `var` (such as
/// `AWS_CA_BUNDLE`), for https endpoints signed by a private CA. Skipped for http endpoints.
pub(crate) fn ca_bundle(
    options: ClientOptions,
    var: &str,
    endpoint_is_http: bool,
) -> Result<ClientOptions, BackendError> {
    let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) else {
        return Ok(options);
    };
    if endpoint_is_http {
        return Ok(options);
    }
    let bad = |reason: String| {
        BackendError::Config(format!(
            "{var}={}: {reason} (fix or unset {var})",
            path.to_string_lossy()
        ))
    };
    let pem = std::fs::read(&path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let certs = Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs
        .into_iter()
        .fold(options, |o, cert| o.with_root_certificate(cert)))
}

/// Whether a URL is plain `http://`.
pub(crate) fn is_http(url: &str) -> bool {
    url.to_ascii_lowercase().starts_with("http://")
}

/// A non-empty environment variable.
pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A boolean environment variable (`true`/`1`/`yes`/`on`, `false`/`0`/`no`/`off`).
pub(crate) fn env_bool(name: &str) -> Result<Option<bool>, BackendError> {
    parse_bool(name, env(name))
}

/// A boolean setting `name` whose text is `value` (as [`env_bool`] reads it).
pub(crate) fn parse_bool(name: &str, value: Option<String>) -> Result<Option<bool>, BackendError> {
    match value {
        None => Ok(None),
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" => Ok(Some(false)),
            _ => Err(BackendError::Config(format!(
                "{name}={v:?} is not a boolean: use true or false"
            ))),
        },
    }
}

/// Adjusts the object_store HTTP client options of a cloud target after esbackup has applied
/// the storage options: a proxy, a DNS resolver, default headers (see
/// [`open_target_with_client`](crate::open_target_with_client)).
pub type ClientHook = dyn Fn(ClientOptions) -> ClientOptions + Send + Sync;
