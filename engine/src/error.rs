//! Engine errors: what kind of failure it is (the CLI maps kinds to exit codes), a one-line
//! message that says what to fix, and the underlying cause when there is one.

use std::fmt;

use crate::target::TargetError;

/// The kinds of failure an operator acts on differently.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A local file operation failed (permissions, disk full, too many open files).
    LocalIo,
    /// An option or argument is unusable (an unknown restore point, a bad time).
    InvalidInput,
    /// The source is not a database, is damaged, or is another database than the backup's.
    NotADatabase,
    /// Another run holds the lock on this backup location, or another restore is writing into
    /// this restore destination.
    LockHeld,
    /// The backup is damaged: a file it records is missing or differs.
    Damaged,
    /// The source changed in a way a file copy cannot follow (a scavenge is running).
    SourceChanging,
    /// The storage failed.
    Storage,
    /// No backup, or no restore point, at the location.
    NoBackup,
    /// The restore destination holds files and `--force` was not given.
    DestinationNotEmpty,
    /// The backup location or restore destination overlaps the database, is a database, or is
    /// not a backup location: refused before anything was written.
    WrongLocation,
    /// A stop was requested ([`crate::Stop`]) before the run completed.
    Interrupted,
    /// The node's admin API, asked to stop its scavenge for the run, failed or refused.
    Node,
}

/// A failed engine operation.
#[derive(Debug)]
pub struct EngineError {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl EngineError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> EngineError {
        EngineError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause (printed after the message by [`EngineError::chain`]).
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> EngineError {
        self.source = Some(source.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The operator's message, without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The message followed by every cause not already in it, on one line.
    pub fn chain(&self) -> String {
        let mut out = self.message.clone();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = self
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static));
        while let Some(err) = cur {
            let text = err.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            cur = err.source();
        }
        out.replace('\n', " ")
    }

    /// A local I/O failure on `path`, classified by its cause: running out of file handles or
    /// space is the machine's problem, not the database's.
    pub fn io(path: impl fmt::Display, err: std::io::Error) -> EngineError {
        let hint = match err.raw_os_error() {
            Some(24) => " (too many open files: raise `ulimit -n` or lower --concurrency)",
            Some(28) => " (no space left on the device)",
            _ => "",
        };
        EngineError::new(ErrorKind::LocalIo, format!("{path}{hint}")).with_source(err)
    }

    /// A storage failure while doing `what` (an object key or an operation).
    pub fn storage(what: impl fmt::Display, err: TargetError) -> EngineError {
        if err.kind() == crate::target::TargetErrorKind::Damaged {
            return EngineError::new(ErrorKind::Damaged, format!("{what} is damaged"))
                .with_source(err);
        }
        EngineError::new(ErrorKind::Storage, format!("storage: {what}")).with_source(err)
    }
}

/// `EngineError::<name>(message)`: an error of kind `ErrorKind::<Kind>`.
macro_rules! constructors_by_kind {
    ($($name:ident => $kind:ident),* $(,)?) => {
        impl EngineError {
            $(
                #[doc = concat!("An error of kind [`ErrorKind::", stringify!($kind), "`].")]
                pub fn $name(message: impl Into<String>) -> EngineError {
                    EngineError::new(ErrorKind::$kind, message)
                }
            )*
        }
    };
}

constructors_by_kind!(
    not_a_database => NotADatabase,
    damaged => Damaged,
    invalid_input => InvalidInput,
    wrong_location => WrongLocation,
    source_changing => SourceChanging,
    no_backup => NoBackup,
);

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.chain())
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<TargetError> for EngineError {
    fn from(err: TargetError) -> Self {
        let what = err.key().unwrap_or("request failed").to_string();
        EngineError::storage(what, err)
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_keeps_every_cause_on_one_line() {
        let io = std::io::Error::from_raw_os_error(24);
        let e = EngineError::io("/db/chunk-000001.000000", io);
        assert_eq!(e.kind(), ErrorKind::LocalIo);
        let text = e.to_string();
        assert!(text.contains("too many open files"), "{text}");
        assert!(text.contains("os error 24"), "{text}");
        assert!(!text.contains('\n'));
        let s = EngineError::storage(
            "chunk-000001.000000",
            TargetError::permanent("403 Forbidden"),
        );
        assert_eq!(
            s.to_string(),
            "storage: chunk-000001.000000: storage error: 403 Forbidden"
        );
    }
}
