//! Hashes computed while bytes stream by: the MD5 of a whole file and, for files that end in an
//! MD5 of their own (completed chunks, PTables), whether that trailing MD5 is right — in one MD5
//! pass. The last 128 bytes are held back from the running hash, so at the end the state is
//! cloned: finished with all but the last 16 bytes it is the body's MD5, with all of them the
//! whole file's (MD5 is a running state over the bytes). The tail also gives a chunk's footer
//! without a second read.
//!
//! Which MD5 code hashes what (the lanes pay only where several large streams run at once):
//! - inputs shorter than [`SMALL`] (64 KiB: metadata, footers, index maps, small files), and
//!   the public [`Md5`] and [`md5`]: RustCrypto's `md-5` (stable, assembly), on the caller's
//!   thread. Below one round's share of the lanes a stream gains nothing from a wide step and
//!   would still pay two thread hand-offs;
//! - larger streams that run beside others (restore, `verify --read-data`, a folder backup):
//!   the lanes of an [`Md5Lanes`] pool ([`crate::md5_lanes`]; up to 3.4 GB per CPU-second);
//! - other large single streams (uploads to object stores, ranges of source files):
//!   `md5-many`'s single-stream kernel, measured here at 0.69 GB per CPU-second against 0.58
//!   for `md-5`'s assembly — on the backup path, so kept. (`md5-many` is a pre-release, pinned:
//!   its lanes have no stable equivalent; this module's tests check it against `md-5` on every
//!   length and split.)

use std::io;

use bytes::Bytes;
use md5::Digest;
use md5_many::Md5State;

use crate::format::chunk::{ChunkFooter, FOOTER_LEN};
use crate::format::MD5_LEN;
use crate::md5_lanes::LaneMd5;
pub(crate) use crate::md5_lanes::Md5Lanes;

const TAIL: usize = FOOTER_LEN as usize;

/// Inputs shorter than this are hashed with `md-5` on the caller's thread (see the module doc).
pub(crate) const SMALL: u64 = 64 << 10;

/// A running MD5 (RustCrypto's `md-5`).
#[derive(Clone, Default)]
pub struct Md5(md5::Md5);

impl Md5 {
    pub fn new() -> Md5 {
        Md5::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The MD5 of every byte so far (more may still be added).
    pub fn finalize(&self) -> [u8; 16] {
        self.0.clone().finalize().into()
    }
}

/// The MD5 of `data`.
pub fn md5(data: &[u8]) -> [u8; 16] {
    md5::Md5::digest(data).into()
}

/// A running MD5 by the code that suits an input of its length (see the module doc).
#[derive(Clone)]
pub(crate) enum Running {
    Small(Md5),
    Large(Md5State),
}

impl Running {
    pub fn for_len(len: u64) -> Running {
        if len < SMALL {
            Running::Small(Md5::new())
        } else {
            Running::Large(Md5State::new())
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Running::Small(h) => h.update(data),
            Running::Large(h) => h.update(data),
        }
    }

    pub fn finalize(&self) -> [u8; 16] {
        match self {
            Running::Small(h) => h.finalize(),
            Running::Large(h) => h.finalize(),
        }
    }
}

pub struct StreamHasher {
    /// The MD5 over every byte but the held-back tail.
    bulk: Bulk,
    /// The lanes failed: the bytes after this are not hashed, and `finish` fails.
    failed: Option<io::Error>,
    /// Whether to check the trailing MD5.
    trailing: bool,
    /// The last (up to) 128 bytes seen, not yet fed to `bulk`.
    tail: Vec<u8>,
}

/// Where the bytes before the tail are hashed.
enum Bulk {
    Here(Running),
    /// By a lanes pool's thread, side by side with other streams.
    Lanes(LaneMd5),
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
    /// Hashes on the caller's thread, an input of about `len` bytes. `trailing`: also check
    /// the trailing MD5 (free: the same pass).
    pub fn new(len: u64, trailing: bool) -> Self {
        StreamHasher::with(Bulk::Here(Running::for_len(len)), trailing)
    }

    /// Hashes an input of `len` bytes in `lanes`, side by side with the other streams hashed
    /// there at the same time (see [`crate::md5_lanes`]), if it is not small and there are
    /// lanes; else as [`StreamHasher::new`]. Feed it with [`StreamHasher::update_pieces`],
    /// from a blocking thread.
    pub fn shared(lanes: Option<&Md5Lanes>, len: u64, trailing: bool) -> Self {
        match lanes.filter(|_| len >= SMALL).and_then(Md5Lanes::stream) {
            Some(lane) => StreamHasher::with(Bulk::Lanes(lane), trailing),
            None => StreamHasher::new(len, trailing),
        }
    }

    fn with(bulk: Bulk, trailing: bool) -> Self {
        StreamHasher {
            bulk,
            failed: None,
            trailing,
            tail: Vec::with_capacity(2 * TAIL),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        let Bulk::Here(state) = &mut self.bulk else {
            return self.update_pieces([Bytes::copy_from_slice(data)]);
        };
        if data.len() >= TAIL {
            state.update(&self.tail);
            state.update(&data[..data.len() - TAIL]);
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - TAIL..]);
        } else {
            self.tail.extend_from_slice(data);
            if self.tail.len() > TAIL {
                let spill = self.tail.len() - TAIL;
                state.update(&self.tail[..spill]);
                self.tail.drain(..spill);
            }
        }
    }

