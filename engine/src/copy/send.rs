//! Moving one stored object from the source location to the destination, checked on the way
//! against the MD5 its restore point records.
//!
//! An object the source holds as a local file (the folder target) is uploaded from that file.
//! Any other is first downloaded into an unnamed temporary file in the spool folder (gone when
//! it is closed, also when the process is killed), hashed as it arrives, and uploaded from
//! there only if it is what the point says: so the destination never completes an object from
//! bytes that were not checked, and a retried upload reads the same bytes again. Either way
//! the destination's [`crate::Stored`] must match the point's size and MD5 too.

use std::path::PathBuf;
use std::sync::Arc;

use crate::download::download_to_file;
use crate::error::{EngineError, Result};
use crate::md5_lanes::Md5Lanes;
use crate::point::NeededObject;
use crate::progress::{NoProgress, Progress};
use crate::target::{Target, TargetErrorKind, Upload};
use crate::upload::OnBytes;

/// Sends objects from one location to another.
pub(super) struct Mover {
    pub from: Arc<dyn Target>,
    pub to: Arc<dyn Target>,
    /// Folder of the temporary files.
    pub spool: PathBuf,
    pub lanes: Md5Lanes,
    pub progress: Arc<dyn Progress>,
}

impl Mover {
    /// Copies `object` to the destination under its own key; returns the key and the size the
    /// destination holds for it.
    pub async fn send(&self, object: &NeededObject) -> Result<(String, u64)> {
        let on_bytes: OnBytes = {
            let progress = self.progress.clone();
            Arc::new(move |n| progress.advance(n))
        };
        let body = match self.from.local_file(&object.key) {
            Some(path) => Upload::file(&path, object.size),
            None => self.spooled(object).await?,
        };
        let stored = self
            .to
            .put(&object.key, body.with_progress(on_bytes))
            .await
            .map_err(|e| match e.kind() {
                TargetErrorKind::Body => {
                    self.damaged(object, "it is shorter than its point says, or unreadable")
                }
                _ => EngineError::storage(&object.key, e),
            })?;
        let md5 = hex::encode(stored.md5);
        if stored.size != object.size || md5 != object.md5 {
            // Only an object no destination point names is ever sent: no point loses it.
            if let Err(e) = self.to.delete(&object.key).await {
                tracing::warn!("could not delete the damaged copy of {}: {e}", object.key);
            }
            return Err(self.damaged(object, &format!("its MD5 is {md5}")));
        }
        self.progress.file_done(&object.key, object.size);
        Ok((object.key.clone(), stored.stored_size))
    }

    /// Downloads `object` into a temporary file, checks it, and returns it as an upload.
    async fn spooled(&self, object: &NeededObject) -> Result<Upload> {
        let label = format!("{} (spooled in {})", object.key, self.spool.display());
        let spool = self.spool.clone();
        let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(spool))
            .await
            .map_err(|e| EngineError::io(&label, std::io::Error::other(e.to_string())))?
            .map_err(|e| EngineError::io(&label, e))?;
        let file = Arc::new(file);
        let md5 = download_to_file(
            self.from.clone(),
            &object.key,
            object.size,
            file.clone(),
            0,
            &label,
            Arc::new(NoProgress),
            true,
            &self.lanes,
        )
        .await?;
        if hex::encode(md5) != object.md5 {
            return Err(self.damaged(object, &format!("its MD5 is {}", hex::encode(md5))));
        }
        Ok(Upload::handle(
            &self.spool.join(&object.key),
            file,
            object.size,
        ))
    }

    fn damaged(&self, object: &NeededObject, why: &str) -> EngineError {
        EngineError::damaged(format!(
            "{} in {} is not what its restore point recorded ({} bytes, MD5 {}): {why}; nothing of it was kept at {}. Run `esbackup verify --read-data` on the source",
            object.key,
            self.from.describe(),
            object.size,
            object.md5,
            self.to.describe()
        ))
    }
}
