//! Restore a backup into a folder: copy every file back (hash-checked against the manifest while
//! it streams), drop what a consistent database must not have, and set `truncate.chk` :=
//! `chaser.chk`, as the vendor procedure says.
//!
//! What an interrupted later run may have left is handled here: chunks starting beyond the
//! stored writer checkpoint are not restored (the server refuses to truncate with them present),
//! a `.old` copy stands in for a chunk that is missing, and index tables the stored `indexmap`
//! does not name are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::{stream, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::backup::Tally;
use crate::error::{EngineError, Result};
use crate::fetch::{fetch, own_check};
use crate::format::checkpoint;
use crate::format::chunk::{ChunkHeader, HEADER_LEN};
use crate::format::indexmap::{self, IndexMap};
use crate::layout::{self, classify, index_key, Kind};
use crate::manifest::{FileEntry, Manifest};
use crate::progress::{NoProgress, Progress};
use crate::retry::{RetryPolicy, RetryTarget};
use crate::source::{read_dir_names, SourceDirs};
use crate::target::{get_bytes, list_sizes, Target};

#[derive(Clone)]
pub struct RestoreOptions {
    pub db: PathBuf,
    /// Defaults to `<db>/index`.
    pub index: Option<PathBuf>,
    /// Restore into folders that hold files (their database files are removed first).
    pub force: bool,
    /// Restore even if no backup run ever completed at the location.
    pub allow_incomplete: bool,
    pub concurrency: usize,
    pub retry: RetryPolicy,
    pub progress: Arc<dyn Progress>,
}

