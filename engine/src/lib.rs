//! esbackup's engine: consistent, crash-safe differential backups of a live EventStoreDB /
//! KurrentDB database directory into any [`Target`], and restore and verify of them.

pub mod format;
pub mod target;
pub mod testing;
pub mod upload;

pub use target::{ObjectInfo, Target, TargetError, Upload};
