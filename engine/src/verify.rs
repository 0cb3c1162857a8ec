//! Verify restore points without restoring them: every object a point needs is stored with the
//! recorded size, and the point describes a database the server would open (checkpoints in
//! order, chunks covering the log up to the writer, an `indexmap` whose tables are there). With
//! `read_data`, every object is read back once and re-hashed, and completed chunks and index
//! tables are checked against their own MD5s too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::{stream, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::download::{download, Sink};
use crate::error::{EngineError, Result};
use crate::format::checkpoint;
use crate::format::indexmap::{self, IndexMap};
use crate::hashing::{Md5Lanes, StreamHasher};
use crate::layout::{classify, index_key, Kind};
use crate::location::{DamagedPoint, Location};
use crate::lock::list_locks;
use crate::point::{Content, Point};
use crate::progress::NoProgress;
use crate::restore::{choose, missing, Which};
use crate::target::Target;

#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// One point; all points when `None`.
    pub point: Option<Which>,
    pub read_data: bool,
    /// With `read_data`: only the objects of share `n` of `m` (1-based; every object is in
    /// exactly one share, by the MD5 of its key), so that `m` verifies read everything once.
    pub read_data_subset: Option<(u32, u32)>,
    pub concurrency: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            point: None,
            read_data: false,
            read_data_subset: None,
            concurrency: crate::restore::DEFAULT_RESTORE_CONCURRENCY,
        }
    }
}

/// The verdict on one point.
#[derive(Clone, Debug, Serialize)]
pub struct PointCheck {
    pub id: String,
    pub time: DateTime<Utc>,
    /// Everything wrong with it; empty when it verifies.
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub target: String,
    pub read_data: bool,
    pub points: Vec<PointCheck>,
    /// Distinct stored objects checked, and their bytes.
    pub objects: u64,
    pub bytes: u64,
    /// Of those, the objects read back and hashed (`read_data`, in its share), and their bytes.
    pub read_objects: u64,
    pub read_bytes: u64,
    /// A backup or forget holding the lock meanwhile (its point, if any, is not checked yet).
    pub running: Option<String>,
    /// Point objects that cannot be read as points.
    pub damaged: Vec<DamagedPoint>,
    /// Points a concurrent `forget` removed while this verify ran (not checked, not problems).
    pub forgotten_meanwhile: Vec<String>,
    /// What is wrong with the root mirror of the newest point (the plain copy the README
    /// promises): restores still work; the next backup rewrites it. Problems with `--strict`.
    /// Not checked while a run holds the lock (a backup rewrites the mirror as it goes).
    pub mirror: Vec<String>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.damaged.is_empty() && self.points.iter().all(|p| p.problems.is_empty())
    }

    /// Every problem, prefixed with its point.
    pub fn problems(&self) -> Vec<String> {
        let damaged = self.damaged.iter().map(|d| d.problem.clone());
        let each = self.points.iter().flat_map(|p| {
            p.problems
                .iter()
                .map(move |m| format!("point {}: {m}", p.id))
        });
        damaged.chain(each).collect()
    }
}