    /// Adds `pieces`, in order, without copying them when they go to the lanes (which
    /// may block while it is behind).
    pub fn update_pieces(&mut self, pieces: impl IntoIterator<Item = Bytes>) {
        let Bulk::Lanes(lane) = &mut self.bulk else {
            return pieces.into_iter().for_each(|p| self.update(&p));
        };
        let pieces: Vec<Bytes> = pieces.into_iter().collect();
        let total: usize = pieces.iter().map(Bytes::len).sum();
        let mut out = Vec::with_capacity(pieces.len() + 1);
        // Everything goes to the hasher but the last TAIL bytes seen (old tail included).
        let mut to_send = (self.tail.len() + total).saturating_sub(TAIL);
        let from_tail = to_send.min(self.tail.len());
        if from_tail > 0 {
            out.push(Bytes::copy_from_slice(&self.tail[..from_tail]));
            self.tail.drain(..from_tail);
            to_send -= from_tail;
        }
        for piece in pieces {
            let send = to_send.min(piece.len());
            to_send -= send;
            if send > 0 {
                out.push(piece.slice(..send));
            }
            self.tail.extend_from_slice(&piece[send..]);
        }
        if self.failed.is_none() {
            self.failed = lane.update(out).err();
        }
    }

    /// The hashes of every byte; fails only when the lanes hashing it failed.
    pub fn finish(self) -> io::Result<Hashes> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let state = match self.bulk {
            Bulk::Here(state) => state,
            Bulk::Lanes(lane) => Running::Large(lane.finish()?),
        };
        let keep = MD5_LEN as usize;
        let trailing_md5_ok = self.trailing.then(|| {
            if self.tail.len() < keep {
                return false;
            }
            let split = self.tail.len() - keep;
            let mut body = state.clone();
            body.update(&self.tail[..split]);
            self.tail[split..] == body.finalize()
        });
        let mut whole = state;
        whole.update(&self.tail);
        Ok(Hashes {
            md5: whole.finalize(),
            trailing_md5_ok,
            tail: self.tail,
        })
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
        let mut hasher = Running::for_len(len);
        crate::file_copy::read_range(&file, at, len, |piece| hasher.update(piece)).map_err(
            |e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} is shorter than expected", path.display()),
                ),
                _ => e,
            },
        )?;
        Ok(hasher.finalize())
    })
    .await
    .map_err(|e| std::io::Error::other(format!("hashing task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length around the 64-byte block and its padding, fed in every way, gives the MD5
    /// of RustCrypto's `md-5`, by either code.
    #[test]
    fn md5_matches_the_reference_on_every_length_and_split() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for len in (0..300).chain([1000, 4095, 4096, 4097, 5000]) {
            let want: [u8; 16] = md5::Md5::digest(&data[..len]).into();
            assert_eq!(md5(&data[..len]), want, "one shot, {len} bytes");
            for piece in [1, 3, 55, 56, 63, 64, 65, 127, 1000] {
                for mut h in [Running::Small(Md5::new()), Running::Large(Md5State::new())] {
                    data[..len].chunks(piece).for_each(|c| h.update(c));
                    assert_eq!(h.finalize(), want, "{len} bytes in pieces of {piece}");
                }
            }
        }
    }

    #[test]
    fn trailing_md5_detected_across_piece_boundaries() {
        let body = b"some bytes of a table".repeat(100);
        let mut file = body.clone();
        file.extend_from_slice(&md5(&body));
        let lanes = Md5Lanes::new();
        for piece in [1, 7, 16, 17, 128, 129, 1000] {
            let mut h = StreamHasher::new(file.len() as u64, true);
            file.chunks(piece).for_each(|c| h.update(c));
            let out = h.finish().unwrap();
            assert_eq!(out.trailing_md5_ok, Some(true), "piece {piece}");
            assert_eq!(out.md5, md5(&file));
            assert_eq!(out.tail, file[file.len() - 128..]);
            // The same, hashed in the lanes (as if it were large): a batch of pieces at a time.
            for batch in [1, 3] {
                let mut h = StreamHasher::shared(Some(&lanes), SMALL, true);
                let pieces: Vec<Bytes> = file.chunks(piece).map(Bytes::copy_from_slice).collect();
                pieces
                    .chunks(batch)
                    .for_each(|b| h.update_pieces(b.to_vec()));
                let out = h.finish().unwrap();
                assert_eq!(out.trailing_md5_ok, Some(true), "shared, piece {piece}");
                assert_eq!(out.md5, md5(&file), "shared, piece {piece}, batch {batch}");
                assert_eq!(out.tail, file[file.len() - 128..]);
            }
        }
        let mut h = StreamHasher::new(SMALL, true);
        h.update(&body);
        assert_eq!(h.finish().unwrap().trailing_md5_ok, Some(false));
        let mut h = StreamHasher::new(0, false);
        h.update(&file);
        let out = h.finish().unwrap();
        assert_eq!(out.trailing_md5_ok, None, "not asked for");
        assert_eq!(out.md5, md5(&file));
    }

    /// A lane that fails makes the stream's hash fail (the operation reports it), however the
    /// bytes came.
    #[test]
    fn a_failing_lane_fails_the_hash() {
        let lanes = Md5Lanes::new();
        lanes.fail_next_round();
        let mut h = StreamHasher::shared(Some(&lanes), SMALL, false);
        h.update_pieces([Bytes::from(vec![7u8; SMALL as usize])]);
        h.update(b"more");
        let err = h.finish().err().expect("the hash fails");
        assert!(
            err.to_string().contains("MD5 hasher thread failed"),
            "{err}"
        );
    }
}
