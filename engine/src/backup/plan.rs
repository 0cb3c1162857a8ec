//! The decisions of a backup run, as pure functions of what the run captured, what the previous
//! restore point holds, and a few facts the run looked up ([`Probes`]). The executor
//! (`execute.rs`) carries the plan out; `--dry-run` prints it.
//!
//! The rules that keep every retained point restorable:
//! - objects a point names are never overwritten with other bytes or deleted: a completed chunk
//!   goes to its root name only when that name is free (or holds the very same file, or bytes
//!   no point needs); otherwise to a new key under `.esbackup/data/`;
//! - a growing chunk is stored as append-only segments under new keys, never rewritten;
//! - files that change in place are stored under new keys (or inline in the point), and the root
//!   copies of them are mirrors that restore never reads (removed when the newest point lacks
//!   the file).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::format::checkpoint;
use crate::layout::{self, index_key};
use crate::point::{ChunkRef, Content, FileRef, Point, Segment};
use crate::source::chunks::{ChunkSet, SourceChunk};
use crate::source::index::{IndexCapture, OpenedFile};
use crate::source::other_files::{OtherFiles, Skipped};
use crate::source::side_files::{SideFile, SideFiles};
use crate::source::{checkpoints::CapturedCheckpoints, FileStamp};

/// The stream-existence filter is stored again when it changed and is at most this big...
pub(crate) const EXISTENCE_ALWAYS_BELOW: u64 = 1 << 20;
/// ...or when the stored copy lags the log by more than this many times its size (the node
/// re-reads the log from the stored checkpoint at start-up, so an older pair is consistent).
pub(crate) const EXISTENCE_LAG_FACTOR: i64 = 16;

/// Everything a run captured from the source, in capture order.
pub(crate) struct Captured {
    pub index: IndexCapture,
    pub side: SideFiles,
    pub other: OtherFiles,
    pub checkpoints: CapturedCheckpoints,
    pub chunks: ChunkSet,
}

/// The local bytes a step reads.
#[derive(Clone, Debug)]
pub(crate) struct LocalFile {
    pub path: PathBuf,
    /// Opened during the capture (index tables, side files); chunks are opened when read.
    pub handle: Option<Arc<File>>,
    pub len: u64,
}

/// What to do with one database file.
#[derive(Clone, Debug)]
pub(crate) enum Action {
    /// The previous point's reference still describes the file.
    Keep(FileRef),
    /// `object` (left by an interrupted run) already holds this very file: reference it. Its
    /// MD5 is computed from the local file.
    Adopt { object: String, source: LocalFile },
    /// Store the whole file as `object`.
    Upload {
        object: String,
        source: LocalFile,
        check: UploadCheck,
    },
    /// Store bytes `from..to` of a growing chunk as `object`, after the segments `base`.
    Append {
        base: Vec<Segment>,
        from: u64,
        to: u64,
        object: String,
        source: LocalFile,
    },
    /// Keep the file's bytes in the point itself (`changed`: they differ from the previous
    /// point's).
    Inline { data: Bytes, changed: bool },
}

/// What an upload checks besides the MD5 it records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UploadCheck {
    /// Nothing more (immutable files without a checksum, the stream-existence filter: its bits
    /// are only ever set, so a copy taken while it is flushed is still a superset of its
    /// checkpoint).
    None,
    /// The file ends in an MD5 of its preceding bytes (completed chunks, PTables).
    TrailingMd5,
    /// The file must not change between its capture and the end of its copy (the run fails if
    /// it did).
    Unchanged,
    /// A file the engine does not know (`source::other_files`): opened when it is copied, and
    /// kept only if it held still during the copy (same stamp before and after); one that
    /// changed, or could not be read, is left out of the point and reported by name.
    HeldStill,
}

/// One database file of the new point.
#[derive(Clone, Debug)]
pub(crate) struct FilePlan {
    pub key: String,
    /// Length of the file as restored.
    pub size: u64,
    pub action: Action,
    pub chunk: Option<ChunkRef>,
    pub stamp: Option<FileStamp>,
}

impl FilePlan {
    /// Bytes this step sends to the store.
    pub fn upload_bytes(&self) -> u64 {
        match &self.action {
            Action::Upload { source, .. } => source.len,
            Action::Append { from, to, .. } => to - from,
            _ => 0,
        }
    }
}

/// A write to the root mirror of the latest point (never read by restore).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mirror {
    Bytes { key: String, data: Bytes },
    Copy { from: String, to: String },
    Delete { key: String },
}

/// Everything a run will do, in order: store the files, update the mirror, write the point.
#[derive(Clone, Debug)]
pub(crate) struct BackupPlan {
    pub files: Vec<FilePlan>,
    pub mirrors: Vec<Mirror>,
    pub notes: Vec<String>,
    /// Files of the database folders the point will not hold, by name.
    pub skipped: Vec<Skipped>,
}

impl BackupPlan {
    pub fn upload_bytes(&self) -> u64 {
        self.files.iter().map(FilePlan::upload_bytes).sum()
    }

    /// Takes files that could not be copied out of the plan: the point will not name them, and
    /// the root mirror drops its copy of them rather than keep one the newest point lacks.
    pub fn leave_out(&mut self, skipped: Vec<Skipped>) {
        for s in &skipped {
            self.files.retain(|f| f.key != s.file);
            self.mirrors
                .retain(|m| !matches!(m, Mirror::Copy { to, .. } if *to == s.file));
            self.mirrors.insert(
                0,
                Mirror::Delete {
                    key: s.file.clone(),
                },
            );
        }
        self.skipped.extend(skipped);
    }

    /// The notes the point records: the plan's, and one per file left out.
    pub fn point_notes(&self) -> Vec<String> {
        let left_out = self.skipped.iter().map(Skipped::note);
        self.notes.iter().cloned().chain(left_out).collect()
    }
}

