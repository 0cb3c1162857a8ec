//! The manifest: what the latest run stored, written last by every run (and marked "running"
//! when a run starts, so that an interrupted run is recognisable).

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::layout;
use crate::target::{get_bytes, Target, TargetError, Upload};

pub const FORMAT_VERSION: u32 = 1;

/// Captured database checkpoints (-1 where absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoints {
    pub writer: i64,
    pub chaser: i64,
    pub epoch: i64,
    pub proposal: i64,
}

/// One stored file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub size: u64,
    /// MD5 (hex) of the stored bytes.
    pub md5: String,
    /// For chunks: the header's chunk id, end number and whether the file was completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<ChunkEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    pub id: String,
    pub end: u32,
    pub completed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Completed,
    Failed,
}

/// A run that finished completely.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedRun {
    pub run_id: String,
    pub finished: DateTime<Utc>,
    pub checkpoints: Checkpoints,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub tool_version: String,
    pub run_id: String,
    pub state: RunState,
    pub full: bool,
    pub started: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub host: String,
    pub source_db: String,
    pub source_index: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<u32>,
    pub checkpoints: Checkpoints,
    /// The last run that completed (this one, if it did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_completed: Option<CompletedRun>,
    /// Things an operator should know (e.g. the secondary index was not copied).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Every stored file by key, with size and hash.
    pub files: BTreeMap<String, FileEntry>,
}

impl Manifest {
    pub fn is_completed(&self) -> bool {
        self.state == RunState::Completed
    }

    /// Reads the manifest; `None` when the location has none.
    pub async fn load(target: &dyn Target) -> Result<Option<Manifest>> {
        match get_bytes(target, layout::MANIFEST).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                EngineError::Corrupt(format!(
                    "{} in {} is unreadable: {e}",
                    layout::MANIFEST,
                    target.describe()
                ))
            }),
            Err(TargetError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn store(&self, target: &dyn Target) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("manifest serialises");
        target
            .put(layout::MANIFEST, Upload::bytes(Bytes::from(json)))
            .await?;
        Ok(())
    }
}

pub fn tool_version() -> String {
    format!("esbackup {}", env!("CARGO_PKG_VERSION"))
}
