//! What a backup run reports (`--json` prints it).

use serde::Serialize;

use super::plan::{Action, BackupPlan, Captured};
use crate::metered::Traffic;
use crate::point::{Checkpoints, Point};
use crate::source::other_files::Skipped;
use crate::tally::Tally;

/// What one run sent to the store: every object and byte, its own metadata included.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Uploaded {
    /// Objects written (database files, segments, mirrors, the point, the lock).
    pub objects: u64,
    /// Every byte sent.
    pub bytes: u64,
    /// Every request made to the store.
    pub requests: u64,
}

impl From<Traffic> for Uploaded {
    fn from(t: Traffic) -> Self {
        Uploaded {
            objects: t.puts,
            bytes: t.bytes_sent,
            requests: t.requests,
        }
    }
}

/// The summary of a backup run.
#[derive(Clone, Debug, Serialize)]
pub struct BackupReport {
    /// The restore point this run stored (`None` for a dry run).
    pub point: Option<String>,
    pub target: String,
    pub full: bool,
    pub dry_run: bool,
    /// Everything the run sent to the store (for a dry run: what it would store).
    pub uploaded: Uploaded,
    /// Database files whose bytes this run stored (whole, or the part a growing chunk gained).
    pub stored: Tally,
    /// Database files the point shares with the previous one.
    pub unchanged: Tally,
    /// What the new objects take in the location (stored sizes).
    pub bytes_added: u64,
    /// In a compressed or encrypted location: their plain bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plain_added: Option<u64>,
    /// The database files stored, sorted.
    pub stored_keys: Vec<String>,
    /// Database files of the previous point that the source no longer has (kept for older
    /// points; `forget --prune` removes what no retained point needs).
    pub gone_keys: Vec<String>,
    pub checkpoints: Checkpoints,
    pub chunk_size: u32,
    /// Chunk files not stored because they start beyond the captured writer checkpoint.
    pub beyond_writer: Vec<String>,
    /// Old chunk versions the server would delete at start-up, not stored.
    pub superseded: Vec<String>,
    /// Files of the database folders this point lacks although the source has them, by name,
    /// and why: changed while they were read, unreadable, or a name the location cannot hold
    /// (each is also a note of the point).
    pub skipped: Vec<Skipped>,
    /// How many times `indexmap` was read before it held still.
    pub index_rounds: u32,
    /// Multipart uploads of killed runs aborted at the start of this run.
    pub aborted_uploads: u64,
    /// What the retention policy did after the point was stored, if one is configured.
    pub retention: Option<crate::forget::ForgetReport>,
    pub notes: Vec<String>,
    /// Things the operator should act on (e.g. a host clock behind the newest point).
    pub warnings: Vec<String>,
    /// Seconds this run waited for another run's lock.
    pub lock_waited_secs: f64,
    pub duration_secs: f64,
}

/// The report of a planned run: what it will store and keep (a dry run's whole report).
pub(crate) fn planned(
    plan: &BackupPlan,
    captured: &Captured,
    previous: Option<&Point>,
    opts: &super::BackupOptions,
) -> BackupReport {
    let (stored, unchanged, stored_keys) = tally(plan);
    let planned: std::collections::BTreeSet<&str> = plan
        .files
        .iter()
        .map(|f| f.key.as_str())
        .chain(plan.skipped.iter().map(|s| s.file.as_str()))
        .collect();
    let gone_keys = previous.map_or_else(Vec::new, |p| {
        p.files
            .keys()
            .filter(|k| !planned.contains(k.as_str()))
            .cloned()
            .collect()
    });
    BackupReport {
        point: None,
        target: String::new(),
        full: opts.full,
        dry_run: opts.dry_run,
        uploaded: Uploaded {
            bytes: plan.upload_bytes(),
            ..Uploaded::default()
        },
        stored,
        unchanged,
        bytes_added: 0,
        plain_added: None,
        stored_keys,
        gone_keys,
        checkpoints: captured.checkpoints.values,
        chunk_size: captured.chunks.chunk_size,
        beyond_writer: captured.chunks.beyond_writer.clone(),
        superseded: captured.chunks.superseded.clone(),
        skipped: plan.skipped.clone(),
        index_rounds: captured.index.rounds,
        aborted_uploads: 0,
        retention: None,
        notes: plan.notes.clone(),
        warnings: Vec::new(),
        lock_waited_secs: 0.0,
        duration_secs: 0.0,
    }
}

/// Tallies what a plan stores and keeps.
fn tally(plan: &BackupPlan) -> (Tally, Tally, Vec<String>) {
    let mut stored = Tally::default();
    let mut unchanged = Tally::default();
    let mut keys = Vec::new();
    for f in &plan.files {
        match &f.action {
            Action::Keep(_) => unchanged.add(f.size),
            Action::Upload { .. } | Action::Append { .. } => {
                stored.add(f.upload_bytes());
                keys.push(f.key.clone());
            }
            Action::Adopt { .. } => unchanged.add(f.size),
            Action::Inline { changed: true, .. } => {
                stored.add(f.size);
                keys.push(f.key.clone());
            }
            Action::Inline { changed: false, .. } => unchanged.add(f.size),
        }
    }
    (stored, unchanged, keys)
}