/// What a root object not named by the previous point holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RootObject {
    /// This very file (an interrupted run stored it).
    Same,
    /// Another file that a retained point needs.
    Needed,
    /// Another file that no point needs.
    Unneeded,
}

/// Facts a run looked up before planning.
#[derive(Clone, Debug, Default)]
pub(crate) struct Probes {
    /// Growing chunks whose stored bytes are still the file's (their tail window matched).
    pub tails_intact: BTreeSet<String>,
    /// Root objects the previous point does not name, by key.
    pub root: BTreeMap<String, RootObject>,
}

/// How the run was asked to work.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    /// Store every file again instead of trusting what is stored.
    pub full: bool,
    pub run_id: String,
}

/// The previous point as the plan consults it.
struct Previous<'a> {
    point: Option<&'a Point>,
    full: bool,
}

impl<'a> Previous<'a> {
    /// The previous reference of `key`, when the run may keep it (not with `--full`).
    fn keepable(&self, key: &str) -> Option<&'a FileRef> {
        self.point
            .filter(|_| !self.full)
            .and_then(|p| p.files.get(key))
    }

    /// The previous reference of `key` when it names the root object `key` itself.
    fn at_root(&self, key: &str) -> Option<&'a FileRef> {
        self.point
            .and_then(|p| p.files.get(key))
            .filter(|f| matches!(&f.content, Content::Object { key: k, .. } if k == key))
    }
}

/// Plans a run.
pub(crate) fn plan(
    captured: &Captured,
    previous: Option<&Point>,
    probes: &Probes,
    policy: &Policy,
) -> BackupPlan {
    let prev = Previous {
        point: previous,
        full: policy.full,
    };
    let mut notes = Vec::new();
    // Mirror writes, in this order: data before the checkpoint that vouches for it, chaser after
    // writer, the stream-existence checkpoint and indexmap last.
    let side = plan_side_files(captured, &prev, policy, &mut notes);
    let mut files = side.files;
    let mut late_mirrors = side.late_mirrors;
    let (checkpoint_files, checkpoint_mirrors) = plan_checkpoints(&captured.checkpoints, previous);
    files.extend(checkpoint_files);
    let index = plan_index(captured, &prev, probes, policy);
    files.extend(index.files);
    late_mirrors.extend(index.late_mirrors);
    for chunk in &captured.chunks.chunks {
        files.push(plan_chunk(chunk, &prev, probes, policy));
    }
    files.sort_by(|a, b| a.key.cmp(&b.key));
    // Deletions first: a file replaced by a folder of the same name (or the reverse) then
    // finds its name free in a folder location.
    let mut mirrors = gone_mirrors(&files, previous);
    mirrors.extend(side.mirrors);
    mirrors.extend(checkpoint_mirrors);
    mirrors.extend(late_mirrors);
    BackupPlan {
        files,
        mirrors,
        notes,
        skipped: captured.other.skipped.clone(),
    }
}

/// Planned files with their root mirror writes: `mirrors` go before the checkpoints',
/// `late_mirrors` after them.
struct PlannedPart {
    files: Vec<FilePlan>,
    mirrors: Vec<Mirror>,
    late_mirrors: Vec<Mirror>,
}

/// The stream-existence filter, the in-place side files and every other file.
fn plan_side_files(
    captured: &Captured,
    prev: &Previous<'_>,
    policy: &Policy,
    notes: &mut Vec<String>,
) -> PlannedPart {
    let existence = plan_existence(captured.side.existence.as_ref(), prev, policy, notes);
    let mut files = existence.files;
    let mut mirrors: Vec<Mirror> = existence.data_mirror.into_iter().collect();
    for set in [&captured.side.scavenging, &captured.side.secondary] {
        let set: Vec<InPlace> = set.iter().map(InPlace::side).collect();
        let (planned, set_mirrors) = plan_in_place_set(&set, UploadCheck::Unchanged, prev, policy);
        files.extend(planned);
        mirrors.extend(set_mirrors);
    }
    // Each other file on its own: one that changed does not make the others stored again.
    for f in &captured.other.files {
        let one = InPlace {
            key: &f.key,
            source: LocalFile {
                path: f.path.clone(),
                handle: None,
                len: f.stamp.len,
            },
            stamp: f.stamp,
        };
        let (planned, one_mirrors) =
            plan_in_place_set(&[one], UploadCheck::HeldStill, prev, policy);
        files.extend(planned);
        mirrors.extend(one_mirrors);
    }
    if !captured.side.secondary_left_out.is_empty() {
        notes.push(format!(
            "secondary index {} not copied: it changes in place and cannot be copied consistently from a live node (vendor docs), so a restored node rebuilds it at start-up. To include it, stop the node and pass --include-secondary-index",
            captured.side.secondary_left_out.join(", ")
        ));
    }
    PlannedPart {
        files,
        mirrors,
        late_mirrors: existence.checkpoint_mirror.into_iter().collect(),
    }
}

/// The indexmap (inline, mirrored last) and the index tables it names.
fn plan_index(
    captured: &Captured,
    prev: &Previous<'_>,
    probes: &Probes,
    policy: &Policy,
) -> PlannedPart {
    let mut part = PlannedPart {
        files: Vec::new(),
        mirrors: Vec::new(),
        late_mirrors: Vec::new(),
    };
    let Some(map) = &captured.index.indexmap else {
        return part;
    };
    let key = index_key(crate::format::indexmap::FILE_NAME);
    let previous = prev.point.and_then(|p| p.files.get(&key));
    if !inline_equals(previous, map) {
        part.late_mirrors.push(Mirror::Bytes {
            key: key.clone(),
            data: map.clone(),
        });
    }
    part.files
        .push(inline(&key, map.clone(), prev.keepable(&key)));
    for t in &captured.index.tables {
        let table = plan_immutable(&t.table, UploadCheck::TrailingMd5, prev, probes, policy);
        part.files.push(table);
        if let Some(bloom) = &t.bloom {
            let bloom = plan_immutable(bloom, UploadCheck::None, prev, probes, policy);
            part.files.push(bloom);
        }
    }
    part
}

