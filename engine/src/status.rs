//! What a backup location holds: the latest run, the last completed one, and any locks.

use std::sync::Arc;

use serde::Serialize;

use crate::error::Result;
use crate::lock::{list_locks, LockInfo};
use crate::manifest::{CompletedRun, Manifest, RunState};
use crate::target::Target;

#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub target: String,
    /// False when the location holds no esbackup backup.
    pub exists: bool,
    pub latest_run: Option<RunSummary>,
    pub last_completed: Option<CompletedRun>,
    pub files: u64,
    pub bytes: u64,
    pub locks: Vec<LockInfo>,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub state: RunState,
    pub tool_version: String,
    pub started: chrono::DateTime<chrono::Utc>,
    pub finished: Option<chrono::DateTime<chrono::Utc>>,
    pub error: Option<String>,
    pub host: String,
    pub source_db: String,
}

pub async fn status(target: Arc<dyn Target>) -> Result<StatusReport> {
    let manifest = Manifest::load(target.as_ref()).await?;
    let locks = list_locks(target.as_ref()).await?;
    Ok(StatusReport {
        target: target.describe(),
        exists: manifest.is_some(),
        latest_run: manifest.as_ref().map(|m| RunSummary {
            run_id: m.run_id.clone(),
            state: m.state,
            tool_version: m.tool_version.clone(),
            started: m.started,
            finished: m.finished,
            error: m.error.clone(),
            host: m.host.clone(),
            source_db: m.source_db.clone(),
        }),
        last_completed: manifest.as_ref().and_then(|m| m.last_completed.clone()),
        files: manifest.as_ref().map_or(0, |m| m.files.len() as u64),
        bytes: manifest
            .as_ref()
            .map_or(0, |m| m.files.values().map(|e| e.size).sum()),
        locks,
        notes: manifest.map(|m| m.notes).unwrap_or_default(),
    })
}
