//! Exit codes — the one table that maps each kind of failure to one — and the one-line error
//! an operator sees.

use esbackup_engine::{EngineError, ErrorKind};

/// Bad usage, config or option value.
pub const USAGE: i32 = 2;
/// The backup is damaged or fails verification.
pub const DAMAGED: i32 = 5;
/// No backup at the target.
pub const NO_BACKUP: i32 = 8;
/// Stopped by a signal before the run completed (the points stored before it are intact).
pub const INTERRUPTED: i32 = 11;
/// The node's admin API failed or refused (`--node-url`; `--node-unreachable continue` goes on).
pub const NODE: i32 = 12;

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
        ErrorKind::Interrupted => INTERRUPTED,
        ErrorKind::Node => NODE,
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

/// A target that cannot be opened exits by its cause: a bad URL or configuration is bad usage,
/// a folder that cannot be used local I/O, a store client that cannot be set up storage.
impl From<esbackup_backends::BackendError> for Failure {
    fn from(e: esbackup_backends::BackendError) -> Self {
        use esbackup_backends::BackendErrorCause as Cause;
        let kind = match e.cause() {
            Cause::Usage => ErrorKind::InvalidInput,
            Cause::LocalIo => ErrorKind::LocalIo,
            Cause::Storage => ErrorKind::Storage,
        };
        Failure::from(EngineError::new(kind, e.to_string()).with_source(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use esbackup_backends::{open_target, TargetOptions};

    fn exit_of(url: &str, opts: &TargetOptions) -> Failure {
        Failure::from(open_target(url, opts).unwrap_err())
    }

    #[test]
    fn a_target_that_cannot_be_opened_exits_by_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let opts = TargetOptions::default();
        assert_eq!(exit_of("ftp://host/x", &opts).code, USAGE);

        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let folder = exit_of(file.to_str().unwrap(), &opts);
        assert_eq!(folder.code, 1, "{}", folder.message);

        // A service-account key whose private key is no key: the GCS client cannot be built.
        let key = dir.path().join("sa.json");
        std::fs::write(
            &key,
            r#"{"client_email": "x@y", "private_key": "not a key", "private_key_id": "1"}"#,
        )
        .unwrap();
        let bad_key = TargetOptions {
            service_account: Some(key.display().to_string()),
            endpoint: Some("https://storage.example.com".into()),
            ..TargetOptions::default()
        };
        let store = exit_of("gs://bkt/p", &bad_key);
        assert_eq!(store.code, 7, "{}", store.message);
        // The message, then the client's own error (the cause kept as the source).
        assert!(
            store
                .message
                .starts_with("cannot open storage gs://bkt: the GCS client: "),
            "{}",
            store.message
        );
        assert!(!store.message.contains('\n'), "{}", store.message);
    }
}