impl RestoreOptions {
    pub fn new(db: impl Into<PathBuf>) -> RestoreOptions {
        RestoreOptions {
            db: db.into(),
            index: None,
            force: false,
            allow_incomplete: false,
            concurrency: 4,
            retry: RetryPolicy::default(),
            progress: Arc::new(NoProgress),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    pub target: String,
    pub db: String,
    pub index: String,
    /// The run whose manifest was found, and whether it completed.
    pub run_id: String,
    pub run_completed: bool,
    pub restored: Tally,
    pub writer: i64,
    pub chaser: i64,
    /// `truncate.chk` as written (= chaser).
    pub truncate: i64,
    /// Chunks left out because they start beyond the stored writer checkpoint.
    pub beyond_writer: Vec<String>,
    /// `.old` copies restored in place of a missing chunk.
    pub from_old: Vec<String>,
    /// Newer chunk versions an interrupted run stored for checkpoints it never wrote.
    pub newer_versions_left_out: Vec<String>,
    pub warnings: Vec<String>,
    pub duration_secs: f64,
}

/// One file to restore: where it comes from and where it goes.
struct Item {
    key: String,
    /// The name it gets locally (differs from `key` for a `.old` copy).
    as_key: String,
}

pub async fn restore(target: Arc<dyn Target>, opts: &RestoreOptions) -> Result<RestoreReport> {
    let started = Instant::now();
    let target: Arc<dyn Target> = Arc::new(RetryTarget::new(target, opts.retry.clone()));
    let dirs = SourceDirs::new(&opts.db, opts.index.as_deref());
    let manifest = load_manifest(target.as_ref(), opts.allow_incomplete).await?;
    prepare_destination(&dirs, opts.force)?;

    let listing = list_sizes(target.as_ref()).await?;
    let writer = stored_checkpoint(target.as_ref(), &listing, checkpoint::WRITER).await?;
    let chaser = stored_checkpoint(target.as_ref(), &listing, checkpoint::CHASER).await?;
    let chunk_size = match manifest.as_ref().and_then(|m| m.chunk_size) {
        Some(size) => size,
        None => chunk_size_from_backup(target.as_ref(), &listing).await?,
    };
    let writer_chunk = (writer / chunk_size as i64) as u32;

    let mut report = RestoreReport {
        target: target.describe(),
        db: dirs.db.display().to_string(),
        index: dirs.index.display().to_string(),
        run_id: manifest
            .as_ref()
            .map(|m| m.run_id.clone())
            .unwrap_or_default(),
        run_completed: manifest.as_ref().is_some_and(|m| m.is_completed()),
        restored: Tally::default(),
        writer,
        chaser,
        truncate: chaser,
        beyond_writer: vec![],
        from_old: vec![],
        newer_versions_left_out: vec![],
        warnings: vec![],
        duration_secs: 0.0,
    };
    if let Some(m) = manifest.as_ref().filter(|m| !m.is_completed()) {
        report.warnings.push(format!(
            "the latest backup run {} did not complete ({}): restoring the consistent state it left; files it changed are checked by their own checksums",
            m.run_id,
            m.error.as_deref().unwrap_or("interrupted")
        ));
    }
    // A run that died before writing `chaser.chk` leaves the chaser of the last completed run,
    // which is where the server will truncate: the chunk versions that run stored hold the log
    // up to it, while a newer (scavenged) version containing it would make the server truncate
    // from that chunk's start.
    let last_completed_state = manifest.as_ref().is_some_and(|m| {
        !m.is_completed()
            && m.last_completed
                .as_ref()
                .is_some_and(|c| c.checkpoints.chaser == chaser)
    });
    let state = StoredState {
        writer_chunk,
        chaser_chunk: (chaser / chunk_size as i64) as u32,
        last_completed_state,
    };
    let items = plan(target.as_ref(), &listing, &state, &mut report).await?;
    let total = items.iter().map(|i| listing[&i.key]).sum();
    opts.progress.phase("restore", total);

    let (files, trusted) = match manifest {
        Some(m) => (m.files.clone(), m.is_completed()),
        None => (BTreeMap::new(), false),
    };
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let dirs = Arc::new(dirs);
    let files = Arc::new(files);
    // Each file is its own task, so hashing and writing use every core.
    let restored: Vec<u64> = stream::iter(items)
        .map(|item| {
            let job = RestoreJob {
                target: target.clone(),
                dirs: dirs.clone(),
                entry: files.get(&item.key).cloned(),
                trusted,
                warnings: warnings.clone(),
                progress: opts.progress.clone(),
            };
            tokio::spawn(job.run(item))
        })
        .buffer_unordered(opts.concurrency.max(1))
        .map(|joined| joined.unwrap_or_else(|e| Err(EngineError::Io(format!("restore task: {e}")))))
        .try_collect()
        .await?;
    for bytes in restored {
        report.restored.add(bytes);
    }
    report.warnings.extend(warnings.lock().unwrap().drain(..));
    let truncate = dirs.db.join(checkpoint::TRUNCATE);
    checkpoint::write(&truncate, chaser).map_err(|e| EngineError::io(truncate.display(), e))?;
    opts.progress.finish();
    report.duration_secs = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn load_manifest(target: &dyn Target, allow_incomplete: bool) -> Result<Option<Manifest>> {
    let manifest = Manifest::load(target).await?;
    match &manifest {
        None if !allow_incomplete => Err(EngineError::NoBackup(format!(
            "no esbackup backup at {} (no {}): check the target, or pass --allow-incomplete to restore whatever files are there",
            target.describe(),
            layout::MANIFEST
        ))),
        Some(m) if m.last_completed.is_none() && !allow_incomplete => {
            Err(EngineError::NoBackup(format!(
                "no backup run ever completed at {} (run {} is {:?}): run a backup to completion, or pass --allow-incomplete",
                target.describe(),
                m.run_id,
                m.state
            )))
        }
        _ => Ok(manifest),
    }
}

/// Refuses folders that hold files unless `force`; with `force`, removes the database files in
/// them (chunks, checkpoints, index files, secondary index) and leaves anything else alone.
fn prepare_destination(dirs: &SourceDirs, force: bool) -> Result<()> {
    for dir in [&dirs.db, &dirs.index] {
        let names = read_dir_names(dir)?;
        let names: Vec<&String> = names
            .iter()
            .filter(|n| !(dir == &dirs.db && dirs.index == dir.join(n.as_str())))
            .collect();
        if names.is_empty() {
            continue;
        }
        if !force {
            return Err(EngineError::DestinationNotEmpty(format!(
                "{} is not empty ({} entries): restore into an empty folder, or pass --force to replace its database files",
                dir.display(),
                names.len()
            )));
        }
        for name in names {
            let path = dir.join(name);
            let key = if dir == &dirs.index {
                index_key(name)
            } else {
                name.clone()
            };
            let is_db_file = !matches!(classify(&key), Kind::Unknown | Kind::Meta)
                || name.ends_with(".chk")
                || (dir == &dirs.index
                    && matches!(name.as_str(), "stream-existence" | "scavenging"));
            if !is_db_file {
                continue;
            }
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| EngineError::io(path.display(), e))?;
        }
    }
    for dir in [&dirs.db, &dirs.index] {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir.display(), e))?;
    }
    Ok(())
}

