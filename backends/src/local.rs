//! The local filesystem target: a plain mirror of the keys (`index/indexmap` is the file
//! `<root>/index/indexmap`), written through `object_store`'s `LocalFileSystem`.
//!
//! Each object is written to a staging file beside it (`<name>#<n>`) and renamed into place, so
//! readers see whole objects only; files and their folders are fsynced before a write returns.
//! A crash can leave a staging file behind; listings skip such names.

use std::path::Path;
use std::sync::Arc;

use object_store::local::LocalFileSystem;

use crate::error::BackendError;
use crate::object_store_target::ObjectStoreTarget;
use crate::options::TargetOptions;

/// Opens (creating it if missing) the folder `root` as a target.
pub fn open_local(root: &Path, opts: &TargetOptions) -> Result<ObjectStoreTarget, BackendError> {
    let open_err = |reason: String| BackendError::Open {
        location: root.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(root)
        .map_err(|e| open_err(format!("cannot create the folder: {e}")))?;
    if !root.is_dir() {
        return Err(open_err("not a folder".into()));
    }
    let store = LocalFileSystem::new_with_prefix(root)
        .map_err(|e| open_err(e.to_string()))?
        .with_automatic_cleanup(true)
        .with_fsync(true);
    let part_size = opts.part_size(1).map_err(BackendError::Config)?;
    let concurrency = opts.concurrency().map_err(BackendError::Config)?;
    let described = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    Ok(ObjectStoreTarget::new(Arc::new(store), "")?
        .with_description(described.display().to_string())
        .with_part_size(part_size)
        .with_concurrency(concurrency))
}