/// Root copies to remove: of files the previous point had and this plan lacks, where the root
/// copy was only a mirror — files kept inline or changed in place (those carry a stamp). Never
/// chunks and index tables: they may be stored under their root names, which older points
/// still need (prune removes them).
fn gone_mirrors(files: &[FilePlan], previous: Option<&Point>) -> Vec<Mirror> {
    let planned: BTreeSet<&str> = files.iter().map(|f| f.key.as_str()).collect();
    let mirrored = |f: &FileRef| matches!(f.content, Content::Inline { .. }) || f.stamp.is_some();
    previous
        .map_or_else(Vec::new, |p| p.files.iter().collect())
        .into_iter()
        .filter(|(key, f)| !planned.contains(key.as_str()) && mirrored(f))
        .map(|(key, _)| Mirror::Delete { key: key.clone() })
        .collect()
}

fn inline(key: &str, data: Bytes, previous: Option<&FileRef>) -> FilePlan {
    FilePlan {
        key: key.to_string(),
        size: data.len() as u64,
        action: Action::Inline {
            changed: !inline_equals(previous, &data),
            data,
        },
        chunk: None,
        stamp: None,
    }
}

fn inline_equals(previous: Option<&FileRef>, data: &Bytes) -> bool {
    matches!(previous.map(|f| &f.content), Some(Content::Inline { data: d }) if d == data)
}

/// Checkpoints go into the point; their root mirrors are rewritten when they changed, writer
/// first and chaser last, so that chaser ≤ writer and epoch ≤ writer hold at every moment.
fn plan_checkpoints(
    captured: &CapturedCheckpoints,
    previous: Option<&Point>,
) -> (Vec<FilePlan>, Vec<Mirror>) {
    const ORDER: [&str; 4] = checkpoint::WRITE_ORDER;
    let mut ordered = captured.files.clone();
    ordered.sort_by_key(|(name, _)| ORDER.iter().position(|o| o == name).unwrap_or(2));
    let mut files = Vec::new();
    let mut mirrors = Vec::new();
    for (name, data) in ordered {
        let previous_file = previous.and_then(|p| p.files.get(&name));
        if !inline_equals(previous_file, &data) {
            mirrors.push(Mirror::Bytes {
                key: name.clone(),
                data: data.clone(),
            });
        }
        let previous_file = previous.and_then(|p| p.files.get(&name));
        files.push(inline(&name, data, previous_file));
    }
    (files, mirrors)
}

/// Where a new whole file goes: `None` when the root object already is this file; its root
/// name when that is free, holds the same file (with `--full`), or holds bytes no point needs;
/// a new key under `.esbackup/data/` when a point needs what the root name holds.
fn object_for(
    key: &str,
    named_same: Option<bool>,
    probes: &Probes,
    policy: &Policy,
) -> Option<String> {
    match named_same {
        Some(true) => return Some(key.to_string()),
        Some(false) => return Some(layout::data_key(key, &policy.run_id)),
        None => {}
    }
    match probes.root.get(key) {
        Some(RootObject::Same) => None,
        Some(RootObject::Needed) => Some(layout::data_key(key, &policy.run_id)),
        Some(RootObject::Unneeded) | None => Some(key.to_string()),
    }
}

/// Stores a whole file, or adopts the root object that already holds it.
fn whole(key: &str, object: Option<String>, source: LocalFile, check: UploadCheck) -> Action {
    match object {
        None => Action::Adopt {
            object: key.to_string(),
            source,
        },
        Some(object) => Action::Upload {
            object,
            source,
            check,
        },
    }
}

/// An index table or bloom filter: immutable under its GUID name.
fn plan_immutable(
    file: &OpenedFile,
    check: UploadCheck,
    prev: &Previous,
    probes: &Probes,
    policy: &Policy,
) -> FilePlan {
    let source = LocalFile {
        path: file.path.clone(),
        handle: Some(file.file.clone()),
        len: file.len,
    };
    let action = match prev.keepable(&file.key) {
        Some(f) if f.size == file.len => Action::Keep(f.clone()),
        _ => {
            let named = prev.at_root(&file.key).map(|f| f.size == file.len);
            let object = object_for(&file.key, named, probes, policy);
            whole(&file.key, object, source, check)
        }
    };
    FilePlan {
        key: file.key.clone(),
        size: file.len,
        action,
        chunk: None,
        stamp: None,
    }
}

/// A chunk file: a completed one is stored whole once; a growing one is appended to.
fn plan_chunk(chunk: &SourceChunk, prev: &Previous, probes: &Probes, policy: &Policy) -> FilePlan {
    let key = chunk.key();
    let id = chunk.info.header.chunk_id.to_string();
    let chunk_ref = ChunkRef {
        id: id.clone(),
        end: chunk.info.header.end,
        completed: chunk.is_completed(),
    };
    let source = LocalFile {
        path: chunk.path.clone(),
        handle: None,
        len: chunk.info.file_len,
    };
    let same = |f: &FileRef| f.size == chunk.info.file_len && f.chunk.as_ref() == Some(&chunk_ref);
    let action = if chunk.is_growing() {
        plan_growing(
            chunk,
            &key,
            &id,
            prev.keepable(&key),
            probes,
            policy,
            source,
        )
    } else {
        match prev.keepable(&key) {
            Some(f) if same(f) && matches!(f.content, Content::Object { .. }) => {
                Action::Keep(f.clone())
            }
            _ => {
                let named = prev.at_root(&key).map(same);
                let object = object_for(&key, named, probes, policy);
                let check = match chunk.is_completed() {
                    true => UploadCheck::TrailingMd5,
                    false => UploadCheck::None,
                };
                whole(&key, object, source, check)
            }
        }
    };
    FilePlan {
        key,
        size: chunk.info.file_len,
        action,
        chunk: Some(chunk_ref),
        stamp: None,
    }
}

