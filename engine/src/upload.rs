//! [`Upload`]: the body of a `put`, read from a local file (a whole file or a byte range of it,
//! streamed in pieces) or from memory.
//!
//! Every pass over an upload is hashed (MD5) as it streams, so the engine learns the hash of
//! exactly the bytes the store received without reading the file twice. Pieces are read and
//! hashed on the blocking thread pool, never on the async runtime that drives other uploads.
//!
//! A file that shrinks while it is read (a chunk completed and truncated under us) fails the pass
//! with [`std::io::ErrorKind::UnexpectedEof`]; the engine then starts that file again. A file
//! that must end in an MD5 of its preceding bytes (a completed chunk, a PTable) can be checked on
//! the way: a mismatch fails the pass with [`std::io::ErrorKind::InvalidData`] *before* the last
//! piece is handed to the store, so the store never completes a damaged object.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::file_copy;
use crate::hashing::{Md5Lanes, StreamHasher};
#[cfg(doc)]
use crate::target::TargetErrorKind;
use crate::target::{Stored, TargetError};

/// Default piece size when a target has no preference (1 MiB).
pub const DEFAULT_PIECE: usize = 1 << 20;

#[derive(Clone, Debug)]
enum Source {
    /// Opened afresh for every pass.
    Path(PathBuf),
    /// Opened once by the engine (so the bytes stay readable even if the file is deleted).
    Handle {
        path: PathBuf,
        file: Arc<File>,
    },
    Memory(Bytes),
}

/// Called with the size of every piece read, for progress reports.
pub type OnBytes = Arc<dyn Fn(u64) + Send + Sync>;

/// What the last pass over an upload learnt.
#[derive(Clone, Copy, Debug, Default)]
struct Pass {
    /// MD5 of every byte, once the pass read them all.
    md5: Option<[u8; 16]>,
    /// Why the pass could not read the local file, if it could not.
    read_failure: Option<io::ErrorKind>,
}

/// The body of one upload. Cheap to clone; clones share what the last pass learnt.
#[derive(Clone)]
pub struct Upload {
    source: Source,
    /// Offset of the first byte in the file.
    offset: u64,
    len: u64,
    check_trailing_md5: bool,
    last_pass: Arc<Mutex<Pass>>,
    on_bytes: Option<OnBytes>,
    /// Where [`Upload::copy_to_file`] hashes (else on its own thread).
    lanes: Option<Md5Lanes>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("source", &self.source)
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish()
    }
}

impl Upload {
    fn new(source: Source, offset: u64, len: u64) -> Upload {
        Upload {
            source,
            offset,
            len,
            check_trailing_md5: false,
            last_pass: Arc::default(),
            on_bytes: None,
            lanes: None,
        }
    }

    /// The first `len` bytes of the file at `path` (the length the engine saw when it looked).
    pub fn file(path: &Path, len: u64) -> Upload {
        Upload::new(Source::Path(path.to_path_buf()), 0, len)
    }

    /// `len` bytes of the file at `path` from `offset` (a segment of a growing file).
    pub fn file_range(path: &Path, offset: u64, len: u64) -> Upload {
        Upload::new(Source::Path(path.to_path_buf()), offset, len)
    }

    /// The first `len` bytes of an open file (`path` names it in messages).
    pub fn handle(path: &Path, file: Arc<File>, len: u64) -> Upload {
        Upload::new(
            Source::Handle {
                path: path.to_path_buf(),
                file,
            },
            0,
            len,
        )
    }

    pub fn bytes(data: impl Into<Bytes>) -> Upload {
        let data = data.into();
        let len = data.len() as u64;
        Upload::new(Source::Memory(data), 0, len)
    }

    /// Fails every pass whose last 16 bytes are not the MD5 of the bytes before them.
    pub fn check_trailing_md5(mut self) -> Upload {
        self.check_trailing_md5 = true;
        self
    }

    /// Hashes kernel copies ([`Upload::copy_to_file`]) in `lanes`, beside the run's others.
    pub(crate) fn with_lanes(mut self, lanes: &Md5Lanes) -> Upload {
        self.lanes = Some(lanes.clone());
        self
    }

    /// Reports every piece read to `on_bytes`.
    pub fn with_progress(mut self, on_bytes: OnBytes) -> Upload {
        self.on_bytes = Some(on_bytes);
        self
    }

