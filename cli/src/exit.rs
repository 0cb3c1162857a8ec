//! Exit codes and the one-line error an operator sees.

use esbackup_engine::EngineError;

/// Bad usage or config.
pub const USAGE: i32 = 2;

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
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

impl From<esbackup_backends::BackendError> for Failure {
    fn from(e: esbackup_backends::BackendError) -> Self {
        Failure::usage(e.to_string())
    }
}