async fn stored_checkpoint(
    target: &dyn Target,
    listing: &BTreeMap<String, u64>,
    name: &str,
) -> Result<i64> {
    if !listing.contains_key(name) {
        return Err(EngineError::Corrupt(format!(
            "the backup at {} has no {name}: it cannot be restored (no run got as far as writing checkpoints)",
            target.describe()
        )));
    }
    let bytes = get_bytes(target, name).await?;
    checkpoint::decode(&bytes).map_err(|e| EngineError::Corrupt(format!("{name}: {e}")))
}

async fn chunk_size_from_backup(
    target: &dyn Target,
    listing: &BTreeMap<String, u64>,
) -> Result<u32> {
    let key = listing
        .keys()
        .find(|k| matches!(classify(k), Kind::Chunk(_)))
        .ok_or_else(|| EngineError::Corrupt("the backup holds no chunk files".into()))?;
    let parts: Vec<bytes::Bytes> = target
        .get(key, Some(0..HEADER_LEN))
        .await?
        .try_collect()
        .await?;
    let bytes = parts.concat();
    let header: &[u8; HEADER_LEN as usize] = bytes
        .get(..HEADER_LEN as usize)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| EngineError::Corrupt(format!("{key} is too short to be a chunk")))?;
    ChunkHeader::decode(header)
        .map(|h| h.chunk_size)
        .map_err(|e| EngineError::Corrupt(format!("{key}: {e}")))
}

/// What the stored state says about choosing files.
struct StoredState {
    writer_chunk: u32,
    chaser_chunk: u32,
    /// The stored chaser is the last completed run's, after an interrupted run.
    last_completed_state: bool,
}

/// Decides what to restore: chunk files (see [`plan_chunks`]), the `indexmap` and the tables it
/// names, and the other database files.
async fn plan(
    target: &dyn Target,
    listing: &BTreeMap<String, u64>,
    state: &StoredState,
    report: &mut RestoreReport,
) -> Result<Vec<Item>> {
    let mut items = plan_chunks(target, listing, state, report).await?;
    let same = |key: &str| Item {
        key: key.to_string(),
        as_key: key.to_string(),
    };
    let index_map = index_key(indexmap::FILE_NAME);
    let tables: BTreeSet<String> = if listing.contains_key(&index_map) {
        let bytes = get_bytes(target, &index_map).await?;
        let map = IndexMap::parse(&bytes)
            .map_err(|e| EngineError::Corrupt(format!("the stored indexmap: {e}")))?;
        map.tables.into_iter().map(|t| t.file).collect()
    } else {
        BTreeSet::new()
    };
    for table in &tables {
        if !listing.contains_key(&index_key(table)) {
            return Err(EngineError::Corrupt(format!(
                "the stored indexmap names index/{table}, which the backup does not hold"
            )));
        }
    }
    for key in listing.keys() {
        let wanted = match classify(key) {
            Kind::Checkpoint(name) => name != checkpoint::TRUNCATE,
            Kind::IndexMap | Kind::IndexOther(_) | Kind::SecondaryIndex(_) => true,
            Kind::PTable(t) | Kind::Bloom(t) => tables.contains(&t),
            Kind::Chunk(_) | Kind::OldChunk(_) | Kind::Meta | Kind::Unknown => false,
        };
        if wanted {
            items.push(same(key));
        }
    }
    Ok(items)
}

