//! [`BackendError`] (opening a target) and the one mapping of object_store's errors onto
//! [`TargetError`], following the engine's error rules (`esbackup_engine::target_error`):
//!
//! - object_store's own variants are matched (`NotFound`, `AlreadyExists`, `Precondition`,
//!   `NotImplemented`, …), never read back from their text;
//! - the object_store error is kept as the source and the key named with `with_key`; the
//!   message says only what the backend adds (often nothing);
//! - a `Generic` error is transient when its chain holds a typed transport failure
//!   ([`HttpError`], an I/O timeout or reset) or, where object_store keeps the HTTP status in
//!   a crate-private type, when [`status_in_text`] finds a 408, 429 or 5xx status.
//!
//! A [`BackendError`] says by its [`BackendErrorCause`] whether the URL or configuration is
//! wrong (bad usage), a local folder cannot be used (local I/O) or the store's client cannot be
//! set up (storage), and keeps the underlying error as its source.

use esbackup_engine::{BoxError, TargetError, TargetErrorKind};
use object_store::client::{HttpError, HttpErrorKind};

/// Why a target could not be opened: each message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The URL is malformed or names an unknown scheme.
    #[error("invalid storage URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    /// An option or environment variable has a bad value.
    #[error("invalid storage configuration: {0}")]
    Config(String),
    /// The local folder cannot be used (a part of its path is a file, it cannot be read).
    #[error("cannot use the folder {path}: {reason}")]
    Folder {
        path: String,
        reason: String,
        #[source]
        source: Option<std::io::Error>,
    },
    /// The store's client could not be set up (credentials, TLS, the HTTP client).
    #[error("cannot open storage {location}: {reason}")]
    Store {
        location: String,
        reason: String,
        #[source]
        source: Option<BoxError>,
    },
}

/// What kind of failure a [`BackendError`] is, for exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendErrorCause {
    /// A bad URL, option or environment variable: fix the invocation.
    Usage,
    /// A local folder that cannot be used.
    LocalIo,
    /// The store's client could not be set up.
    Storage,
}

impl BackendError {
    pub(crate) fn url(url: &str, reason: impl Into<String>) -> Self {
        BackendError::Url {
            url: url.into(),
            reason: reason.into(),
        }
    }

    pub fn cause(&self) -> BackendErrorCause {
        match self {
            BackendError::Url { .. } | BackendError::Config(_) => BackendErrorCause::Usage,
            BackendError::Folder { .. } => BackendErrorCause::LocalIo,
            BackendError::Store { .. } => BackendErrorCause::Storage,
        }
    }
}

/// Maps an `object_store` error about `key` onto the engine's error kinds, keeping it as the
/// source.
pub(crate) fn map_store_error(key: &str, e: object_store::Error) -> TargetError {
    let (kind, hint) = classify(&e);
    TargetError::new(kind, hint).with_key(key).with_source(e)
}

/// Maps the failure of a request that is not about one key (a listing, the bucket itself):
/// `what` names the operation instead.
pub(crate) fn map_request_error(what: &str, e: object_store::Error) -> TargetError {
    let (kind, _) = classify(&e);
    TargetError::new(kind, what).with_source(e)
}

/// The kind of an object_store error, by its variant (and for a `Generic` one, its chain), and
/// what to add to its message.
pub(crate) fn classify(e: &object_store::Error) -> (TargetErrorKind, &'static str) {
    use object_store::Error as E;
    use TargetErrorKind as K;
    match e {
        E::NotFound { .. } => (K::NotFound, ""),
        E::AlreadyExists { .. } | E::Precondition { .. } => (K::AlreadyExists, ""),
        E::NotImplemented { .. } | E::NotSupported { .. } => (K::Unsupported, ""),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => (
            K::Permanent,
            "check the store's credentials and their permissions",
        ),
        E::JoinError { .. } => (K::Transient, ""),
        E::Generic { source, .. } => match status_in_text(source.as_ref()) {
            Some(404) => (K::NotFound, ""),
            _ if is_transient(e) => (K::Transient, ""),
            _ => (K::Permanent, ""),
        },
        _ => (K::Permanent, ""),
    }
}