/// A growing chunk: append what was written since the previous point, if the stored bytes are
/// still the file's (same chunk id, not shorter, tail window intact); else store its data anew.
fn plan_growing(
    chunk: &SourceChunk,
    key: &str,
    id: &str,
    previous: Option<&FileRef>,
    probes: &Probes,
    policy: &Policy,
    source: LocalFile,
) -> Action {
    let to = chunk.data_end;
    let base = previous.and_then(|f| match &f.content {
        Content::Segments {
            segments, data_end, ..
        } if f.chunk.as_ref().is_some_and(|c| c.id == id && !c.completed)
            && f.size == chunk.info.file_len
            && *data_end <= to
            && probes.tails_intact.contains(key) =>
        {
            Some((segments.clone(), *data_end))
        }
        _ => None,
    });
    match (base, previous) {
        (Some((_, from)), Some(f)) if from == to => Action::Keep(f.clone()),
        (Some((mut segments, from)), _) => {
            // Many small segments are merged into the new one (the bytes are re-read from the
            // source), so a slowly written chunk does not end up in thousands of pieces.
            let keep = merged_from(&segments, to - from);
            let from = segments.get(keep).map_or(from, |s| s.at);
            segments.truncate(keep);
            Action::Append {
                object: layout::segment_key(key, id, from, to, &policy.run_id),
                base: segments,
                from,
                to,
                source,
            }
        }
        (None, _) => Action::Append {
            object: layout::segment_key(key, id, 0, to, &policy.run_id),
            base: vec![],
            from: 0,
            to,
            source,
        },
    }
}

/// A growing chunk keeps at most this many segments before small ones are merged...
pub(crate) const MERGE_ABOVE_SEGMENTS: usize = 32;
/// ...and a merge takes the longest run of trailing segments averaging at most this size (so
/// merges cost about this much per run, whatever the write rate)...
pub(crate) const MERGE_AVERAGE: u64 = 32 * 1024;
/// ...and at least this many of them (so it happens rarely).
pub(crate) const MERGE_AT_LEAST: usize = 16;

/// How many of `segments` to keep when `appended` more bytes are stored after them: all, or
/// all but a trailing run that is merged into the new segment.
fn merged_from(segments: &[Segment], appended: u64) -> usize {
    if segments.len() < MERGE_ABOVE_SEGMENTS {
        return segments.len();
    }
    let mut total = appended;
    let mut start = segments.len();
    for (i, s) in segments.iter().enumerate().rev() {
        let count = (segments.len() - i + 1) as u64;
        // Only contiguous segments (not an esbackup 0.1 whole-file base).
        let next_at = segments.get(i + 1).map_or(s.at + s.len, |n| n.at);
        if s.at + s.len != next_at || total + s.len > count * MERGE_AVERAGE {
            break;
        }
        total += s.len;
        start = i;
    }
    if segments.len() - start + 1 >= MERGE_AT_LEAST {
        start
    } else {
        segments.len()
    }
}

/// A file that changes in place, as the plan sees it.
struct InPlace<'a> {
    key: &'a str,
    source: LocalFile,
    /// Its metadata when captured.
    stamp: FileStamp,
}

