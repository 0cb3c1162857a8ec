//! Engine errors. Each names what to fix and maps to a documented process exit code.

use crate::target::TargetError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The source folder is not an EventStoreDB / KurrentDB database.
    #[error("{0}")]
    NotADatabase(String),
    /// The source and the backup disagree on which database this is, or a restore destination
    /// or option is unusable.
    #[error("{0}")]
    BadInput(String),
    /// Another run holds the lock on this backup location.
    #[error("{0}")]
    LockHeld(String),
    /// The source changed in a way a file-copy backup cannot follow (a scavenge is running, the
    /// index keeps changing).
    #[error("{0}")]
    SourceChanging(String),
    /// No backup, or none that ever completed, at the location.
    #[error("{0}")]
    NoBackup(String),
    /// The restore destination holds files and `--force` was not given.
    #[error("{0}")]
    DestinationNotEmpty(String),
    /// The backup fails verification.
    #[error("{0}")]
    Corrupt(String),
    /// The storage failed.
    #[error("storage: {0}")]
    Storage(#[from] TargetError),
    /// A local file operation failed.
    #[error("{0}")]
    Io(String),
}

impl EngineError {
    /// The exit code documented in the README for this kind of error.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::Io(_) => 1,
            EngineError::NotADatabase(_) | EngineError::BadInput(_) => 3,
            EngineError::LockHeld(_) => 4,
            EngineError::Corrupt(_) => 5,
            EngineError::SourceChanging(_) => 6,
            EngineError::Storage(_) => 7,
            EngineError::NoBackup(_) => 8,
            EngineError::DestinationNotEmpty(_) => 9,
        }
    }

    pub(crate) fn io(context: impl std::fmt::Display, err: std::io::Error) -> EngineError {
        EngineError::Io(format!("{context}: {err}"))
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
