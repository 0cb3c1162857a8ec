//! esbackup's engine: consistent, crash-safe backups of a live EventStoreDB / KurrentDB
//! database into any [`Target`], kept as restore points; restore, verify, list and forget.
//!
//! The public surface is what this page re-exports: the commands ([`backup`], [`restore`],
//! [`verify`], [`list`], [`status`], [`forget`]) with their options and reports, the storage
//! seam ([`Target`], [`Upload`]), errors ([`EngineError`], [`ErrorKind`]), the on-disk
//! formats ([`format`](mod@format)), and the log records a point holds ([`log`](mod@log)). Test support (`testing`, `conformance`) needs the `testing`
//! feature; the `clap` feature makes [`KeepPolicy`] command-line options.

pub mod codec;
pub mod format;
pub mod layout;
pub mod log;

mod backup;
mod copy;
mod download;
mod duration;
mod error;
mod file_copy;
mod forget;
mod guard;
mod hashing;
mod legacy;
mod location;
mod lock;
mod md5_lanes;
mod metered;
mod paged;
mod piece_pool;
mod point;
mod progress;
mod restore;
mod retry;
mod size;
mod source;
mod status;
mod stop;
mod tally;
mod target;
mod target_error;
mod upload;
mod verify;
mod written;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use backup::{
    backup, BackupOptions, BackupReport, Retention, Skipped, Uploaded, DEFAULT_CONCURRENCY,
    DEFAULT_LOCAL_CONCURRENCY,
};
pub use copy::{copy, CopyOptions, CopyReport, Selection};
pub use duration::{parse_duration, HumanDuration};
pub use error::{EngineError, ErrorKind, Result};
pub use forget::{apply_policy, forget, ForgetOptions, ForgetReport, KeepPolicy, Kept};
pub use hashing::{md5, Md5};
pub use location::DamagedPoint;
pub use lock::{host_name, LockInfo, LockOptions, LockState};
pub use metered::Traffic;
pub use point::{
    Checkpoints, ChunkRef, Content, FileRef, NeededObject, Point, Segment, Window, FORMAT,
};
pub use progress::{NoProgress, Progress};
pub use restore::{
    restore, Cut, RestoreOptions, RestoreReport, Upto, Which, DEFAULT_RESTORE_CONCURRENCY,
};
pub use retry::{equal_jitter, RetryPolicy, RetryTarget};
pub use size::ByteSize;
pub use source::FileStamp;
pub use status::{list, status, ListEntry, Listing, PointSummary, StatusReport};
pub use stop::Stop;
pub use tally::Tally;
pub use target::{
    get_bytes, list_sizes, BoxError, ByteStream, ObjectInfo, Stored, Target, TargetError,
    TargetErrorKind,
};
pub use upload::{OnBytes, Upload, DEFAULT_PIECE};
pub use verify::{verify, PointCheck, VerifyOptions, VerifyReport};