impl<'a> InPlace<'a> {
    fn side(f: &'a SideFile) -> InPlace<'a> {
        InPlace {
            key: &f.key,
            source: side_source(f),
            stamp: f.stamp,
        }
    }
}

/// Files that change in place and belong together (`scavenging.db` with its `-wal`/`-shm`; the
/// secondary index; each other file alone): all kept when none changed since the previous point
/// (same size and times), else all stored anew under new keys, uploaded with `check`, and
/// mirrored at the root.
fn plan_in_place_set(
    set: &[InPlace],
    check: UploadCheck,
    prev: &Previous,
    policy: &Policy,
) -> (Vec<FilePlan>, Vec<Mirror>) {
    let unchanged = set.iter().all(|f| {
        prev.keepable(f.key)
            .is_some_and(|p| p.stamp == Some(f.stamp) && p.size == f.stamp.len)
    });
    let mut files = Vec::new();
    let mut mirrors = Vec::new();
    for f in set {
        let action = match prev.keepable(f.key) {
            Some(p) if unchanged => Action::Keep(p.clone()),
            _ => {
                let object = layout::data_key(f.key, &policy.run_id);
                mirrors.push(Mirror::Copy {
                    from: object.clone(),
                    to: f.key.to_string(),
                });
                Action::Upload {
                    object,
                    source: f.source.clone(),
                    check,
                }
            }
        };
        files.push(FilePlan {
            key: f.key.to_string(),
            size: f.stamp.len,
            action,
            chunk: None,
            stamp: Some(f.stamp),
        });
    }
    (files, mirrors)
}

fn side_source(f: &SideFile) -> LocalFile {
    LocalFile {
        path: f.path.clone(),
        handle: Some(f.file.clone()),
        len: f.stamp.len,
    }
}

/// The stream-existence filter's plan: its two files, and their mirror writes (the data before
/// the checkpoint, so a mirror checkpoint never vouches for more than the mirror data holds).
struct ExistencePlan {
    files: Vec<FilePlan>,
    data_mirror: Option<Mirror>,
    checkpoint_mirror: Option<Mirror>,
}

/// The stream-existence filter: its checkpoint and data are kept or stored as a pair. A large
/// filter is stored again only when the stored pair lags far behind (see the constants).
fn plan_existence(
    existence: Option<&(Bytes, SideFile)>,
    prev: &Previous,
    policy: &Policy,
    notes: &mut Vec<String>,
) -> ExistencePlan {
    let none = ExistencePlan {
        files: vec![],
        data_mirror: None,
        checkpoint_mirror: None,
    };
    let Some((chk, dat)) = existence else {
        return none;
    };
    let chk_key = index_key(layout::STREAM_EXISTENCE_CHK);
    let stored = match (prev.keepable(&chk_key), prev.keepable(&dat.key)) {
        (Some(c), Some(d)) => match &c.content {
            Content::Inline { data } => Some((c, d, checkpoint::decode(data).ok())),
            _ => None,
        },
        _ => None,
    };
    let keep = stored.as_ref().is_some_and(|(c, d, stored_chk)| {
        let unchanged = d.stamp == Some(dat.stamp) && inline_equals(Some(c), chk);
        let lag = match (checkpoint::decode(chk).ok(), stored_chk) {
            (Some(now), Some(then)) => now - then,
            _ => i64::MAX,
        };
        let affordable_lag = dat.stamp.len as i64 * EXISTENCE_LAG_FACTOR;
        let large = dat.stamp.len > EXISTENCE_ALWAYS_BELOW;
        unchanged || (large && (0..affordable_lag).contains(&lag))
    });
    if let (true, Some((c, d, _))) = (keep, stored) {
        if d.stamp != Some(dat.stamp) {
            notes.push(format!(
                "the stream-existence filter ({} bytes) was kept from an earlier point: the node brings it up to date from its checkpoint at start-up",
                dat.stamp.len
            ));
        }
        let keep = |key: &str, f: &FileRef| FilePlan {
            key: key.to_string(),
            size: f.size,
            action: Action::Keep(f.clone()),
            chunk: None,
            stamp: f.stamp,
        };
        return ExistencePlan {
            files: vec![keep(&chk_key, c), keep(&dat.key, d)],
            ..none
        };
    }
    let object = layout::data_key(&dat.key, &policy.run_id);
    ExistencePlan {
        files: vec![
            inline(&chk_key, chk.clone(), prev.keepable(&chk_key)),
            FilePlan {
                key: dat.key.clone(),
                size: dat.stamp.len,
                action: Action::Upload {
                    object: object.clone(),
                    source: side_source(dat),
                    check: UploadCheck::None,
                },
                chunk: None,
                stamp: Some(dat.stamp),
            },
        ],
        data_mirror: Some(Mirror::Copy {
            from: object,
            to: dat.key.clone(),
        }),
        checkpoint_mirror: Some(Mirror::Bytes {
            key: chk_key,
            data: chk.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::chunk::{ChunkInfo, ChunkName};
    use crate::point::{Checkpoints, Window, FORMAT};
    use crate::source::chunks::ChunkSet;
    use crate::source::index::CapturedTable;
    use std::collections::BTreeMap;

    const SIZE: u32 = 1000;
    const ACTIVE: u64 = 4096;

    fn chunk(start: u32, completed: bool, data_end: u64) -> SourceChunk {
        let len = if completed { 2048 } else { ACTIVE };
        SourceChunk {
            name: ChunkName { start, version: 0 },
            path: PathBuf::from(format!("/db/chunk-{start:06}.000000")),
            info: ChunkInfo::sample(
                (start, start),
                completed,
                len,
                uuid::Uuid::from_u128(start as u128 + 1),
            ),
            data_end: if completed { len } else { data_end },
        }
    }

    fn checkpoints(writer: i64) -> CapturedCheckpoints {
        let files = [
            ("chaser.chk", writer),
            ("epoch.chk", 0),
            ("writer.chk", writer),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), Bytes::copy_from_slice(&v.to_le_bytes())))
        .collect();
        CapturedCheckpoints {
            values: Checkpoints {
                writer,
                chaser: writer,
                epoch: 0,
                proposal: -1,
            },
            files,
        }
    }

    fn table(name: &str, len: u64) -> CapturedTable {
        let file = Arc::new(File::open("/dev/null").unwrap());
        CapturedTable {
            table: crate::source::index::OpenedFile {
                key: index_key(name),
                path: PathBuf::from(format!("/db/index/{name}")),
                file,
                len,
            },
            bloom: None,
        }
    }

    fn captured(chunks: Vec<SourceChunk>, writer: i64, tables: Vec<CapturedTable>) -> Captured {
        Captured {
            index: IndexCapture {
                indexmap: Some(Bytes::from_static(b"map")),
                tables,
                rounds: 1,
            },
            side: SideFiles::default(),
            other: OtherFiles::default(),
            checkpoints: checkpoints(writer),
            chunks: ChunkSet {
                chunk_size: SIZE,
                chunks,
                beyond_writer: vec![],
                superseded: vec![],
            },
        }
    }

    fn policy(full: bool) -> Policy {
        Policy {
            full,
            run_id: "run2".into(),
        }
    }

    /// Turns a plan into the point its execution would store (MD5s made up).
    fn point_of(plan: &BackupPlan) -> Point {
        let files = plan
            .files
            .iter()
            .map(|f| {
                let content = match &f.action {
                    Action::Keep(r) => return (f.key.clone(), r.clone()),
                    Action::Inline { data, .. } => Content::Inline { data: data.clone() },
                    Action::Adopt { object, .. } | Action::Upload { object, .. } => {
                        Content::Object {
                            stored_size: None,
                            key: object.clone(),
                            md5: "m".into(),
                        }
                    }
                    Action::Append {
                        base,
                        from,
                        to,
                        object,
                        ..
                    } => {
                        let mut segments = base.clone();
                        segments.push(Segment {
                            stored_size: None,
                            key: object.clone(),
                            at: *from,
                            len: to - from,
                            md5: "s".into(),
                        });
                        Content::Segments {
                            segments,
                            data_end: *to,
                            tail: Window {
                                at: 0,
                                len: *to,
                                md5: "t".into(),
                            },
                        }
                    }
                };
                let r = FileRef {
                    size: f.size,
                    content,
                    chunk: f.chunk.clone(),
                    stamp: f.stamp,
                };
                (f.key.clone(), r)
            })
            .collect::<BTreeMap<_, _>>();
        let mut p = crate::point::tests::sample();
        p.format = FORMAT;
        p.files = files;
        p
    }

    fn action<'a>(plan: &'a BackupPlan, key: &str) -> &'a Action {
        &plan.files.iter().find(|f| f.key == key).unwrap().action
    }

