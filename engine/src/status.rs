//! What a backup location holds: its restore points (`list`), and a summary with the locks of
//! runs in progress or dead (`status`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::location::Location;
use crate::lock::{list_locks, LockState};
use crate::point::Point;
use crate::target::Target;

/// One restore point as `list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PointSummary {
    pub id: String,
    /// When its run captured the database (what `--at` compares with).
    pub time: DateTime<Utc>,
    pub writer: i64,
    pub chaser: i64,
    pub epoch: i64,
    /// Database files, and their bytes as restored.
    pub files: u64,
    pub bytes: u64,
    /// Bytes of the new objects its run stored.
    pub bytes_added: u64,
    pub host: String,
    pub source_db: String,
    pub tool_version: String,
    pub notes: Vec<String>,
}

impl From<&Point> for PointSummary {
    fn from(p: &Point) -> Self {
        PointSummary {
            id: p.id.clone(),
            time: p.time,
            writer: p.checkpoints.writer,
            chaser: p.checkpoints.chaser,
            epoch: p.checkpoints.epoch,
            files: p.files.len() as u64,
            bytes: p.size(),
            bytes_added: p.bytes_added,
            host: p.host.clone(),
            source_db: p.source_db.clone(),
            tool_version: p.tool_version.clone(),
            notes: p.notes.clone(),
        }
    }
}

/// The restore points of a location, oldest first.
pub async fn list(target: Arc<dyn Target>) -> Result<Vec<PointSummary>> {
    let location = Location::read(target).await?;
    if !location.has_backup() {
        return Err(location.no_backup());
    }
    Ok(location
        .all()
        .await?
        .iter()
        .map(PointSummary::from)
        .collect())
}

#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub target: String,
    /// False when the location holds no backup.
    pub exists: bool,
    pub points: u64,
    pub oldest: Option<PointSummary>,
    pub newest: Option<PointSummary>,
    /// Objects and bytes stored at the location (all points and esbackup's own files; lock
    /// objects aside).
    pub stored_objects: u64,
    pub stored_bytes: u64,
    /// Lock objects: runs in progress, or dead runs the next run will take over.
    pub locks: Vec<LockState>,
    /// Written by esbackup 0.1 and not yet converted by a backup of this version.
    pub legacy: bool,
}

pub async fn status(target: Arc<dyn Target>) -> Result<StatusReport> {
    let location = Location::read(target.clone()).await?;
    let locks = list_locks(target.as_ref()).await?;
    let mut listing = crate::target::list_sizes(target.as_ref())
        .await
        .map_err(|e| EngineError::storage("listing the backup location", e))?;
    listing.retain(|k, _| !k.starts_with(crate::layout::LOCKS_DIR));
    let (oldest, newest) = match (location.ids.first(), location.ids.last()) {
        (Some(first), Some(last)) => {
            let newest = Point::load(target.as_ref(), last).await?;
            let oldest = if first == last {
                newest.clone()
            } else {
                Point::load(target.as_ref(), first).await?
            };
            (Some((&oldest).into()), Some((&newest).into()))
        }
        _ => match location.latest().await {
            Ok(Some(p)) => (Some((&p).into()), Some((&p).into())),
            _ => (None, None),
        },
    };
    Ok(StatusReport {
        target: target.describe(),
        exists: location.has_backup(),
        points: if location.ids.is_empty() {
            u64::from(newest.is_some())
        } else {
            location.ids.len() as u64
        },
        oldest,
        newest,
        stored_objects: listing.len() as u64,
        stored_bytes: listing.values().sum(),
        locks,
        legacy: location.ids.is_empty() && location.legacy.is_some(),
    })
}
