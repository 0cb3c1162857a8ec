//! What a backup location holds: its restore points (`list`), and a summary with the locks of
//! runs in progress or dead (`status`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::location::{DamagedPoint, Location};
use crate::lock::{list_locks, LockState};
use crate::point::{run_order, Point};
use crate::target::Target;

/// One restore point as `list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PointSummary {
    pub id: String,
    /// Its place in the location's history (0 for points of format 2, ordered by id).
    pub seq: u64,
    /// When its run captured the database (what `--at` compares with).
    pub time: DateTime<Utc>,
    pub writer: i64,
    pub chaser: i64,
    pub epoch: i64,
    /// Database files, and their bytes as restored.
    pub files: u64,
    pub bytes: u64,
    /// Bytes of the new objects its run stored (stored sizes).
    pub bytes_added: u64,
    /// Their plain bytes, in a compressed or encrypted location.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plain_added: Option<u64>,
    pub host: String,
    pub source_db: String,
    pub tool_version: String,
    pub notes: Vec<String>,
    /// The node's state when the run asked it (`--node-url`): `leader`, `follower`…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_state: Option<String>,
    /// The own times of its first and last log records (what `restore --before` compares).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_record_time: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_record_time: Option<DateTime<Utc>>,
}

impl From<&Point> for PointSummary {
    fn from(p: &Point) -> Self {
        PointSummary {
            id: p.id.clone(),
            seq: p.seq,
            time: p.time,
            writer: p.checkpoints.writer,
            chaser: p.checkpoints.chaser,
            epoch: p.checkpoints.epoch,
            files: p.files.len() as u64,
            bytes: p.size(),
            bytes_added: p.bytes_added,
            plain_added: p.plain_added,
            host: p.host.clone(),
            source_db: p.source_db.clone(),
            tool_version: p.tool_version.clone(),
            notes: p.notes.clone(),
            node_state: p.node_state.clone(),
            first_record_time: p.log_times.map(|t| t.first),
            last_record_time: p.log_times.map(|t| t.last),
        }
    }
}

/// One entry of `list`: a restore point, or a point object that cannot be read.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum ListEntry {
    Point(Box<PointSummary>),
    Damaged { id: String, damaged: String },
}

impl ListEntry {
    pub fn id(&self) -> &str {
        match self {
            ListEntry::Point(p) => &p.id,
            ListEntry::Damaged { id, .. } => id,
        }
    }
}

/// What `list` shows: every point object in run order (oldest first), readable or not.
#[derive(Clone, Debug, Serialize)]
pub struct Listing {
    pub entries: Vec<ListEntry>,
    /// Set when the recorded times do not grow in run order (a host clock was behind).
    pub warnings: Vec<String>,
}

impl Listing {
    pub fn points(&self) -> impl DoubleEndedIterator<Item = &PointSummary> {
        self.entries.iter().filter_map(|e| match e {
            ListEntry::Point(p) => Some(p.as_ref()),
            ListEntry::Damaged { .. } => None,
        })
    }

    pub fn damaged(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().filter_map(|e| match e {
            ListEntry::Damaged { id, damaged } => Some((id.as_str(), damaged.as_str())),
            ListEntry::Point(_) => None,
        })
    }
}

/// The restore points of a location, oldest first, with the damaged ones in their place.
pub async fn list(target: Arc<dyn Target>) -> Result<Listing> {
    let location = Location::open(target).await?;
    if !location.has_backup() {
        return Err(location.no_backup());
    }
    let points = location.summaries().await?;
    let times: Vec<(String, DateTime<Utc>)> = points
        .readable
        .iter()
        .map(|p| (p.id.clone(), p.time))
        .collect();
    let mut entries: Vec<ListEntry> = points
        .readable
        .into_iter()
        .map(|p| ListEntry::Point(Box::new(p)))
        .chain(points.damaged.into_iter().map(|d| ListEntry::Damaged {
            id: d.id,
            damaged: d.problem,
        }))
        .collect();
    entries.sort_by(|a, b| run_order(a.id()).cmp(&run_order(b.id())));
    Ok(Listing {
        entries,
        warnings: crate::forget::non_monotonic_times(&times)
            .into_iter()
            .collect(),
    })
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
    /// Point objects that cannot be read as points.
    pub damaged: Vec<DamagedPoint>,
    /// Incomplete uploads and staging files killed runs left (the next backup removes them);
    /// `None` when the store would not say (e.g. no permission to list multipart uploads).
    pub incomplete_uploads: Option<u64>,
}

pub async fn status(target: Arc<dyn Target>) -> Result<StatusReport> {
    let location = Location::open(target.clone()).await?;
    let locks = list_locks(target.as_ref()).await?;
    let mut listing = crate::target::list_sizes(target.as_ref())
        .await
        .map_err(|e| EngineError::storage("listing the backup location", e))?;
    listing.retain(|k, _| !k.starts_with(crate::layout::LOCKS_DIR));
    let points = match location.ids.is_empty() {
        false => location.summaries().await?,
        // A 0.1 location: its state, if it completed.
        true => crate::location::Points {
            readable: location
                .latest()
                .await
                .ok()
                .flatten()
                .iter()
                .map(PointSummary::from)
                .collect(),
            damaged: vec![],
        },
    };
    let (oldest, newest) = (
        points.readable.first().cloned(),
        points.readable.last().cloned(),
    );
    let incomplete_uploads = match target.incomplete_uploads().await {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!("could not count incomplete uploads: {e}");
            None
        }
    };
    Ok(StatusReport {
        target: target.describe(),
        exists: location.has_backup(),
        points: points.readable.len() as u64,
        oldest,
        newest,
        stored_objects: listing.len() as u64,
        stored_bytes: listing.values().sum(),
        locks,
        legacy: location.ids.is_empty() && location.legacy.is_some(),
        damaged: points.damaged,
        incomplete_uploads,
    })
}