    /// Number of bytes this upload carries.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What the last pass stored, for a target's `put` to return once the store holds it: the
    /// size and MD5 of every byte the pass read, or, when the pass failed to read the body (it
    /// vanished, shrank or failed its trailing MD5), a [`TargetErrorKind::Body`] error; when
    /// no pass read the whole body, a permanent error (the target returned too early).
    pub fn stored(&self, key: &str) -> Result<Stored, TargetError> {
        let pass = *self.last_pass.lock().unwrap();
        match (pass.md5, pass.read_failure) {
            (_, Some(kind)) => Err(TargetError::body(key, io::Error::from(kind))),
            (Some(md5), None) => Ok(Stored {
                size: self.len,
                md5,
                stored_size: self.len,
            }),
            (None, None) => Err(TargetError::permanent(
                "the target returned before it read the whole upload",
            )
            .with_key(key)),
        }
    }

    /// What an error of this upload's last pass (a reader's, or the target's own writing while
    /// it copied) means for `key`: [`TargetErrorKind::Body`] when the pass failed reading the
    /// body, else a permanent error storing it, with `e` as the source either way.
    pub fn failure(&self, key: &str, e: io::Error) -> TargetError {
        if self.last_pass.lock().unwrap().read_failure.is_some() {
            TargetError::body(key, e)
        } else {
            TargetError::permanent("storing the upload")
                .with_key(key)
                .with_source(e)
        }
    }

    /// MD5 of the last pass that streamed every byte, if one did.
    #[cfg(test)]
    fn md5(&self) -> Option<[u8; 16]> {
        self.last_pass.lock().unwrap().md5
    }

    /// Set when the last pass failed to read the local file.
    #[cfg(test)]
    fn read_failure(&self) -> Option<io::ErrorKind> {
        self.last_pass.lock().unwrap().read_failure
    }

    /// Reads the whole body into memory. Only for bodies known to be small.
    pub async fn to_bytes(&self) -> io::Result<Bytes> {
        let pieces: Vec<Bytes> = self
            .stream(DEFAULT_PIECE)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<io::Result<_>>()?;
        Ok(pieces.concat().into())
    }

