//! [`Upload`]: the body of a `put`, read from a local file (streamed in pieces) or from memory.
//!
//! Every pass over an upload is hashed (MD5) as it streams, so the engine learns the hash of
//! exactly the bytes the store received without reading the file twice. A file that shrinks
//! while it is read (a chunk completed and truncated under us) fails the pass with
//! [`std::io::ErrorKind::UnexpectedEof`]; the engine then starts that file again.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use tokio::io::AsyncReadExt;

/// Default piece size when a target has no preference (1 MiB).
pub const DEFAULT_PIECE: usize = 1 << 20;

#[derive(Clone, Debug)]
enum Source {
    File(PathBuf),
    Memory(Bytes),
}

/// Called with the size of every piece read, for progress reports.
pub type OnBytes = Arc<dyn Fn(u64) + Send + Sync>;

/// The body of one upload. Cheap to clone; clones share the hash of the last complete pass.
#[derive(Clone)]
pub struct Upload {
    source: Source,
    len: u64,
    last_pass: Arc<Mutex<Option<[u8; 16]>>>,
    /// Why the last pass could not read the local file, if it could not.
    read_failure: Arc<Mutex<Option<io::ErrorKind>>>,
    on_bytes: Option<OnBytes>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("source", &self.source)
            .field("len", &self.len)
            .finish()
    }
}

impl Upload {
    /// The first `len` bytes of the file at `path` (the length the engine saw when it opened it).
    pub fn file(path: &Path, len: u64) -> Upload {
        Upload {
            source: Source::File(path.to_path_buf()),
            len,
            last_pass: Arc::default(),
            read_failure: Arc::default(),
            on_bytes: None,
        }
    }

    /// Reports every piece read from the file to `on_bytes`.
    pub fn with_progress(mut self, on_bytes: OnBytes) -> Upload {
        self.on_bytes = Some(on_bytes);
        self
    }

    pub fn bytes(data: impl Into<Bytes>) -> Upload {
        let data = data.into();
        Upload {
            len: data.len() as u64,
            source: Source::Memory(data),
            last_pass: Arc::default(),
            read_failure: Arc::default(),
            on_bytes: None,
        }
    }

    /// Number of bytes this upload carries.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The local file behind this upload, if any (for targets that copy files natively; they
    /// must still call [`Upload::stream`] or the engine cannot learn what was stored).
    pub fn path(&self) -> Option<&Path> {
        match &self.source {
            Source::File(p) => Some(p),
            Source::Memory(_) => None,
        }
    }

    /// MD5 of the last pass that streamed every byte, if one did.
    pub fn md5(&self) -> Option<[u8; 16]> {
        *self.last_pass.lock().unwrap()
    }

    /// Set when the last pass failed to read the local file (it vanished or shrank): the
    /// failure of the upload is then the file's, not the store's.
    pub fn read_failure(&self) -> Option<io::ErrorKind> {
        *self.read_failure.lock().unwrap()
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

    /// A fresh pass over the body from offset 0, in pieces of at most `piece` bytes. The hash of
    /// a pass is recorded when its last byte has been yielded.
    pub fn stream(&self, piece: usize) -> BoxStream<'static, io::Result<Bytes>> {
        let piece = piece.max(1);
        let recorder = self.last_pass.clone();
        let len = self.len;
        match &self.source {
            Source::Memory(data) => {
                let data = data.clone();
                *recorder.lock().unwrap() = Some(Md5::digest(&data).into());
                let pieces: Vec<io::Result<Bytes>> = (0..data.len())
                    .step_by(piece)
                    .map(|at| Ok(data.slice(at..(at + piece).min(data.len()))))
                    .collect();
                stream::iter(pieces).boxed()
            }
            Source::File(path) => {
                let path = path.clone();
                *self.read_failure.lock().unwrap() = None;
                let failure = self.read_failure.clone();
                let state = FilePass {
                    path,
                    file: None,
                    left: len,
                    hasher: Some(Md5::new()),
                    recorder,
                    piece,
                    on_bytes: self.on_bytes.clone(),
                };
                stream::try_unfold(state, FilePass::next)
                    .inspect_err(move |e| *failure.lock().unwrap() = Some(e.kind()))
                    .boxed()
            }
        }
    }
}

struct FilePass {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    left: u64,
    hasher: Option<Md5>,
    recorder: Arc<Mutex<Option<[u8; 16]>>>,
    piece: usize,
    on_bytes: Option<OnBytes>,
}

impl FilePass {
    async fn next(mut self) -> io::Result<Option<(Bytes, FilePass)>> {
        if self.left == 0 {
            if let Some(h) = self.hasher.take() {
                *self.recorder.lock().unwrap() = Some(h.finalize().into());
            }
            return Ok(None);
        }
        if self.file.is_none() {
            self.file = Some(tokio::fs::File::open(&self.path).await?);
        }
        let want = (self.piece as u64).min(self.left) as usize;
        let mut buf = BytesMut::zeroed(want);
        let mut filled = 0;
        let file = self.file.as_mut().expect("opened above");
        while filled < want {
            let n = file.read(&mut buf[filled..]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} shrank while it was being read", self.path.display()),
                ));
            }
            filled += n;
        }
        self.left -= want as u64;
        if let Some(report) = &self.on_bytes {
            report(want as u64);
        }
        let bytes = buf.freeze();
        if let Some(h) = self.hasher.as_mut() {
            h.update(&bytes);
        }
        if self.left == 0 {
            if let Some(h) = self.hasher.take() {
                *self.recorder.lock().unwrap() = Some(h.finalize().into());
            }
        }
        Ok(Some((bytes, self)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_pass_hashes_and_detects_shrinking() {
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
    async fn memory_upload_round_trips() {
        let up = Upload::bytes(Bytes::from_static(b"hello world"));
        assert_eq!(&up.to_bytes().await.unwrap()[..], b"hello world");
        assert_eq!(up.md5(), Some(Md5::digest(b"hello world").into()));
    }
}