pub async fn verify(target: Arc<dyn Target>, opts: &VerifyOptions) -> Result<VerifyReport> {
    let location = Location::open(target.clone()).await?;
    if !location.has_backup() {
        return Err(location.no_backup());
    }
    let (points, damaged) = match &opts.point {
        Some(which) => (vec![choose(&location, which).await?], vec![]),
        None => {
            let all = location.points().await?;
            (all.readable, all.damaged)
        }
    };
    let running = running_run(target.as_ref()).await?;
    let listing = crate::target::list_sizes(target.as_ref())
        .await
        .map_err(|e| EngineError::storage("listing the backup location", e))?;
    // A running backup rewrites the mirror for the point it is about to write.
    let newest = points
        .last()
        .filter(|p| Some(&p.id) == location.ids.last() && running.is_none());
    let mirror = match target.encodes() {
        false => newest.map_or_else(Vec::new, |p| mirror_problems(p, &listing)),
        // An encoding location keeps no plain root copy.
        true => Vec::new(),
    };
    let mut checks: Vec<PointCheck> = points.iter().map(|p| check_point(p, &listing)).collect();
    let objects = objects_of(&points);
    let bytes = objects.values().map(|o| o.size).sum();
    let (read_objects, read_bytes) = match opts.read_data {
        true => {
            read_back_into(
                target.as_ref(),
                &objects,
                &listing,
                opts,
                (&points, &mut checks),
            )
            .await?
        }
        false => (0, 0),
    };
    let forgotten_meanwhile = drop_forgotten(&target, &location, &mut checks).await?;
    Ok(VerifyReport {
        target: target.describe(),
        read_data: opts.read_data,
        points: checks,
        objects: objects.len() as u64,
        bytes,
        read_objects,
        read_bytes,
        running,
        damaged,
        forgotten_meanwhile,
        mirror,
    })
}

/// Says so when a run holds the lock (the points checked are then the completed ones).
async fn running_run(target: &dyn Target) -> Result<Option<String>> {
    Ok(list_locks(target)
        .await?
        .into_iter()
        .find(|l| l.dead.is_none())
        .map(|l| {
            format!(
                "a {} is running (lock held by run {} on {} pid {}): the points checked are the completed ones",
                l.info.command, l.info.run_id, l.info.host, l.info.pid
            )
        }))
}

/// The objects `point` names that the listing lacks, and the problems of its own structure.
fn check_point(point: &Point, listing: &BTreeMap<String, u64>) -> PointCheck {
    let mut problems: Vec<String> = missing(point, listing)
        .into_iter()
        .map(|m| format!("{m} is missing"))
        .collect();
    problems.extend(structure_problems(point));
    PointCheck {
        id: point.id.clone(),
        time: point.time,
        problems,
    }
}

/// Reads back every listed object of the right size, `concurrency` at a time: (key, problem)
/// for each that does not hash to its MD5.
/// Reads back the objects of `opts.read_data_subset` (all without one), adds what is wrong
/// to the checks of the points that need them, and returns the objects and bytes read.
async fn read_back_into(
    target: &dyn Target,
    objects: &BTreeMap<String, Obj>,
    listing: &BTreeMap<String, u64>,
    opts: &VerifyOptions,
    (points, checks): (&[Point], &mut [PointCheck]),
) -> Result<(u64, u64)> {
    let share = opts.read_data_subset;
    let chosen = || {
        objects
            .iter()
            .filter(move |(k, _)| share.is_none_or(|s| in_share(k, s)))
    };
    let read = (chosen().count() as u64, chosen().map(|(_, o)| o.size).sum());
    let bad = read_data(target, objects, listing, share, opts.concurrency).await?;
    for (key, problem) in bad {
        for (check, point) in checks.iter_mut().zip(points) {
            if point.objects().iter().any(|o| o.key == key) {
                check.problems.push(problem.clone());
            }
        }
    }
    Ok(read)
}

async fn read_data(
    target: &dyn Target,
    objects: &BTreeMap<String, Obj>,
    listing: &BTreeMap<String, u64>,
    share: Option<(u32, u32)>,
    concurrency: usize,
) -> Result<Vec<(String, String)>> {
    // This verify's MD5 lanes: its thread stops when the reads are done.
    let lanes = Md5Lanes::new();
    let reads: Vec<_> = objects
        .iter()
        .filter(|(k, o)| listing.get(*k) == Some(&o.stored_size))
        .filter(|(k, _)| share.is_none_or(|s| in_share(k, s)))
        .map(|(key, obj)| read_back(target, key, obj, &lanes))
        .collect();
    stream::iter(reads)
        .buffer_unordered(concurrency.max(1))
        .try_filter_map(|p| async move { Ok(p) })
        .try_collect()
        .await
}

