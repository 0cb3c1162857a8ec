//! Carries out a [`RestorePlan`]: data files downloaded under temporary names (each byte checked
//! against the point's MD5s), then `writer.chk`, the data files moved into place, the other
//! checkpoints and `truncate.chk`. On failure everything written is removed again.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::{stream, StreamExt, TryStreamExt};

use super::plan::{ItemSource, RestoreItem, RestorePlan};
use super::RestoreOptions;
use crate::download::{download_to_file, Sink, RANGE};
use crate::error::{EngineError, Result};
use crate::format::checkpoint;
use crate::hashing::{Md5Lanes, StreamHasher};
use crate::progress::Progress;
use crate::source::SourceDirs;
use crate::tally::Tally;
use crate::target::Target;

/// Suffix of files being restored (the server ignores them).
pub(crate) use crate::layout::PARTIAL_SUFFIX;

/// Files and folders a restore created, removed again if it fails.
#[derive(Default)]
struct Created(Mutex<Vec<PathBuf>>);

impl Created {
    fn add(&self, path: PathBuf) {
        self.0.lock().unwrap().push(path);
    }

    fn remove_all(&self) {
        let mut paths = std::mem::take(&mut *self.0.lock().unwrap());
        // Deepest first, so folders are empty when their turn comes.
        paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in paths {
            let _ = if p.is_dir() {
                std::fs::remove_dir(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

pub(crate) async fn restore(
    target: &Arc<dyn Target>,
    dest: &SourceDirs,
    plan: &RestorePlan,
    opts: &RestoreOptions,
) -> Result<Tally> {
    let created = Created::default();
    let result = run(target, dest, plan, opts, &created).await;
    if result.is_err() {
        created.remove_all();
    }
    result
}

async fn run(
    target: &Arc<dyn Target>,
    dest: &SourceDirs,
    plan: &RestorePlan,
    opts: &RestoreOptions,
    created: &Created,
) -> Result<Tally> {
    let progress = &opts.progress;
    // Ranges only when there are fewer large files than transfer slots (else one stream per
    // file already keeps them all busy, and ranges cost a read-back).
    let large = plan.data.iter().filter(|i| i.size > RANGE).count();
    let ranged = large < opts.concurrency;
    // This restore's MD5 lanes: its thread stops when the restore ends.
    let lanes = Md5Lanes::new();
    let fetches: Vec<_> = plan
        .data
        .iter()
        .chain(&plan.checkpoints)
        .map(|item| fetch(target, dest, item, progress, created, (ranged, &lanes)))
        .collect();
    let sizes: Vec<u64> = stream::iter(fetches)
        .buffer_unordered(opts.concurrency.max(1))
        .try_collect()
        .await?;
    let mut tally = Tally::default();
    for size in sizes {
        tally.add(size);
    }
    // From here on the folder becomes a database: writer first, so that a half-moved folder
    // has chunks missing below the writer (which the server refuses to open) rather than
    // looking like a young database.
    let (writer, others) = plan
        .checkpoints
        .split_first()
        .ok_or_else(|| EngineError::damaged("the restore point has no checkpoints"))?;
    for item in std::iter::once(writer).chain(&plan.data).chain(others) {
        let path = dest.path_of_key(&item.key);
        std::fs::rename(partial(&path), &path).map_err(|e| EngineError::io(path.display(), e))?;
        created.add(path);
    }
    let truncate = dest.db.join(checkpoint::TRUNCATE);
    checkpoint::write(&truncate, plan.truncate)
        .map_err(|e| EngineError::io(truncate.display(), e))?;
    created.add(truncate);
    for dir in [&dest.db, &dest.index] {
        if let Ok(d) = File::open(dir) {
            d.sync_all()
                .map_err(|e| EngineError::io(dir.display(), e))?;
        }
    }
    Ok(tally)
}

/// Creates the empty temporary file `path` (and the folders it needs), noting each in
/// `created`; opened for reading too, since large objects are hashed by reading back what was
/// written.
fn create_partial(path: &Path, created: &Created) -> Result<File> {
    if let Some(dir) = path.parent() {
        let mut missing = Vec::new();
        let mut d = dir.to_path_buf();
        while !d.exists() {
            missing.push(d.clone());
            if !d.pop() {
                break;
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir.display(), e))?;
        missing.into_iter().for_each(|d| created.add(d));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| EngineError::io(path.display(), e))?;
    created.add(path.to_path_buf());
    Ok(file)
}

fn partial(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(PARTIAL_SUFFIX);
    path.with_file_name(name)
}

/// Downloads one file to its temporary name; returns its size.
async fn fetch(
    target: &Arc<dyn Target>,
    dest: &SourceDirs,
    item: &RestoreItem,
    progress: &Arc<dyn Progress>,
    created: &Created,
    (ranged, lanes): (bool, &Md5Lanes),
) -> Result<u64> {
    let path = partial(&dest.path_of_key(&item.key));
    let file = create_partial(&path, created)?;
    let file = Arc::new(file);
    let label = path.display().to_string();
    match &item.source {
        ItemSource::Inline(data) => {
            let hasher = StreamHasher::shared(Some(lanes), data.len() as u64, false);
            let mut sink = Sink::new(Some(file.clone()), 0, hasher, label);
            sink.push(data.clone()).await?;
            sink.finish().await?;
        }
        ItemSource::Object { key, md5 } => {
            let got = download_to_file(
                target.clone(),
                key,
                item.size,
                file.clone(),
                0,
                &label,
                progress.clone(),
                ranged,
                lanes,
            )
            .await?;
            check(key, md5, &hex::encode(got))?;
        }
        ItemSource::Segments { segments, data_end } => {
            for s in segments {
                let got = download_to_file(
                    target.clone(),
                    &s.key,
                    s.len,
                    file.clone(),
                    s.at,
                    &label,
                    progress.clone(),
                    ranged,
                    lanes,
                )
                .await?;
                check(&s.key, &s.md5, &hex::encode(got))?;
            }
            // Zeros from the end of the data to the file's (preallocated) size.
            file.set_len(*data_end)
                .and_then(|_| file.set_len(item.size))
                .map_err(|e| EngineError::io(path.display(), e))?;
        }
    }
    let f = file.clone();
    tokio::task::spawn_blocking(move || f.sync_all())
        .await
        .map_err(|e| EngineError::io(path.display(), std::io::Error::other(e.to_string())))?
        .map_err(|e| EngineError::io(path.display(), e))?;
    progress.file_done(&item.key, item.size);
    Ok(item.size)
}

fn check(key: &str, expected: &str, found: &str) -> Result<()> {
    if expected == found {
        return Ok(());
    }
    Err(EngineError::damaged(format!(
        "{key} does not match the MD5 the restore point recorded ({found} instead of {expected}): the backup is damaged; run `esbackup verify --read-data`"
    )))
}
