//! esbackup's engine: consistent, crash-safe differential backups of a live EventStoreDB /
//! KurrentDB database directory into any [`Target`], and restore and verify of them.

pub mod conformance;
pub mod format;
pub mod target;
pub mod testing;
pub mod upload;

pub use target::{ObjectInfo, Target, TargetError, Upload};

pub mod backup;
pub mod dry_run;
pub mod error;
pub mod fetch;
pub mod hashing;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod progress;
pub mod restore;
pub mod retry;
pub mod source;
pub mod status;
pub mod verify;

pub use backup::{backup, BackupOptions, BackupReport};
pub use error::EngineError;
pub use restore::{restore, RestoreOptions, RestoreReport};
pub use status::{status, StatusReport};
pub use verify::{verify, VerifyOptions, VerifyReport};