/// Whether a failure is worth retrying later: a typed transport failure anywhere in its chain
/// (object_store's public [`HttpError`], an I/O timeout or reset), else a retryable status.
pub(crate) fn is_transient(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(http) = err.downcast_ref::<HttpError>() {
            return transport_is_transient(http.kind());
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            if matches!(
                io.kind(),
                K::TimedOut | K::Interrupted | K::ConnectionReset | K::ConnectionAborted
            ) {
                return true;
            }
        }
        cur = err.source();
    }
    status_in_text(e).is_some_and(status_is_transient)
}

pub(crate) fn transport_is_transient(kind: HttpErrorKind) -> bool {
    matches!(
        kind,
        HttpErrorKind::Connect
            | HttpErrorKind::Request
            | HttpErrorKind::Timeout
            | HttpErrorKind::Interrupted
    )
}

/// Statuses worth retrying: timeouts, throttling and server errors.
pub(crate) fn status_is_transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// The HTTP status a failed object_store request answered, read from the error's text: the
/// one text fallback. object_store keeps the status in its crate-private `RetryError`, which
/// only its own `NotFound`/`Precondition`/… mapping reads, and wraps the rest (a listing's 404
/// for a missing bucket, 5xx, 429) in `Generic` errors whose only public trace of the status is
/// their message (`... status code: 503 Service Unavailable ...`); see
/// apache/arrow-rs-object-store#737. S3 also reports some throttling and timeouts only by their
/// error code (`SlowDown`, `RequestTimeout` on a 400), read here as a 503.
fn status_in_text(e: &(dyn std::error::Error + 'static)) -> Option<u16> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if let Some(at) = text.find("status code: ") {
            return text[at + 13..].get(..3)?.parse().ok();
        }
        const TRANSIENT_CODES: [&str; 5] = [
            "<Code>SlowDown",
            "<Code>RequestTimeout",
            "<Code>InternalError",
            "ServerBusy",
            "OperationTimedOut",
        ];
        if TRANSIENT_CODES.iter().any(|code| text.contains(code)) {
            return Some(503);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(text: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: text.to_string().into(),
        }
    }

    #[test]
    fn statuses_and_codes_classify() {
        let busy = "Error performing PUT http://x in 1s - Server returned non-2xx status code: \
                    503 Service Unavailable: ";
        assert_eq!(
            map_store_error("k", generic(busy)).kind(),
            TargetErrorKind::Transient
        );
        assert_eq!(
            map_store_error("k", generic("<Code>SlowDown</Code>")).kind(),
            TargetErrorKind::Transient
        );
        let bad = "Server returned non-2xx status code: 400 Bad Request: bad";
        assert_eq!(
            map_store_error("k", generic(bad)).kind(),
            TargetErrorKind::Permanent
        );
        let missing = "Server returned non-2xx status code: 404 Not Found: NoSuchBucket";
        assert!(map_store_error("k", generic(missing)).is_not_found());
        let nf = object_store::Error::NotFound {
            path: "p".into(),
            source: "gone".into(),
        };
        let e = map_store_error("k", nf);
        assert!(e.is_not_found() && e.key() == Some("k"), "{e:?}");
        assert!(std::error::Error::source(&e).is_some(), "the cause is kept");
        let ni = object_store::Error::NotImplemented {
            operation: "put_if_absent".into(),
            implementer: "x".into(),
        };
        assert_eq!(
            map_store_error("k", ni).kind(),
            TargetErrorKind::Unsupported
        );
    }

    #[test]
    fn the_message_does_not_repeat_the_cause() {
        let e = map_store_error("chunk", generic("status code: 400 Bad Request: nope"));
        assert_eq!(e.to_string(), "storage error: chunk");
        let listing = map_request_error("list \"\"", generic("status code: 403 Forbidden"));
        assert_eq!(listing.to_string(), "storage error: list \"\"");
        assert!(listing.key().is_none());
    }
}