    /// A pass over the body that writes it to `out` on the calling thread (for targets on a
    /// local file system; call it from a blocking thread): read, hashed and written in 1 MiB
    /// pieces with one buffer, with the same checks and records as a [`Upload::stream`] pass.
    /// On an error nothing is recorded and `out` holds a partial copy.
    pub fn copy_to(&self, out: &mut impl std::io::Write) -> io::Result<()> {
        *self.last_pass.lock().unwrap() = Pass::default();
        let fail = |e: io::Error| self.failed(e);
        let mut hasher = StreamHasher::new(self.len, self.check_trailing_md5);
        match &self.source {
            Source::Memory(data) => {
                hasher.update(data);
                out.write_all(data)?;
            }
            Source::Path(path) | Source::Handle { path, .. } => {
                let file = match &self.source {
                    Source::Handle { file, .. } => file.clone(),
                    _ => Arc::new(File::open(path).map_err(fail)?),
                };
                let mut buf = vec![0u8; DEFAULT_PIECE.min(self.len as usize).max(1)];
                let mut done = 0u64;
                while done < self.len {
                    let want = buf.len().min((self.len - done) as usize);
                    let n = file
                        .read_at(&mut buf[..want], self.offset + done)
                        .map_err(fail)?;
                    if n == 0 {
                        return Err(fail(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("{} shrank while it was being read", path.display()),
                        )));
                    }
                    hasher.update(&buf[..n]);
                    out.write_all(&buf[..n])?;
                    if let Some(report) = &self.on_bytes {
                        report(n as u64);
                    }
                    done += n as u64;
                }
            }
        }
        self.record(hasher)
    }

    /// A pass that copies the body into the empty file `out` (opened for reading and writing;
    /// call it from a blocking thread): for a local file, in the kernel (`copy_file_range`,
    /// no bytes through user space), each step's writeback to disk started at once and what it
    /// put in `out` read back and hashed (in the run's MD5 lanes, when given) while the next
    /// step copies, so the hash and the trailing-MD5 check are of the stored bytes themselves.
    /// Elsewhere, or
    /// where the kernel cannot copy between the two files, it is [`Upload::copy_to`]. On an
    /// error nothing is recorded.
    pub fn copy_to_file(&self, out: &File) -> io::Result<()> {
        *self.last_pass.lock().unwrap() = Pass::default();
        let (path, file) = match &self.source {
            Source::Memory(_) => return self.copy_to(&mut file_copy::EarlyWriteback::new(out)),
            Source::Handle { path, file } => (path, file.clone()),
            Source::Path(path) => (
                path,
                Arc::new(File::open(path).map_err(|e| self.failed(e))?),
            ),
        };
        let mut hasher =
            StreamHasher::shared(self.lanes.as_ref(), self.len, self.check_trailing_md5);
        let copied =
            file_copy::copy_and_read_back(&file, self.offset, out, 0, self.len, |piece| {
                if let Some(report) = &self.on_bytes {
                    report(piece.len() as u64);
                }
                hasher.update_pieces([piece]);
            })?;
        match copied {
            None => self.copy_to(&mut file_copy::EarlyWriteback::new(out)),
            Some(n) if n == self.len => self.record(hasher),
            Some(_) => Err(self.failed(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was being read", path.display()),
            ))),
        }
    }

    /// Records a finished pass's MD5, after its trailing-MD5 check when one is asked for.
    fn record(&self, hasher: StreamHasher) -> io::Result<()> {
        let hashes = hasher.finish()?;
        if self.check_trailing_md5 && hashes.trailing_md5_ok != Some(true) {
            return Err(self.failed(io::Error::new(
                io::ErrorKind::InvalidData,
                "the upload fails its own MD5 (its last 16 bytes)",
            )));
        }
        self.last_pass.lock().unwrap().md5 = Some(hashes.md5);
        Ok(())
    }

    /// Notes that the pass failed because of the local file, and returns the error.
    fn failed(&self, e: io::Error) -> io::Error {
        self.last_pass.lock().unwrap().read_failure = Some(e.kind());
        e
    }

    /// A fresh pass over the body from its first byte, in pieces of at most `piece` bytes. The
    /// hash of a pass is recorded when its last byte has been yielded.
    pub fn stream(&self, piece: usize) -> BoxStream<'static, io::Result<Bytes>> {
        *self.last_pass.lock().unwrap() = Pass::default();
        let pass = FilePass {
            reader: match &self.source {
                Source::Path(p) => Reader::Closed(p.clone()),
                Source::Handle { path, file } => Reader::Open(path.clone(), file.clone()),
                Source::Memory(data) => Reader::Memory(data.clone()),
            },
            at: self.offset,
            left: self.len,
            piece: piece.max(1) as u64,
            hasher: Some(StreamHasher::new(self.len, self.check_trailing_md5)),
            check_trailing_md5: self.check_trailing_md5,
            record: self.last_pass.clone(),
            on_bytes: self.on_bytes.clone(),
        };
        if self.len == 0 {
            let mut pass = pass;
            pass.finish_empty();
            return stream::empty().boxed();
        }
        stream::try_unfold(pass, FilePass::next).boxed()
    }
}

enum Reader {
    Closed(PathBuf),
    Open(PathBuf, Arc<File>),
    Memory(Bytes),
}

/// One pass: reads pieces (on the blocking pool for files) and hashes them.
struct FilePass {
    reader: Reader,
    at: u64,
    left: u64,
    piece: u64,
    hasher: Option<StreamHasher>,
    check_trailing_md5: bool,
    record: Arc<Mutex<Pass>>,
    on_bytes: Option<OnBytes>,
}

impl FilePass {
    fn finish_empty(&mut self) {
        if let Some(h) = self.hasher.take() {
            self.record.lock().unwrap().md5 = h.finish().ok().map(|h| h.md5);
        }
    }

    fn fail(&self, e: io::Error) -> io::Error {
        self.record.lock().unwrap().read_failure = Some(e.kind());
        e
    }

