//! Reading stored objects back (restore and `verify --read-data`): each object is streamed once,
//! hashed — and written, for a restore — on the blocking thread pool, and a stream that breaks
//! midway is resumed from where it stopped with a ranged read.

use std::fs::File;
use std::io::ErrorKind;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use crate::error::{EngineError, Result};
use crate::hashing::{Hashes, Md5Lanes, StreamHasher};
use crate::progress::Progress;
use crate::target::Target;

/// Times a broken download stream is resumed before the download fails. (Requests themselves
/// are retried by the backend; this covers a body that breaks after it started.)
pub(crate) const RESUMES: u32 = 3;

/// Bytes gathered before they are written and hashed in one go.
const BATCH: usize = 1 << 20;

/// What a batch's blocking task hands back: the hasher, and whether the write succeeded.
type Settled = (StreamHasher, std::io::Result<()>);

/// Where downloaded bytes go: hashed (unless only written), and written at an offset of a file
/// when there is one. Pieces are gathered without copying into batches of [`BATCH`] bytes; each
/// batch is hashed and written on the blocking pool while the next one arrives, so receiving,
/// hashing and writing overlap.
pub(crate) struct Sink {
    file: Option<Arc<File>>,
    /// Offset of the next batch in the file.
    at: u64,
    /// Here between batches; with the batch's task while one is in flight.
    hasher: Option<StreamHasher>,
    hashing: bool,
    pending: Vec<Bytes>,
    pending_len: usize,
    in_flight: Option<tokio::task::JoinHandle<Settled>>,
    label: String,
}

impl Sink {
    /// Hashes bytes with `hasher` and writes them to `file` from offset `at`, if given.
    /// `label` names the destination in errors.
    pub fn new(file: Option<Arc<File>>, at: u64, hasher: StreamHasher, label: String) -> Sink {
        Sink::with(file, at, hasher, true, label)
    }

    /// Writes bytes to `file` from offset `at` without hashing them.
    fn writer(file: Arc<File>, at: u64, label: String) -> Sink {
        // Never fed: a stream registered with the lanes would make it wait for bytes
        // that never come.
        Sink::with(Some(file), at, StreamHasher::new(0, false), false, label)
    }

    fn with(
        file: Option<Arc<File>>,
        at: u64,
        hasher: StreamHasher,
        hashing: bool,
        label: String,
    ) -> Sink {
        Sink {
            file,
            at,
            hasher: Some(hasher),
            hashing,
            pending: Vec::new(),
            pending_len: 0,
            in_flight: None,
            label,
        }
    }

    pub async fn push(&mut self, piece: Bytes) -> Result<()> {
        self.pending_len += piece.len();
        self.pending.push(piece);
        if self.pending_len >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Hands the pending pieces to a blocking task, once the previous batch is done.
    async fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.settle().await?;
        let batch = std::mem::take(&mut self.pending);
        let mut hasher = self.hasher.take().expect("the hasher is back once settled");
        let (file, at, hashing) = (self.file.clone(), self.at, self.hashing);
        self.at += std::mem::take(&mut self.pending_len) as u64;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            let written =
                hash_and_write(&batch, hashing.then_some(&mut hasher), file.as_deref(), at);
            (hasher, written)
        }));
        Ok(())
    }

    /// Waits for the batch in flight, if any, and takes its hasher back.
    async fn settle(&mut self) -> Result<()> {
        let Some(task) = self.in_flight.take() else {
            return Ok(());
        };
        let (hasher, written) = task
            .await
            .map_err(|e| EngineError::io(&self.label, std::io::Error::other(e.to_string())))?;
        self.hasher = Some(hasher);
        written.map_err(|e| EngineError::io(&self.label, e))
    }

    /// Flushes what is left and returns the hashes of every byte pushed.
    pub async fn finish(mut self) -> Result<Hashes> {
        self.flush().await?;
        self.settle().await?;
        let hasher = self.hasher.take().expect("settled");
        // Off the runtime: finishing waits for the lanes.
        tokio::task::spawn_blocking(move || hasher.finish())
            .await
            .map_err(|e| EngineError::io(&self.label, std::io::Error::other(e.to_string())))?
            .map_err(|e| EngineError::io(&self.label, e))
    }
}

