//! Reading stored objects back (restore and `verify --read-data`): each object is streamed once,
//! hashed — and written, for a restore — on the blocking thread pool, and a stream that breaks
//! midway is resumed from where it stopped with a ranged read.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::error::{EngineError, Result};
use crate::hashing::{Hashes, StreamHasher};
use crate::progress::Progress;
use crate::target::{Target, TargetError};

/// Times a broken download stream is resumed before the download fails. (Requests themselves
/// are retried by the backend; this covers a body that breaks after it started.)
pub(crate) const RESUMES: u32 = 3;

/// Bytes gathered before they are written and hashed in one go.
const BATCH: usize = 1 << 20;

/// Where downloaded bytes go: hashed, and written at an offset of a file when there is one.
pub(crate) struct Sink {
    file: Option<Arc<File>>,
    at: u64,
    hasher: Option<StreamHasher>,
    pending: BytesMut,
    label: String,
}

impl Sink {
    /// Hashes bytes (checking a trailing MD5 when `trailing`) and writes them to `file` from
    /// offset `at`, if given. `label` names the destination in errors.
    pub fn new(file: Option<Arc<File>>, at: u64, trailing: bool, label: String) -> Sink {
        Sink {
            file,
            at,
            hasher: Some(StreamHasher::new(trailing)),
            pending: BytesMut::new(),
            label,
        }
    }

    pub async fn push(&mut self, piece: Bytes) -> Result<()> {
        self.pending.extend_from_slice(&piece);
        if self.pending.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let data = self.pending.split().freeze();
        let mut hasher = self.hasher.take().expect("hasher until finished");
        let file = self.file.clone();
        let at = self.at;
        let (hasher, written) = tokio::task::spawn_blocking(move || {
            hasher.update(&data);
            let written = match file {
                Some(f) => f.write_all_at(&data, at),
                None => Ok(()),
            };
            (hasher, written.map(|_| data.len() as u64))
        })
        .await
        .map_err(|e| EngineError::io(&self.label, std::io::Error::other(e.to_string())))?;
        self.hasher = Some(hasher);
        self.at += written.map_err(|e| EngineError::io(&self.label, e))?;
        Ok(())
    }

    /// Flushes what is left and returns the hashes of every byte pushed.
    pub async fn finish(mut self) -> Result<Hashes> {
        self.flush().await?;
        Ok(self.hasher.take().expect("hasher until finished").finish())
    }
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
    let mut done = 0u64;
    let mut resumes = 0;
    while done < len {
        let mut stream = match target.get(key, Some(done..len)).await {
            Ok(s) => s,
            Err(TargetError::NotFound(_)) => {
                return Err(EngineError::damaged(format!(
                    "{key} is missing from {}: the backup is damaged (was it changed by hand, or forgotten meanwhile?)",
                    target.describe()
                )))
            }
            Err(e) => return Err(EngineError::storage(key, e)),
        };
        let mut broke = None;
        while let Some(piece) = stream.next().await {
            match piece {
                Ok(bytes) => {
                    let n = bytes.len() as u64;
                    if done + n > len {
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
            None if done < len => {
                return Err(EngineError::damaged(format!(
                    "{key} ended after {done} of the {len} bytes recorded: the backup is damaged"
                )))
            }
            None => {}
            Some(e) if resumes < RESUMES => {
                resumes += 1;
                tracing::warn!("{key}: the download broke at byte {done} ({e}); resuming");
            }
            Some(e) => return Err(EngineError::storage(key, e)),
        }
    }
    Ok(())
}
