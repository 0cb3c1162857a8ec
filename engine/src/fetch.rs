//! Reading stored files back: streamed into a local file (restore) or only hashed (verify), and
//! the checks a file can pass on its own (chunk footer MD5, PTable MD5, indexmap MD5).

use std::path::{Path, PathBuf};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::error::{EngineError, Result};
use crate::format::{checkpoint, indexmap::IndexMap};
use crate::hashing::{Hashes, StreamHasher};
use crate::layout::Kind;
use crate::progress::Progress;
use crate::target::Target;

/// Attempts at one download: a transient error in the middle of a stream starts it again.
const ATTEMPTS: u32 = 5;

/// Streams `key` through a hasher, into `dest` when given (via a temp file renamed into place).
/// `trailing`: also check a trailing MD5 (chunks, PTables) for [`own_check`].
pub async fn fetch(
    target: &dyn Target,
    key: &str,
    dest: Option<&Path>,
    trailing: bool,
    progress: &dyn Progress,
) -> Result<Hashes> {
    let mut attempt = 1;
    loop {
        match fetch_once(target, key, dest, trailing, progress).await {
            Err(EngineError::Storage(e)) if e.is_transient() && attempt < ATTEMPTS => {
                tracing::warn!("{key}: {e}; downloading it again");
                tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn fetch_once(
    target: &dyn Target,
    key: &str,
    dest: Option<&Path>,
    trailing: bool,
    progress: &dyn Progress,
) -> Result<Hashes> {
    let mut stream = target.get(key, None).await?;
    let mut hasher = StreamHasher::new(trailing);
    let tmp: Option<PathBuf> = dest.map(|d| {
        let mut name = d.file_name().unwrap_or_default().to_os_string();
        name.push(".esbackup-partial");
        d.with_file_name(name)
    });
    let mut file = match &tmp {
        Some(t) => {
            if let Some(dir) = t.parent() {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| EngineError::io(dir.display(), e))?;
            }
            Some(
                tokio::fs::File::create(t)
                    .await
                    .map_err(|e| EngineError::io(t.display(), e))?,
            )
        }
        None => None,
    };
    while let Some(piece) = stream.next().await {
        let piece = piece?;
        progress.advance(piece.len() as u64);
        hasher.update(&piece);
        if let (Some(f), Some(t)) = (file.as_mut(), &tmp) {
            f.write_all(&piece)
                .await
                .map_err(|e| EngineError::io(t.display(), e))?;
        }
    }
    if let (Some(mut f), Some(t), Some(d)) = (file, tmp, dest) {
        f.flush()
            .await
            .map_err(|e| EngineError::io(t.display(), e))?;
        f.sync_all()
            .await
            .map_err(|e| EngineError::io(t.display(), e))?;
        tokio::fs::rename(&t, d)
            .await
            .map_err(|e| EngineError::io(d.display(), e))?;
    }
    Ok(hasher.finish())
}

/// What is wrong with a stored file judged by its own content, if anything. `data` is needed
/// only for small files checked by parsing (indexmap, checkpoints).
pub fn own_check(kind: &Kind, hashes: &Hashes, data: Option<&[u8]>) -> Option<String> {
    match kind {
        Kind::Chunk(_) | Kind::OldChunk(_) => {
            if hashes.completed_chunk_footer().is_some() && hashes.trailing_md5_ok == Some(false) {
                Some("completed chunk fails its footer MD5".into())
            } else {
                None
            }
        }
        Kind::PTable(_) => {
            (hashes.trailing_md5_ok == Some(false)).then(|| "PTable fails its MD5".into())
        }
        Kind::IndexMap => data.and_then(|d| IndexMap::parse(d).err().map(|e| e.to_string())),
        Kind::Checkpoint(_) => {
            data.and_then(|d| checkpoint::decode(d).err().map(|e| e.to_string()))
        }
        _ => None,
    }
}