/// Hands `pieces` to the hasher (when given one) and writes them one after the other to `file`
/// from `at` (when given one); then starts their writeback to disk (see [`crate::file_copy`]).
fn hash_and_write(
    pieces: &[Bytes],
    hasher: Option<&mut StreamHasher>,
    file: Option<&File>,
    at: u64,
) -> std::io::Result<()> {
    if let Some(h) = hasher {
        h.update_pieces(pieces.iter().cloned());
    }
    let Some(f) = file else { return Ok(()) };
    let mut pos = at;
    for piece in pieces {
        f.write_all_at(piece, pos)?;
        pos += piece.len() as u64;
    }
    crate::file_copy::start_writeback(f, at, pos - at);
    Ok(())
}

/// The error for an object the restore point names that the location does not hold.
fn missing(key: &str, location: &str) -> EngineError {
    EngineError::damaged(format!(
        "{key} is missing from {location}: the backup is damaged (was it changed by hand, or forgotten meanwhile?)"
    ))
}

/// Streams the `len` bytes of `key` into `sink`, resuming a broken stream up to [`RESUMES`]
/// times. A missing object is reported as damage to the backup.
pub(crate) async fn download(
    target: &dyn Target,
    key: &str,
    len: u64,
    sink: &mut Sink,
    progress: &dyn Progress,
) -> Result<()> {
    download_range(target, key, 0..len, len, sink, progress).await
}

/// Streams bytes `range` of `key` (an object of `len` bytes) into `sink`, resuming a broken
/// stream up to [`RESUMES`] times.
async fn download_range(
    target: &dyn Target,
    key: &str,
    range: Range<u64>,
    len: u64,
    sink: &mut Sink,
    progress: &dyn Progress,
) -> Result<()> {
    let mut done = range.start;
    let end = range.end;
    let mut resumes = 0;
    while done < end {
        let mut stream = match target.get(key, Some(done..end)).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() => return Err(missing(key, &target.describe())),
            Err(e) => return Err(EngineError::storage(key, e)),
        };
        let mut broke = None;
        while let Some(piece) = stream.next().await {
            match piece {
                Ok(bytes) => {
                    let n = bytes.len() as u64;
                    if done + n > end {
                        return Err(EngineError::damaged(format!(
                            "{key} is longer than the {len} bytes recorded: the backup is damaged"
                        )));
                    }
                    done += n;
                    progress.advance(n);
                    sink.push(bytes).await?;
                }
                Err(e) => {
                    broke = Some(e);
                    break;
                }
            }
        }
        match broke {
            None if done < end => {
                return Err(EngineError::damaged(format!(
                    "{key} ended after {done} of the {len} bytes recorded: the backup is damaged"
                )))
            }
            None => {}
            // Damage stays damage on a second read.
            Some(e) if resumes < RESUMES && e.kind() != crate::target::TargetErrorKind::Damaged => {
                resumes += 1;
                tracing::warn!("{key}: the download broke at byte {done} ({e}); resuming");
            }
            Some(e) => return Err(EngineError::storage(key, e)),
        }
    }
    Ok(())
}

/// Objects larger than this are downloaded as ranges of this size, several at a time.
pub(crate) const RANGE: u64 = 32 << 20;
/// Ranges of one object downloaded at once.
pub(crate) const PARALLEL_RANGES: usize = 4;