/// Which chunk files to restore:
/// - none starting beyond the stored writer's chunk (the server refuses to truncate with them);
/// - after an interrupted run that did not write its chaser, only the lowest stored version of
///   each chunk: newer versions (a scavenge's output) were stored for a chaser never written,
///   and the server would truncate from the start of a scavenged chunk holding the chaser,
///   losing what the last completed run had;
/// - a `.old` copy in place of its chunk when the chunk itself is missing;
/// - not a leading chunk held only as an incomplete copy below the chaser's chunk: the source
///   dropped it (archiving) after the backup copied it while it was active; an archiving node
///   reads it from its archive.
async fn plan_chunks(
    target: &dyn Target,
    listing: &BTreeMap<String, u64>,
    state: &StoredState,
    report: &mut RestoreReport,
) -> Result<Vec<Item>> {
    let mut lowest: BTreeMap<u32, u32> = BTreeMap::new();
    for key in listing.keys() {
        if let Kind::Chunk(name) = classify(key) {
            let v = lowest.entry(name.start).or_insert(name.version);
            *v = (*v).min(name.version);
        }
    }
    // Chosen files by start number: (local name, stored key).
    let mut chosen: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
    for key in listing.keys() {
        match classify(key) {
            Kind::Chunk(name) if name.start > state.writer_chunk => {
                report.beyond_writer.push(key.clone())
            }
            Kind::Chunk(name)
                if state.last_completed_state && lowest[&name.start] != name.version =>
            {
                report.newer_versions_left_out.push(key.clone())
            }
            Kind::Chunk(name) => chosen
                .entry(name.start)
                .or_default()
                .push((key.clone(), key.clone())),
            Kind::OldChunk(name)
                if !listing.contains_key(&name.to_string()) && name.start <= state.writer_chunk =>
            {
                report.from_old.push(key.clone());
                chosen
                    .entry(name.start)
                    .or_default()
                    .push((name.to_string(), key.clone()));
            }
            _ => {}
        }
    }
    while let Some((&start, files)) = chosen.first_key_value() {
        let (_, effective) = files.iter().max().expect("non-empty");
        if start >= state.chaser_chunk
            || stored_chunk_completed(target, effective, listing[effective]).await?
        {
            break;
        }
        report.warnings.push(format!(
            "left out chunk {start}: the backup holds only an incomplete copy of it, taken while it was active, and the source has dropped it since (archiving); the node reads it from its archive"
        ));
        chosen.pop_first();
    }
    Ok(chosen
        .into_values()
        .flatten()
        .map(|(as_key, key)| Item { key, as_key })
        .collect())
}

/// Whether a stored chunk ends in a completed footer (one ranged read of its last 128 bytes).
async fn stored_chunk_completed(target: &dyn Target, key: &str, size: u64) -> Result<bool> {
    use crate::format::chunk::{ChunkFooter, FOOTER_LEN};
    if size < FOOTER_LEN {
        return Ok(false);
    }
    let parts: Vec<bytes::Bytes> = target
        .get(key, Some(size - FOOTER_LEN..size))
        .await?
        .try_collect()
        .await?;
    let tail = parts.concat();
    Ok(<&[u8; FOOTER_LEN as usize]>::try_from(tail.as_slice())
        .is_ok_and(|b| ChunkFooter::decode(b).is_completed()))
}

/// Downloads one file and checks it against the manifest (or, when the manifest cannot vouch
/// for it, against its own checksums).
struct RestoreJob {
    target: Arc<dyn Target>,
    dirs: Arc<SourceDirs>,
    entry: Option<FileEntry>,
    trusted: bool,
    warnings: Arc<Mutex<Vec<String>>>,
    progress: Arc<dyn Progress>,
}

impl RestoreJob {
    async fn run(self, item: Item) -> Result<u64> {
        let entry = self.entry.as_ref();
        // The manifest's hash proves a file is what was stored; its own checksum is read only
        // when the manifest cannot vouch for it.
        let own_checksum = !(self.trusted && entry.is_some());
        let dest = self.dirs.path_of_key(&item.as_key);
        let hashes = fetch(
            self.target.as_ref(),
            &item.key,
            Some(&dest),
            own_checksum,
            self.progress.as_ref(),
        )
        .await?;
        let kind = classify(&item.key);
        let small = matches!(kind, Kind::IndexMap | Kind::Checkpoint(_))
            .then(|| std::fs::read(&dest))
            .transpose()
            .map_err(|e| EngineError::io(dest.display(), e))?;
        let matches_manifest =
            entry.is_some_and(|e| e.size == hashes.len && e.md5 == hashes.md5_hex());
        if !matches_manifest {
            if self.trusted && entry.is_some() {
                return Err(EngineError::Corrupt(format!(
                "{} does not match the manifest (size {} / md5 {}): the backup is damaged; run `esbackup verify --read-data`",
                item.key,
                hashes.len,
                hashes.md5_hex()
            )));
            }
            self.warnings.lock().unwrap().push(format!(
                "{} is not described by the manifest; checked by its own checksum",
                item.key
            ));
        }
        if let Some(problem) = own_check(&kind, &hashes, small.as_deref()) {
            return Err(EngineError::Corrupt(format!("{}: {problem}", item.key)));
        }
        self.progress.file_done(&item.as_key, hashes.len);
        Ok(hashes.len)
    }
}