    #[test]
    fn a_first_run_stores_everything_and_the_growing_chunk_up_to_the_writer() {
        let c = captured(
            vec![chunk(0, true, 0), chunk(1, false, 628)],
            1500,
            vec![table("t1", 300)],
        );
        let plan = plan(&c, None, &Probes::default(), &policy(false));
        assert!(matches!(
            action(&plan, "chunk-000000.000000"),
            Action::Upload { object, check: UploadCheck::TrailingMd5, .. } if object == "chunk-000000.000000"
        ));
        match action(&plan, "chunk-000001.000000") {
            Action::Append {
                from,
                to,
                base,
                object,
                ..
            } => {
                assert_eq!(
                    (*from, *to),
                    (0, 628),
                    "the data, not the preallocated tail"
                );
                assert!(base.is_empty());
                assert!(object.starts_with(layout::ACTIVE_DIR), "{object}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            action(&plan, "index/t1"),
            Action::Upload {
                check: UploadCheck::TrailingMd5,
                ..
            }
        ));
        assert!(matches!(
            action(&plan, "writer.chk"),
            Action::Inline { changed: true, .. }
        ));
        let mirrored: Vec<&str> = plan
            .mirrors
            .iter()
            .map(|m| match m {
                Mirror::Bytes { key, .. } => key.as_str(),
                _ => "",
            })
            .collect();
        assert_eq!(
            mirrored,
            ["writer.chk", "epoch.chk", "chaser.chk", "index/indexmap"]
        );
        assert_eq!(plan.upload_bytes(), 2048 + 628 + 300);
    }

    #[test]
    fn an_unchanged_database_keeps_everything_and_writes_no_mirror() {
        let c = captured(
            vec![chunk(0, true, 0), chunk(1, false, 628)],
            1500,
            vec![table("t1", 300)],
        );
        let first = point_of(&plan(&c, None, &Probes::default(), &policy(false)));
        let probes = Probes {
            tails_intact: ["chunk-000001.000000".to_string()].into(),
            ..Probes::default()
        };
        let again = plan(&c, Some(&first), &probes, &policy(false));
        assert!(
            again.files.iter().all(|f| matches!(
                f.action,
                Action::Keep(_) | Action::Inline { changed: false, .. }
            )),
            "{:?}",
            again.files
        );
        assert!(again.mirrors.is_empty());
        assert_eq!(again.upload_bytes(), 0);
    }

    #[test]
    fn a_growing_chunk_is_appended_to_only_while_its_stored_bytes_are_still_the_files() {
        let before = captured(vec![chunk(0, false, 628)], 500, vec![]);
        let first = point_of(&plan(&before, None, &Probes::default(), &policy(false)));
        let grown = captured(vec![chunk(0, false, 900)], 772, vec![]);
        let intact = Probes {
            tails_intact: ["chunk-000000.000000".to_string()].into(),
            ..Probes::default()
        };
        match action(
            &plan(&grown, Some(&first), &intact, &policy(false)),
            "chunk-000000.000000",
        ) {
            Action::Append { from, to, base, .. } => {
                assert_eq!((*from, *to), (628, 900));
                assert_eq!(base.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        // The stored tail no longer matches (the node truncated and rewrote): store it anew.
        match action(
            &plan(&grown, Some(&first), &Probes::default(), &policy(false)),
            "chunk-000000.000000",
        ) {
            Action::Append { from, base, .. } => assert!(*from == 0 && base.is_empty()),
            other => panic!("{other:?}"),
        }
        // Shorter than stored (truncated): anew, too.
        let shorter = captured(vec![chunk(0, false, 300)], 172, vec![]);
        match action(
            &plan(&shorter, Some(&first), &intact, &policy(false)),
            "chunk-000000.000000",
        ) {
            Action::Append { from, to, .. } => assert_eq!((*from, *to), (0, 300)),
            other => panic!("{other:?}"),
        }
        // Completed since: stored whole, once.
        let done = captured(vec![chunk(0, true, 0)], 1000, vec![]);
        assert!(matches!(
            action(
                &plan(&done, Some(&first), &intact, &policy(false)),
                "chunk-000000.000000"
            ),
            Action::Upload {
                check: UploadCheck::TrailingMd5,
                ..
            }
        ));
    }

    #[test]
    fn small_segments_are_merged_so_a_slow_chunk_stays_in_few_pieces() {
        let seg = |at: u64, len: u64| Segment {
            stored_size: None,
            key: format!("s{at}"),
            at,
            len,
            md5: "m".into(),
        };
        let small: Vec<Segment> = (0..40u64).map(|i| seg(128 + i * 200, 200)).collect();
        assert_eq!(
            merged_from(&small[..20], 200),
            20,
            "few segments: none merged"
        );
        let keep = merged_from(&small, 200);
        assert_eq!(keep, 0, "all tiny trailing segments merged");
        // Large segments (1 MiB appends) are never merged: they cost as much as they weigh.
        let big: Vec<Segment> = (0..40u64)
            .map(|i| seg(128 + i * (1 << 20), 1 << 20))
            .collect();
        assert_eq!(merged_from(&big, 1 << 20), 40);
        // A big one followed by many small ones: only the small ones.
        let mut mixed = vec![seg(128, 10 << 20)];
        mixed.extend((0..35u64).map(|i| seg(128 + (10 << 20) + i * 100, 100)));
        assert_eq!(merged_from(&mixed, 100), 1);
        // Over many runs of tiny appends the count stays bounded and each merge is small.
        let mut segments: Vec<Segment> = vec![];
        let mut end = 128u64;
        let mut resent = 0u64;
        for _ in 0..5000 {
            let keep = merged_from(&segments, 300);
            let from = segments.get(keep).map_or(end, |s| s.at);
            segments.truncate(keep);
            resent += end - from;
            segments.push(seg(from, end + 300 - from));
            end += 300;
            assert!(
                segments.len() <= MERGE_ABOVE_SEGMENTS + 1,
                "{}",
                segments.len()
            );
        }
        assert!(
            resent / 5000 <= MERGE_AVERAGE,
            "{} bytes re-sent per run",
            resent / 5000
        );
    }

    #[test]
    fn a_root_name_is_reused_only_when_it_holds_the_file_or_nothing_needed() {
        let c = captured(vec![chunk(0, true, 0), chunk(1, false, 200)], 1072, vec![]);
        let key = "chunk-000000.000000";
        for (state, expect) in [
            (RootObject::Same, "adopt"),
            (RootObject::Unneeded, "root"),
            (RootObject::Needed, "data"),
        ] {
            let probes = Probes {
                root: [(key.to_string(), state)].into(),
                ..Probes::default()
            };
            let got = match action(&plan(&c, None, &probes, &policy(false)), key) {
                Action::Adopt { .. } => "adopt",
                Action::Upload { object, .. } if object == key => "root",
                Action::Upload { object, .. } if object.starts_with(layout::DATA_DIR) => "data",
                other => panic!("{other:?}"),
            };
            assert_eq!(got, expect, "{state:?}");
        }
    }

    #[test]
    fn full_stores_again_but_never_over_another_file_a_point_names() {
        let c = captured(vec![chunk(0, true, 0), chunk(1, false, 200)], 1072, vec![]);
        let first = point_of(&plan(&c, None, &Probes::default(), &policy(false)));
        let again = plan(&c, Some(&first), &Probes::default(), &policy(true));
        assert!(
            matches!(
                action(&again, "chunk-000000.000000"),
                Action::Upload { object, .. } if object == "chunk-000000.000000"
            ),
            "the same file: stored again under its name"
        );
        // Another database's chunk under the same name: never overwritten.
        let mut other = captured(vec![chunk(0, true, 0), chunk(1, false, 200)], 1072, vec![]);
        other.chunks.chunks[0].info.header.chunk_id = uuid::Uuid::from_u128(99);
        let replaced = plan(&other, Some(&first), &Probes::default(), &policy(true));
        assert!(matches!(
            action(&replaced, "chunk-000000.000000"),
            Action::Upload { object, .. } if object.starts_with(layout::DATA_DIR)
        ));
    }

    #[test]
    fn a_large_existence_filter_is_kept_until_it_lags_far_behind() {
        use crate::source::side_files::SideFile;
        let stamp = |len, mtime_ns| crate::source::FileStamp {
            len,
            mtime_ns,
            ctime_ns: mtime_ns,
            inode: 1,
        };
        let filter = |chk: i64, s| {
            let mut c = captured(vec![chunk(0, false, 600)], 472, vec![]);
            c.side.existence = Some((
                Bytes::copy_from_slice(&chk.to_le_bytes()),
                SideFile {
                    key: index_key(layout::STREAM_EXISTENCE_DAT),
                    path: PathBuf::from("/db/index/stream-existence/streamExistenceFilter.dat"),
                    file: Arc::new(File::open("/dev/null").unwrap()),
                    stamp: s,
                },
            ));
            c
        };
        let dat = index_key(layout::STREAM_EXISTENCE_DAT);
        // The plan for a filter at checkpoint `chk` stamped `s`, after `previous`.
        let plan_of = |chk, s, previous: Option<&Point>| {
            plan(
                &filter(chk, s),
                previous,
                &Probes::default(),
                &policy(false),
            )
        };
        let big = 4 << 20;
        let first = point_of(&plan_of(100, stamp(big, 1), None));
        let p = plan_of(5000, stamp(big, 2), Some(&first));
        assert!(
            matches!(action(&p, &dat), Action::Keep(_)),
            "a small lag: kept"
        );
        assert!(p.notes.iter().any(|n| n.contains("stream-existence")));
        let far = 100 + big as i64 * EXISTENCE_LAG_FACTOR;
        let p = plan_of(far, stamp(big, 3), Some(&first));
        assert!(
            matches!(action(&p, &dat), Action::Upload { .. }),
            "far behind: stored"
        );
        let copy = p
            .mirrors
            .iter()
            .position(|m| matches!(m, Mirror::Copy { .. }))
            .unwrap();
        let chk = p
            .mirrors
            .iter()
            .position(|m| matches!(m, Mirror::Bytes { key, .. } if key.contains("streamExistenceFilter.chk")))
            .unwrap();
        assert!(copy < chk, "the data mirror before its checkpoint");
        let small = 64 << 10;
        let first = point_of(&plan_of(100, stamp(small, 1), None));
        let p = plan_of(200, stamp(small, 2), Some(&first));
        assert!(
            matches!(action(&p, &dat), Action::Upload { .. }),
            "small: always stored when changed"
        );
    }

    #[test]
    fn files_that_change_in_place_are_stored_as_a_set_under_new_keys() {
        use crate::source::side_files::SideFile;
        let side = |key: &str, mtime| SideFile {
            key: index_key(key),
            path: PathBuf::from(format!("/db/index/{key}")),
            file: Arc::new(File::open("/dev/null").unwrap()),
            stamp: crate::source::FileStamp {
                len: 10,
                mtime_ns: mtime,
                ctime_ns: mtime,
                inode: 1,
            },
        };
        let with = |files: Vec<SideFile>| {
            let mut c = captured(vec![chunk(0, false, 600)], 472, vec![]);
            c.side.scavenging = files;
            c
        };
        let first = point_of(&plan(
            &with(vec![
                side(layout::SCAVENGING_DB, 1),
                side(layout::SCAVENGING_WAL, 1),
            ]),
            None,
            &Probes::default(),
            &policy(false),
        ));
        let same = plan(
            &with(vec![
                side(layout::SCAVENGING_DB, 1),
                side(layout::SCAVENGING_WAL, 1),
            ]),
            Some(&first),
            &Probes::default(),
            &policy(false),
        );
        assert!(matches!(
            action(&same, &index_key(layout::SCAVENGING_DB)),
            Action::Keep(_)
        ));
        let changed = plan(
            &with(vec![side(layout::SCAVENGING_DB, 2)]),
            Some(&first),
            &Probes::default(),
            &policy(false),
        );
        assert!(matches!(
            action(&changed, &index_key(layout::SCAVENGING_DB)),
            Action::Upload { object, check: UploadCheck::Unchanged, .. } if object.starts_with(layout::DATA_DIR)
        ));
        assert!(changed.mirrors.contains(&Mirror::Delete {
            key: index_key(layout::SCAVENGING_WAL)
        }));
    }

    #[test]
    fn other_files_are_stored_each_on_its_own_kept_while_unchanged_and_unmirrored_when_gone() {
        use crate::source::other_files::OtherFile;
        let other = |key: &str, mtime| OtherFile {
            key: key.to_string(),
            path: PathBuf::from(format!("/db/{key}")),
            stamp: crate::source::FileStamp {
                len: 10,
                mtime_ns: mtime,
                ctime_ns: mtime,
                inode: 1,
            },
        };
        let with = |files: Vec<OtherFile>| {
            let mut c = captured(vec![chunk(0, false, 600)], 472, vec![]);
            c.other.files = files;
            c
        };
        let (notes, vectors) = ("custom-notes.txt", "index/kontext/vectors.bin");
        let first_plan = plan(
            &with(vec![other(notes, 1), other(vectors, 1)]),
            None,
            &Probes::default(),
            &policy(false),
        );
        for key in [notes, vectors] {
            assert!(matches!(
                action(&first_plan, key),
                Action::Upload { object, check: UploadCheck::HeldStill, source } if object == &layout::data_key(key, "run2") && source.handle.is_none()
            ));
            assert!(first_plan.mirrors.contains(&Mirror::Copy {
                from: layout::data_key(key, "run2"),
                to: key.to_string()
            }));
        }
        let first = point_of(&first_plan);
        // The notes unchanged, the vectors rewritten: only the vectors stored again.
        let second = plan(
            &with(vec![other(notes, 1), other(vectors, 2)]),
            Some(&first),
            &Probes::default(),
            &policy(false),
        );
        assert!(matches!(action(&second, notes), Action::Keep(_)));
        assert!(matches!(action(&second, vectors), Action::Upload { .. }));
        assert_eq!(
            second.mirrors,
            [Mirror::Copy {
                from: layout::data_key(vectors, "run2"),
                to: vectors.into()
            }]
        );
        // The notes deleted: gone from the plan and from the root mirror, first of all writes.
        let third = plan(
            &with(vec![other(vectors, 1)]),
            Some(&first),
            &Probes::default(),
            &policy(false),
        );
        assert!(third.files.iter().all(|f| f.key != notes));
        assert_eq!(third.mirrors[0], Mirror::Delete { key: notes.into() });
        // Left out at the copy: not in the plan, its root copy removed, a note for the point.
        let mut fourth = plan(
            &with(vec![other(notes, 1), other(vectors, 3)]),
            Some(&first),
            &Probes::default(),
            &policy(false),
        );
        fourth.leave_out(vec![Skipped {
            file: vectors.into(),
            why: "it changed while it was read".into(),
        }]);
        assert!(fourth.files.iter().all(|f| f.key != vectors));
        assert_eq!(
            fourth.mirrors,
            [Mirror::Delete {
                key: vectors.into()
            }]
        );
        assert!(fourth
            .point_notes()
            .iter()
            .any(|n| n.contains(vectors) && n.contains("changed while it was read")));
    }

    #[test]
    fn the_root_copy_of_a_chunk_or_table_the_source_lost_is_never_removed() {
        let c = captured(
            vec![chunk(0, true, 0), chunk(1, false, 200)],
            1072,
            vec![
                table("t1", 300),
                table("5a1a8395-94ee-40c1-bf93-aa757b5887f8", 300),
            ],
        );
        let first = point_of(&plan(&c, None, &Probes::default(), &policy(false)));
        let later = captured(vec![chunk(1, false, 200)], 1072, vec![]);
        let p = plan(&later, Some(&first), &Probes::default(), &policy(false));
        assert!(
            !p.mirrors.iter().any(|m| matches!(m, Mirror::Delete { .. })),
            "older points still need them: {:?}",
            p.mirrors
        );
    }
}