/// Whether `key` is in share `n` of `m` (1-based).
fn in_share(key: &str, (n, m): (u32, u32)) -> bool {
    let digest = crate::hashing::md5(key.as_bytes());
    let bucket = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) % m.max(1) as u64;
    bucket + 1 == n as u64
}

/// A point with problems that is gone now was forgotten meanwhile: not damage. Removes such
/// points from `checks` and returns their ids.
async fn drop_forgotten(
    target: &Arc<dyn Target>,
    location: &Location,
    checks: &mut Vec<PointCheck>,
) -> Result<Vec<String>> {
    let mut forgotten = Vec::new();
    if checks.iter().all(|c| c.problems.is_empty()) || location.ids.is_empty() {
        return Ok(forgotten);
    }
    let now = Location::read(target.clone()).await?;
    checks.retain(|c| {
        let gone = !c.problems.is_empty() && !now.ids.contains(&c.id);
        if gone {
            forgotten.push(c.id.clone());
        }
        !gone
    });
    Ok(forgotten)
}

/// Root copies of the newest point's files that are missing or of another size. Files stored
/// at their own name are checked as the point's objects; growing chunks have no root copy.
fn mirror_problems(newest: &Point, listing: &BTreeMap<String, u64>) -> Vec<String> {
    newest
        .files
        .iter()
        .filter(|(key, f)| match &f.content {
            Content::Inline { .. } => true,
            Content::Object { key: stored, .. } => stored != *key,
            Content::Segments { .. } => false,
        })
        .filter_map(|(key, f)| match listing.get(key) {
            Some(&size) if size == f.size => None,
            Some(&size) => Some(format!(
                "the root copy of {key} has {size} bytes, not {}: a plain copy of the location is not the newest point (the next backup rewrites it)",
                f.size
            )),
            None => Some(format!(
                "the root copy of {key} is missing: a plain copy of the location is not the newest point (the next backup rewrites it)"
            )),
        })
        .collect()
}

/// A stored object and what it must hold.
struct Obj {
    size: u64,
    /// Its size in the listing (other than `size` in an encoding location).
    stored_size: u64,
    md5: String,
    /// The database file it holds whole, when it does (for its own checks).
    whole: Option<String>,
}

fn objects_of(points: &[Point]) -> BTreeMap<String, Obj> {
    let mut out = BTreeMap::new();
    for p in points {
        for (key, f) in &p.files {
            let whole = matches!(f.content, Content::Object { .. }).then(|| key.clone());
            for o in f.objects() {
                out.entry(o.key).or_insert(Obj {
                    size: o.size,
                    stored_size: o.stored_size,
                    md5: o.md5,
                    whole: whole.clone(),
                });
            }
        }
    }
    out
}

/// Reads one object back; `Some((key, problem))` when it is not what the points recorded.
async fn read_back(
    target: &dyn Target,
    key: &str,
    obj: &Obj,
    lanes: &Md5Lanes,
) -> Result<Option<(String, String)>> {
    let kind = obj.whole.as_deref().map(classify);
    let trailing = matches!(kind, Some(Kind::Chunk(_)) | Some(Kind::PTable(_)));
    let hasher = StreamHasher::shared(Some(lanes), obj.size, trailing);
    let mut sink = Sink::new(None, 0, hasher, key.to_string());
    match download(target, key, obj.size, &mut sink, &NoProgress).await {
        Ok(()) => {}
        Err(e) if e.kind() == crate::error::ErrorKind::Damaged => {
            return Ok(Some((key.to_string(), e.message().to_string())))
        }
        // Deleted since the listing (a concurrent prune of a forgotten point).
        Err(_) if target.head(key).await.is_err_and(|e| e.is_not_found()) => {
            return Ok(Some((key.to_string(), format!("{key} is missing"))))
        }
        Err(e) => return Err(e),
    }
    let hashes = sink.finish().await?;
    if hashes.md5_hex() != obj.md5 {
        return Ok(Some((
            key.to_string(),
            format!("{key} does not match the MD5 recorded when it was stored"),
        )));
    }
    let own = match kind {
        Some(Kind::Chunk(_)) if hashes.completed_chunk_footer().is_some() => {
            (hashes.trailing_md5_ok == Some(false))
                .then_some("completed chunk fails its footer MD5")
        }
        Some(Kind::PTable(_)) => {
            (hashes.trailing_md5_ok == Some(false)).then_some("index table fails its own MD5")
        }
        _ => None,
    };
    Ok(own.map(|p| (key.to_string(), format!("{key}: {p}"))))
}

