//! Exit codes — the one table that maps each kind of failure to one — and the one-line error
//! an operator sees.

use esbackup_engine::{EngineError, ErrorKind};

/// Bad usage, config or option value.
pub const USAGE: i32 = 2;
/// The backup is damaged or fails verification.
pub const DAMAGED: i32 = 5;
/// No backup at the target.
pub const NO_BACKUP: i32 = 8;

/// The exit code of each kind of engine failure (documented in `--help` and the README).
pub fn code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::LocalIo => 1,
        ErrorKind::InvalidInput => USAGE,
        ErrorKind::NotADatabase => 3,
        ErrorKind::LockHeld => 4,
        ErrorKind::Damaged => DAMAGED,
        ErrorKind::SourceChanging => 6,
        ErrorKind::Storage => 7,
        ErrorKind::NoBackup => NO_BACKUP,
        ErrorKind::DestinationNotEmpty => 9,
        ErrorKind::WrongLocation => 10,
        _ => 1,
    }
}

/// A failed command: its exit code and a one-line message saying what to fix.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: USAGE,
            message: message.into(),
        }
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure {
            code: code(e.kind()),
            message: e.to_string(),
        }
    }
}

impl From<esbackup_backends::BackendError> for Failure {
    fn from(e: esbackup_backends::BackendError) -> Self {
        Failure::usage(e.to_string())
    }
}