    async fn next(mut self) -> io::Result<Option<(Bytes, FilePass)>> {
        if self.left == 0 {
            return Ok(None);
        }
        let want = self.piece.min(self.left);
        let mut hasher = self.hasher.take().expect("a hasher until the last piece");
        if let Reader::Memory(data) = &self.reader {
            let start = self.at as usize;
            let bytes = data.slice(start..start + want as usize);
            hasher.update(&bytes);
            return self.advance(bytes, hasher, want).map(Some);
        }
        if let Reader::Closed(path) = &self.reader {
            match File::open(path) {
                Ok(f) => self.reader = Reader::Open(path.clone(), Arc::new(f)),
                Err(e) => return Err(self.fail(e)),
            }
        }
        let Reader::Open(path, file) = &self.reader else {
            unreachable!("opened above")
        };
        let (path, file, at, piece) = (path.clone(), file.clone(), self.at, self.piece);
        let read = tokio::task::spawn_blocking(move || -> io::Result<(Bytes, StreamHasher)> {
            // Full pieces (the parts of a multipart upload) in reused buffers.
            let full = want == piece;
            let mut buf = if full {
                crate::piece_pool::take(want as usize)
            } else {
                vec![0; want as usize]
            };
            let mut filled = 0usize;
            while filled < buf.len() {
                let n = file.read_at(&mut buf[filled..], at + filled as u64)?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} shrank while it was being read", path.display()),
                    ));
                }
                filled += n;
            }
            hasher.update(&buf);
            let bytes = if full {
                crate::piece_pool::freeze(buf)
            } else {
                buf.into()
            };
            Ok((bytes, hasher))
        })
        .await
        .map_err(|e| io::Error::other(format!("reading task failed: {e}")))?;
        match read {
            Ok((bytes, hasher)) => self.advance(bytes, hasher, want).map(Some),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Accounts for a piece read; on the last piece records the hash (after checking the
    /// trailing MD5 if asked, failing the pass instead of yielding a damaged last piece).
    fn advance(
        mut self,
        bytes: Bytes,
        hasher: StreamHasher,
        want: u64,
    ) -> io::Result<(Bytes, FilePass)> {
        self.at += want;
        self.left -= want;
        if let Some(report) = &self.on_bytes {
            report(want);
        }
        if self.left > 0 {
            self.hasher = Some(hasher);
            return Ok((bytes, self));
        }
        let hashes = hasher.finish()?;
        if self.check_trailing_md5 && hashes.trailing_md5_ok != Some(true) {
            let path = match &self.reader {
                Reader::Open(p, _) | Reader::Closed(p) => p.display().to_string(),
                Reader::Memory(_) => "the upload".into(),
            };
            return Err(self.fail(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{path} fails its own MD5 (its last 16 bytes)"),
            )));
        }
        self.record.lock().unwrap().md5 = Some(hashes.md5);
        Ok((bytes, self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use md5::{Digest, Md5};

    fn file_with_trailing_md5(dir: &Path, body: &[u8]) -> PathBuf {
        let mut data = body.to_vec();
        data.extend_from_slice(&Md5::digest(body));
        let path = dir.join("f");
        std::fs::write(&path, &data).unwrap();
        path
    }

    #[tokio::test]
    async fn a_file_pass_hashes_and_detects_shrinking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 3000]).unwrap();
        let up = Upload::file(&path, 3000);
        let all = up.stream(1024).collect::<Vec<_>>().await;
        assert_eq!(all.len(), 3);
        assert_eq!(up.md5(), Some(Md5::digest([7u8; 3000]).into()));

        let too_long = Upload::file(&path, 4000);
        let res: Vec<_> = too_long.stream(1024).collect().await;
        assert!(res.last().unwrap().is_err());
        assert_eq!(too_long.md5(), None);
        assert_eq!(too_long.read_failure(), Some(io::ErrorKind::UnexpectedEof));
        assert_eq!(up.read_failure(), None);
    }

    #[tokio::test]
    async fn a_range_upload_streams_and_hashes_only_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let up = Upload::file_range(&path, 1000, 5000);
        let got: Vec<Bytes> = up.stream(777).try_collect().await.unwrap();
        assert_eq!(got.concat(), data[1000..6000]);
        assert_eq!(up.md5(), Some(Md5::digest(&data[1000..6000]).into()));
    }

    #[tokio::test]
    async fn a_damaged_trailing_md5_fails_the_pass_before_its_last_piece() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with_trailing_md5(dir.path(), &[5u8; 5000]);
        let good = Upload::file(&path, 5016).check_trailing_md5();
        assert!(good.stream(1000).try_collect::<Vec<_>>().await.is_ok());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let bad = Upload::file(&path, 5016).check_trailing_md5();
        let pieces: Vec<io::Result<Bytes>> = bad.stream(1000).collect().await;
        let ok: usize = pieces.iter().filter(|p| p.is_ok()).count();
        assert_eq!(ok, 5, "every piece but the last is yielded");
        assert_eq!(bad.read_failure(), Some(io::ErrorKind::InvalidData));
        assert_eq!(bad.md5(), None);
    }

    #[test]
    fn a_copy_pass_writes_hashes_and_checks_like_a_stream_pass() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with_trailing_md5(dir.path(), &[9u8; 3_000_000]);
        let up = Upload::file(&path, 3_000_016).check_trailing_md5();
        let mut out = Vec::new();
        up.copy_to(&mut out).unwrap();
        assert_eq!(out, std::fs::read(&path).unwrap());
        assert_eq!(up.md5(), Some(Md5::digest(&out).into()));
        let range = Upload::file_range(&path, 10, 100);
        let mut out = Vec::new();
        range.copy_to(&mut out).unwrap();
        assert_eq!(out.len(), 100);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[5] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let bad = Upload::file(&path, 3_000_016).check_trailing_md5();
        assert!(bad.copy_to(&mut Vec::new()).is_err());
        assert_eq!(bad.read_failure(), Some(io::ErrorKind::InvalidData));
        assert_eq!(bad.md5(), None);
    }

    fn read_write(path: &Path) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap()
    }

    #[test]
    fn a_kernel_copy_stores_hashes_and_checks_the_copied_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with_trailing_md5(dir.path(), &[3u8; 20_000_000]);
        let data = std::fs::read(&path).unwrap();
        let out_path = dir.path().join("out");
        let up = Upload::file(&path, data.len() as u64).check_trailing_md5();
        up.copy_to_file(&read_write(&out_path)).unwrap();
        assert_eq!(std::fs::read(&out_path).unwrap(), data);
        assert_eq!(up.md5(), Some(Md5::digest(&data).into()));

        let range = Upload::file_range(&path, 1000, 9_000_000);
        range.copy_to_file(&read_write(&out_path)).unwrap();
        assert_eq!(std::fs::read(&out_path).unwrap(), data[1000..9_001_000]);
        assert_eq!(
            range.md5(),
            Some(Md5::digest(&data[1000..9_001_000]).into())
        );

        let too_long = Upload::file(&path, data.len() as u64 + 1);
        assert!(too_long.copy_to_file(&read_write(&out_path)).is_err());
        assert_eq!(too_long.read_failure(), Some(io::ErrorKind::UnexpectedEof));
        assert_eq!(too_long.md5(), None);

        let mut bytes = data.clone();
        bytes[12_345_678] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let bad = Upload::file(&path, data.len() as u64).check_trailing_md5();
        assert!(bad.copy_to_file(&read_write(&out_path)).is_err());
        assert_eq!(bad.read_failure(), Some(io::ErrorKind::InvalidData));
        assert_eq!(bad.md5(), None);

        let memory = Upload::bytes(Bytes::from_static(b"in memory"));
        memory.copy_to_file(&read_write(&out_path)).unwrap();
        assert_eq!(std::fs::read(&out_path).unwrap(), b"in memory");
        assert_eq!(memory.md5(), Some(Md5::digest(b"in memory").into()));
    }

    #[tokio::test]
    async fn a_memory_upload_round_trips() {
        let up = Upload::bytes(Bytes::from_static(b"hello world"));
        assert_eq!(&up.to_bytes().await.unwrap()[..], b"hello world");
        assert_eq!(up.md5(), Some(Md5::digest(b"hello world").into()));
    }

    /// Reading and hashing run on the blocking pool: on a single-threaded runtime, an upload
    /// streams every piece while another file's hash is still under way. The hash is held at
    /// its first step (opening a FIFO waits for a writer) until the upload has ended.
    #[tokio::test(flavor = "current_thread")]
    async fn an_upload_makes_progress_while_another_file_is_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo");
        let small = dir.path().join("small");
        std::fs::write(&small, vec![2u8; 8 << 20]).unwrap();
        let hash = tokio::spawn({
            let fifo = fifo.clone();
            async move { crate::hashing::md5_of_range(&fifo, None, 0, 16).await }
        });
        // Were the hash on this thread, it would hold the runtime: a watchdog then releases it,
        // so that the test fails below instead of hanging.
        let watchdog = fifo.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(120));
            let _ = std::fs::OpenOptions::new().write(true).open(watchdog);
        });
        let up = Upload::file(&small, 8 << 20);
        let mut pieces = up.stream(64 * 1024);
        let mut streamed = 0;
        while let Some(p) = pieces.next().await {
            p.unwrap();
            streamed += 1;
        }
        assert_eq!(streamed, 128);
        assert!(!hash.is_finished(), "the hash ran before the upload");
        let writer =
            tokio::task::spawn_blocking(move || std::fs::OpenOptions::new().write(true).open(fifo));
        writer.await.unwrap().unwrap();
        // A FIFO cannot be read at an offset: the hash, once released, fails (and returns).
        assert!(hash.await.unwrap().is_err());
    }
}