/// What keeps a point from being a database the server opens: checkpoints out of order or
/// disagreeing with the point's record, chunks not covering the log up to the writer, an
/// `indexmap` that is damaged, names tables the point lacks, or commits beyond the chaser.
pub(crate) fn structure_problems(p: &Point) -> Vec<String> {
    let mut problems = Vec::new();
    let c = p.checkpoints;
    if c.chaser > c.writer {
        problems.push(format!("chaser {} is beyond writer {}", c.chaser, c.writer));
    }
    if c.epoch > c.writer {
        problems.push(format!("epoch {} is beyond writer {}", c.epoch, c.writer));
    }
    for (name, value) in [
        (checkpoint::WRITER, c.writer),
        (checkpoint::CHASER, c.chaser),
    ] {
        let stored = match p.files.get(name).map(|f| &f.content) {
            Some(Content::Inline { data }) => checkpoint::decode(data).ok(),
            _ => None,
        };
        if stored.is_some() && stored != Some(value) {
            problems.push(format!(
                "{name} holds {stored:?}, the point records {value}"
            ));
        }
    }
    let size = p.chunk_size as i64;
    let mut ranges: Vec<(i64, i64)> = p
        .files
        .iter()
        .filter_map(|(k, f)| match classify(k) {
            Kind::Chunk(name) => Some((
                name.start as i64,
                f.chunk.as_ref().map_or(name.start, |c| c.end) as i64,
            )),
            _ => None,
        })
        .collect();
    ranges.sort();
    let mut next = ranges.first().map_or(0, |r| r.0);
    for (start, end) in ranges {
        if start > next {
            problems.push(format!("chunks {next}..{} are missing", start - 1));
        }
        next = next.max(end + 1);
    }
    if c.writer > next * size {
        problems.push(format!(
            "the chunks end at log position {} but the writer checkpoint is {}",
            next * size,
            c.writer
        ));
    }
    let map_key = index_key(indexmap::FILE_NAME);
    if let Some(Content::Inline { data }) = p.files.get(&map_key).map(|f| &f.content) {
        match IndexMap::parse(data) {
            Err(e) => problems.push(format!("{map_key}: {e}")),
            Ok(map) => {
                if map.commit_checkpoint >= 0 && map.commit_checkpoint >= c.chaser {
                    problems.push(format!(
                        "indexmap commit checkpoint {} is not below chaser {}",
                        map.commit_checkpoint, c.chaser
                    ));
                }
                let absent: BTreeSet<&str> = map
                    .tables
                    .iter()
                    .map(|t| t.file.as_str())
                    .filter(|t| !p.files.contains_key(&index_key(t)))
                    .collect();
                for t in absent {
                    problems.push(format!("indexmap names table {t}, which the point lacks"));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::in_share;

    #[test]
    fn every_key_is_in_exactly_one_share_and_the_shares_are_even() {
        let keys: Vec<String> = (0..7000)
            .map(|i| format!("data/chunk-{i:06}.000000"))
            .collect();
        let mut sizes = [0usize; 7];
        for key in &keys {
            let shares: Vec<u32> = (1..=7).filter(|&n| in_share(key, (n, 7))).collect();
            assert_eq!(shares.len(), 1, "{key} is in shares {shares:?}");
            sizes[shares[0] as usize - 1] += 1;
        }
        assert!(sizes.iter().all(|&n| (800..1200).contains(&n)), "{sizes:?}");
        assert!(keys.iter().all(|k| in_share(k, (1, 1))));
    }
}
