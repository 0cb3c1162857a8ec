//! [`TargetError`]: how a [`Target`](crate::Target) says a request failed.
//!
//! # Error rules
//!
//! - **The kind decides, never the text.** Retrying layers, the engine and the CLI's exit
//!   codes look only at [`TargetError::kind`]; a backend classifies once, where it still has
//!   the store's own typed error (object_store's `NotFound`, `AlreadyExists`, `Precondition`,
//!   an HTTP status), and nobody reads a message back.
//! - **The cause is kept, not printed into the message.** The store's error goes in
//!   [`TargetError::with_source`]; the message says only what the backend adds (the operation,
//!   a hint). Printing walks the sources (`EngineError::chain` in the engine).
//! - **The key is named** when the failure is about one object ([`TargetError::key`]); a
//!   failure of a listing or of the bucket itself names the operation in the message instead.
//! - **A body that could not be read is not the store's failure**: it is
//!   [`TargetErrorKind::Body`] with the `std::io::Error` of the read as its source (use
//!   [`TargetError::body`]), so the engine can tell "the file changed while it was copied"
//!   from "the store failed".

use std::fmt;
use std::io;

/// A boxed error cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The kinds of storage failure a caller acts on differently.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetErrorKind {
    /// The object (or the copy's source) does not exist.
    NotFound,
    /// `put_if_absent` found the key taken.
    AlreadyExists,
    /// Worth retrying: timeouts, throttling (429/503/SlowDown), 5xx, connection resets.
    Transient,
    /// Not worth retrying: bad credentials, a missing bucket, an invalid request.
    Permanent,
    /// The store cannot do this operation (e.g. create-if-absent on Garage).
    Unsupported,
    /// The object is there but does not decode (a compressed or encrypted location's object
    /// that was changed, cut or written with another key): damage, not a store failure.
    Damaged,
    /// The upload's body could not be read (a local file vanished, shrank or failed its own
    /// MD5): the source's failure, not the store's. Nothing was stored.
    Body,
}

/// A failed storage request: its kind, the key it was about, what the backend adds, and the
/// store's own error as the source.
#[derive(Debug)]
pub struct TargetError {
    kind: TargetErrorKind,
    key: Option<String>,
    message: String,
    source: Option<BoxError>,
}

impl TargetError {
    /// An error of `kind` saying `message` (may be empty when the source says it all).
    pub fn new(kind: TargetErrorKind, message: impl Into<String>) -> TargetError {
        TargetError {
            kind,
            key: None,
            message: message.into(),
            source: None,
        }
    }

    /// `key` does not exist.
    pub fn not_found(key: impl Into<String>) -> TargetError {
        TargetError::new(TargetErrorKind::NotFound, "").with_key(key)
    }

    /// `key` exists (from `put_if_absent`).
    pub fn already_exists(key: impl Into<String>) -> TargetError {
        TargetError::new(TargetErrorKind::AlreadyExists, "").with_key(key)
    }

    /// A failure worth retrying.
    pub fn transient(message: impl Into<String>) -> TargetError {
        TargetError::new(TargetErrorKind::Transient, message)
    }

    /// A failure not worth retrying.
    pub fn permanent(message: impl Into<String>) -> TargetError {
        TargetError::new(TargetErrorKind::Permanent, message)
    }

    /// An operation this store cannot do.
    pub fn unsupported(message: impl Into<String>) -> TargetError {
        TargetError::new(TargetErrorKind::Unsupported, message)
    }

    /// Reading the body of the upload for `key` failed with `err` (see the error rules).
    pub fn body(key: impl Into<String>, err: io::Error) -> TargetError {
        TargetError::new(TargetErrorKind::Body, "reading the upload")
            .with_key(key)
            .with_source(err)
    }

    /// Names the key the failure is about.
    pub fn with_key(mut self, key: impl Into<String>) -> TargetError {
        self.key = Some(key.into());
        self
    }

    /// Keeps the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> TargetError {
        self.source = Some(source.into());
        self
    }

    pub fn kind(&self) -> TargetErrorKind {
        self.kind
    }

    /// The key the failure is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// What the backend said, without the key or the cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn is_transient(&self) -> bool {
        self.kind == TargetErrorKind::Transient
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == TargetErrorKind::NotFound
    }

    /// For a [`TargetErrorKind::Body`] error, the kind of the read's I/O error.
    pub fn body_failure(&self) -> Option<io::ErrorKind> {
        if self.kind != TargetErrorKind::Body {
            return None;
        }
        let io = self.source.as_deref()?.downcast_ref::<io::Error>()?;
        Some(io.kind())
    }
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            TargetErrorKind::NotFound => "not found",
            TargetErrorKind::AlreadyExists => "already exists",
            TargetErrorKind::Transient => "transient storage error",
            TargetErrorKind::Permanent => "storage error",
            TargetErrorKind::Unsupported => "not supported by this store",
            TargetErrorKind::Body => "upload failed",
            TargetErrorKind::Damaged => "damaged object",
        })?;
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for TargetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_kind_key_and_message_but_not_the_source() {
        let e = TargetError::permanent("403 Forbidden").with_key("chunk-000000.000000");
        assert_eq!(
            e.to_string(),
            "storage error: chunk-000000.000000: 403 Forbidden"
        );
        let e = TargetError::not_found("index/indexmap");
        assert_eq!(e.to_string(), "not found: index/indexmap");
        assert!(e.is_not_found());
    }

    #[test]
    fn a_body_error_keeps_the_io_kind_of_the_read() {
        let e = TargetError::body("k", io::Error::from(io::ErrorKind::UnexpectedEof));
        assert_eq!(e.kind(), TargetErrorKind::Body);
        assert_eq!(e.body_failure(), Some(io::ErrorKind::UnexpectedEof));
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(TargetError::permanent("x").body_failure(), None);
    }
}