/// Downloads the `len` bytes of `key` into `file` from offset `at` and returns their MD5. With
/// `ranged`, a large object is fetched as ranges, [`PARALLEL_RANGES`] at a time, each written in
/// place as it arrives; the bytes are hashed in order, range by range, by reading them back
/// (from the page cache) as soon as each range is complete — so memory stays small and every
/// byte written is checked. (Reading back costs CPU: worth it only when one stream per file
/// cannot keep the link busy.)
#[allow(clippy::too_many_arguments)]
pub(crate) async fn download_to_file(
    target: Arc<dyn Target>,
    key: &str,
    len: u64,
    file: Arc<File>,
    at: u64,
    label: &str,
    progress: Arc<dyn Progress>,
    ranged: bool,
    lanes: &Md5Lanes,
) -> Result<[u8; 16]> {
    if let Some(path) = target.local_file(key) {
        let copied = copy_local(
            path,
            key,
            len,
            (file.clone(), at, label),
            target.describe(),
            progress.clone(),
            lanes.clone(),
        )
        .await?;
        if let Some(md5) = copied {
            return Ok(md5);
        }
    }
    if len <= RANGE || !ranged {
        let hasher = StreamHasher::shared(Some(lanes), len, false);
        let mut sink = Sink::new(Some(file), at, hasher, label.to_string());
        download(target.as_ref(), key, len, &mut sink, progress.as_ref()).await?;
        return Ok(sink.finish().await?.md5);
    }
    let ranges: Vec<Range<u64>> = (0..len)
        .step_by(RANGE as usize)
        .map(|s| s..(s + RANGE).min(len))
        .collect();
    let tasks = spawn_ranges(&target, key, len, (&file, at, label), &ranges, &progress);
    let mut hasher = StreamHasher::shared(Some(lanes), len, false);
    let mut pending = tasks.into_iter().zip(ranges);
    while let Some((task, r)) = pending.next() {
        let done = task
            .await
            .map_err(|e| EngineError::io(label, std::io::Error::other(e.to_string())))
            .and_then(|r| r);
        if let Err(e) = done {
            // The other ranges are of no use any more (the caller removes the file).
            pending.for_each(|(t, _)| t.abort());
            return Err(e);
        }
        let f = file.clone();
        let hashed = tokio::task::spawn_blocking(move || -> std::io::Result<StreamHasher> {
            crate::file_copy::read_back(&f, at + r.start, r.end - r.start, |piece| {
                hasher.update_pieces([piece])
            })?;
            Ok(hasher)
        })
        .await
        .map_err(|e| EngineError::io(label, std::io::Error::other(e.to_string())))?;
        hasher = hashed.map_err(|e| EngineError::io(label, e))?;
    }
    // Off the runtime: finishing waits for the lanes.
    tokio::task::spawn_blocking(move || hasher.finish())
        .await
        .map_err(|e| EngineError::io(label, std::io::Error::other(e.to_string())))?
        .map(|h| h.md5)
        .map_err(|e| EngineError::io(label, e))
}

/// Starts the download of every range of `key` into `file` (from `at`), each written in place
/// as it arrives, at most [`PARALLEL_RANGES`] at a time.
fn spawn_ranges(
    target: &Arc<dyn Target>,
    key: &str,
    len: u64,
    (file, at, label): (&Arc<File>, u64, &str),
    ranges: &[Range<u64>],
    progress: &Arc<dyn Progress>,
) -> Vec<tokio::task::JoinHandle<Result<()>>> {
    let slots = Arc::new(tokio::sync::Semaphore::new(PARALLEL_RANGES));
    ranges
        .iter()
        .cloned()
        .map(|r| {
            let (target, file, slots) = (target.clone(), file.clone(), slots.clone());
            let (key, label, progress) = (key.to_string(), label.to_string(), progress.clone());
            tokio::spawn(async move {
                let _slot = slots
                    .acquire_owned()
                    .await
                    .expect("the semaphore stays open");
                let mut sink = Sink::writer(file, at + r.start, label);
                download_range(target.as_ref(), &key, r, len, &mut sink, progress.as_ref()).await?;
                sink.finish().await.map(|_| ())
            })
        })
        .collect()
}

