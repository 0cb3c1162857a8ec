//! Hashes computed while bytes stream by: the MD5 of a whole file and, for files that end in an
//! MD5 of their own (completed chunks, PTables), whether that trailing MD5 is right — in one MD5
//! pass. The last 128 bytes are held back from the running hash, so at the end the state is
//! cloned: finished with all but the last 16 bytes it is the body's MD5, with all of them the
//! whole file's (MD5 is a running state over the bytes). The tail also gives a chunk's footer
//! without a second read.

use md5::{Digest, Md5};

use crate::format::chunk::{ChunkFooter, FOOTER_LEN};
use crate::format::MD5_LEN;

const TAIL: usize = FOOTER_LEN as usize;

pub struct StreamHasher {
    /// The MD5 state over every byte but the held-back tail.
    state: Md5,
    /// Whether to check the trailing MD5.
    trailing: bool,
    /// The last (up to) 128 bytes seen, not yet fed to `state`.
    tail: Vec<u8>,
}

impl Default for StreamHasher {
    fn default() -> Self {
        StreamHasher::new(true)
    }
}

/// What a [`StreamHasher`] learnt.
pub struct Hashes {
    pub md5: [u8; 16],
    /// Whether the last 16 bytes are the MD5 of the bytes before them (`None`: not checked).
    pub trailing_md5_ok: Option<bool>,
    /// The last (up to) 128 bytes.
    pub tail: Vec<u8>,
}

impl Hashes {
    pub fn md5_hex(&self) -> String {
        hex::encode(self.md5)
    }

    /// The chunk footer in the last 128 bytes, if it says the chunk is completed.
    pub fn completed_chunk_footer(&self) -> Option<ChunkFooter> {
        let footer = ChunkFooter::decode(self.tail.as_slice().try_into().ok()?);
        footer.is_completed().then_some(footer)
    }
}

impl StreamHasher {
    /// `trailing`: also check the trailing MD5 (free: the same pass).
    pub fn new(trailing: bool) -> Self {
        StreamHasher {
            state: Md5::new(),
            trailing,
            tail: Vec::with_capacity(2 * TAIL),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        if data.len() >= TAIL {
            self.state.update(&self.tail);
            self.state.update(&data[..data.len() - TAIL]);
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - TAIL..]);
        } else {
            self.tail.extend_from_slice(data);
            if self.tail.len() > TAIL {
                let spill = self.tail.len() - TAIL;
                self.state.update(&self.tail[..spill]);
                self.tail.drain(..spill);
            }
        }
    }

    pub fn finish(self) -> Hashes {
        let keep = MD5_LEN as usize;
        let trailing_md5_ok = self.trailing.then(|| {
            if self.tail.len() < keep {
                return false;
            }
            let split = self.tail.len() - keep;
            let mut body = self.state.clone();
            body.update(&self.tail[..split]);
            let body: [u8; 16] = body.finalize().into();
            self.tail[split..] == body
        });
        let mut whole = self.state;
        whole.update(&self.tail);
        Hashes {
            md5: whole.finalize().into(),
            trailing_md5_ok,
            tail: self.tail,
        }
    }
}

/// MD5 of bytes `at..at + len` of a local file, read and hashed on the blocking thread pool.
/// Fails with `UnexpectedEof` when the file is shorter.
pub(crate) async fn md5_of_range(
    path: &std::path::Path,
    file: Option<std::sync::Arc<std::fs::File>>,
    at: u64,
    len: u64,
) -> std::io::Result<[u8; 16]> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = match file {
            Some(f) => f,
            None => std::sync::Arc::new(std::fs::File::open(&path)?),
        };
        let mut hasher = Md5::new();
        crate::file_copy::read_range(&file, at, len, |piece| hasher.update(piece)).map_err(
            |e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} is shorter than expected", path.display()),
                ),
                _ => e,
            },
        )?;
        Ok(hasher.finalize().into())
    })
    .await
    .map_err(|e| std::io::Error::other(format!("hashing task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_md5_detected_across_piece_boundaries() {
        let body = b"some bytes of a table".repeat(100);
        let mut file = body.clone();
        file.extend_from_slice(&Md5::digest(&body));
        for piece in [1, 7, 16, 17, 128, 129, 1000] {
            let mut h = StreamHasher::default();
            file.chunks(piece).for_each(|c| h.update(c));
            let out = h.finish();
            assert_eq!(out.trailing_md5_ok, Some(true), "piece {piece}");
            assert_eq!(out.md5, <[u8; 16]>::from(Md5::digest(&file)));
            assert_eq!(out.tail, file[file.len() - 128..]);
        }
        let mut h = StreamHasher::default();
        h.update(&body);
        assert_eq!(h.finish().trailing_md5_ok, Some(false));
        let mut h = StreamHasher::new(false);
        h.update(&file);
        let out = h.finish();
        assert_eq!(out.trailing_md5_ok, None, "not asked for");
        assert_eq!(out.md5, <[u8; 16]>::from(Md5::digest(&file)));
    }
}
