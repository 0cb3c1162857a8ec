//! [`BackendError`] (opening a target) and the mapping of store errors onto
//! [`TargetError`] kinds.

use esbackup_engine::TargetError;

/// Why a target could not be opened: each message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The URL is malformed or names an unknown scheme.
    #[error("invalid storage URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    /// An option or environment variable has a bad value.
    #[error("invalid storage configuration: {0}")]
    Config(String),
    /// The store could not be set up (a folder could not be created, a client failed to build).
    #[error("cannot open storage {location}: {reason}")]
    Open { location: String, reason: String },
}

impl BackendError {
    pub(crate) fn url(url: &str, reason: impl Into<String>) -> Self {
        BackendError::Url {
            url: url.into(),
            reason: reason.into(),
        }
    }
}

/// Maps an `object_store` error for `key` onto the engine's error kinds.
pub(crate) fn map_store_error(key: &str, e: object_store::Error) -> TargetError {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => TargetError::not_found(key),
        E::AlreadyExists { .. } | E::Precondition { .. } => TargetError::already_exists(key),
        E::NotImplemented { .. } | E::NotSupported { .. } => {
            TargetError::unsupported(format!("{key}: {e}"))
        }
        e if is_transient(&e) => TargetError::transient(format!("{key}: {}", chain(&e))),
        e => TargetError::permanent(format!("{key}: {}", chain(&e))),
    }
}

/// Whether the store answered "not found" (404): object_store maps it to
/// [`object_store::Error::NotFound`] for objects, but a listing's 404 (a missing bucket or
/// container) comes back as a generic error that only its message tells.
pub(crate) fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. }) || chain(e).contains("status code: 404")
}

/// The error and its sources, joined into one line.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}

/// Whether a failure is worth retrying later: timeouts, throttling, 5xx, connection trouble.
///
/// object_store's request errors are crate-private types, so beyond its public transport error
/// ([`object_store::client::HttpError`], with cloud features) this reads the status out of the
/// message (`... status code: 503 ...`).
fn is_transient(e: &object_store::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            if matches!(
                io.kind(),
                K::TimedOut | K::Interrupted | K::ConnectionReset | K::ConnectionAborted
            ) {
                return true;
            }
        }
        if transport_error_is_transient(err) {
            return true;
        }
        cur = err.source();
    }
    message_is_transient(&chain(e))
}

fn transport_error_is_transient(err: &(dyn std::error::Error + 'static)) -> bool {
    use object_store::client::{HttpError, HttpErrorKind as K};
    err.downcast_ref::<HttpError>().is_some_and(|h| {
        matches!(
            h.kind(),
            K::Connect | K::Request | K::Timeout | K::Interrupted
        )
    })
}

/// Text-level classification of a status or provider error code.
pub(crate) fn message_is_transient(msg: &str) -> bool {
    const STATUSES: [&str; 6] = ["408", "429", "500", "502", "503", "504"];
    if let Some(at) = msg.find("status code: ") {
        let code = &msg[at + 13..];
        if STATUSES.iter().any(|s| code.starts_with(s)) {
            return true;
        }
    }
    [
        "SlowDown",
        "InternalError",
        "ServerBusy",
        "OperationTimedOut",
        "RequestTimeout",
        "timed out",
        "error sending request",
        "connection reset",
        "Connection reset",
        "connection closed",
    ]
    .iter()
    .any(|needle| msg.contains(needle))
}

/// Maps a local I/O error reading an upload body.
pub(crate) fn upload_read_error(key: &str, e: std::io::Error) -> TargetError {
    TargetError::body(key, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use esbackup_engine::TargetErrorKind;

    #[test]
    fn statuses_and_codes_classify() {
        assert!(message_is_transient(
            "Error performing PUT http://x in 1s - Server returned non-2xx status code: 503 Service Unavailable: "
        ));
        assert!(message_is_transient("<Code>SlowDown</Code>"));
        assert!(!message_is_transient(
            "Server returned non-2xx status code: 400 Bad Request: bad"
        ));
        let nf = object_store::Error::NotFound {
            path: "p".into(),
            source: "gone".into(),
        };
        let e = map_store_error("k", nf);
        assert!(e.is_not_found() && e.key() == Some("k"), "{e:?}");
        let ni = object_store::Error::NotImplemented {
            operation: "put_if_absent".into(),
            implementer: "x".into(),
        };
        assert_eq!(
            map_store_error("k", ni).kind(),
            TargetErrorKind::Unsupported
        );
    }
}