/// Copies the stored file `path` (object `key`, of `len` bytes) to `at` in `file` in the
/// kernel, reading back and hashing what landed there step by step. `None` when the kernel
/// cannot copy between the two (nothing was copied).
async fn copy_local(
    path: std::path::PathBuf,
    key: &str,
    len: u64,
    (file, at, label): (Arc<File>, u64, &str),
    location: String,
    progress: Arc<dyn Progress>,
    lanes: Md5Lanes,
) -> Result<Option<[u8; 16]>> {
    let (key, label) = (key.to_string(), label.to_string());
    let task_label = label.clone();
    tokio::task::spawn_blocking(move || {
        let label = task_label;
        let from = match File::open(&path) {
            Ok(f) => f,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Err(missing(&key, &location))
            }
            Err(e) => return Err(EngineError::io(path.display(), e)),
        };
        let mut hasher = StreamHasher::shared(Some(&lanes), len, false);
        let copied = crate::file_copy::copy_and_read_back(&from, 0, &file, at, len, |piece| {
            progress.advance(piece.len() as u64);
            hasher.update_pieces([piece]);
        });
        let copied = match copied {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(EngineError::io(
                    format!("copying {} to {label}", path.display()),
                    e,
                ))
            }
        };
        if copied < len {
            return Err(EngineError::damaged(format!(
                "{key} ended after {copied} of the {len} bytes recorded: the backup is damaged"
            )));
        }
        let hashes = hasher.finish().map_err(|e| EngineError::io(&label, e))?;
        Ok(Some(hashes.md5))
    })
    .await
    .map_err(|e| EngineError::io(&label, std::io::Error::other(e.to_string())))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use crate::testing::{Intercept, MemoryTarget};
    use futures::StreamExt;
    use md5::Digest as _;

    /// Pieces of any size, over several batches (one in flight while the next gathers), land in
    /// order at the sink's offset and are hashed in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sink_writes_and_hashes_pieces_in_order_across_batches() {
        let data: Vec<u8> = (0..(3 * BATCH + 4321))
            .map(|i| (i * 13 % 251) as u8)
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = Arc::new(std::fs::File::create(&path).unwrap());
        let lanes = Md5Lanes::new();
        let hasher = StreamHasher::shared(Some(&lanes), data.len() as u64, false);
        let mut sink = Sink::new(Some(file), 10, hasher, "f".into());
        let mut at = 0;
        for (i, size) in [1usize, 70_000, 999, BATCH, 3, 65_536]
            .iter()
            .cycle()
            .enumerate()
        {
            if at >= data.len() {
                break;
            }
            let end = (at + size + i % 7).min(data.len());
            sink.push(Bytes::copy_from_slice(&data[at..end]))
                .await
                .unwrap();
            at = end;
        }
        let hashes = sink.finish().await.unwrap();
        assert_eq!(hashes.md5, <[u8; 16]>::from(md5::Md5::digest(&data)));
        let written = std::fs::read(&path).unwrap();
        assert_eq!(&written[..10], &[0u8; 10]);
        assert_eq!(&written[10..], &data[..]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_object_comes_down_in_ranges_written_in_place_and_hashed_in_order() {
        let data: Vec<u8> = (0..(RANGE * 3 + 12_345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let store = MemoryTarget::new();
        store.insert("big", data.clone());
        // The first stream of every range breaks after a little data: each is resumed.
        let target: Arc<dyn Target> =
            Arc::new(Intercept::before(store, |_| {}).map_streams(Arc::new(
                |_key: &str, range: Option<Range<u64>>, stream: crate::ByteStream| {
                    let first = range.is_some_and(|r| r.start % RANGE == 0);
                    if !first {
                        return stream;
                    }
                    stream
                        .flat_map(|piece| {
                            let piece = piece.unwrap();
                            let head = piece.slice(..piece.len().min(4096));
                            futures::stream::iter(vec![
                                Ok(head),
                                Err(crate::TargetError::transient("reset")),
                            ])
                        })
                        .take(2)
                        .boxed()
                },
            )));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap(),
        );
        let md5 = download_to_file(
            target,
            "big",
            data.len() as u64,
            file,
            100,
            "f",
            Arc::new(NoProgress),
            true,
            &Md5Lanes::new(),
        )
        .await
        .unwrap();
        assert_eq!(md5, <[u8; 16]>::from(md5::Md5::digest(&data)));
        let written = std::fs::read(&path).unwrap();
        assert_eq!(&written[100..], &data[..]);
    }
}
