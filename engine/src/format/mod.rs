//! On-disk formats of an EventStoreDB / KurrentDB node (see `docs/FORMAT.md`): chunk files and
//! the log records in them, checkpoints, the `indexmap` and PTables. Each module both parses and
//! encodes (log records: the engine only reads them), so the engine, its verifier and the
//! simulator share one definition of every byte.

pub mod checkpoint;
pub mod chunk;
pub mod guid;
pub mod indexmap;
pub mod ptable;
pub mod record;

use std::io::{self, Read};

use crate::hashing::Running;

/// Size of the trailing MD5 that chunks and PTables carry.
pub const MD5_LEN: u64 = 16;

/// Streams `len` bytes of `reader` through MD5 in 1 MiB pieces (never the whole file in memory).
pub fn md5_of_reader(reader: &mut impl Read, len: u64) -> io::Result<[u8; 16]> {
    let mut hasher = Running::for_len(len);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = reader.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file ended before its expected length",
            ));
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hasher.finalize())
}

/// Checks a file that ends in an MD5 of all its preceding bytes (completed chunks, PTables).
/// Returns `Ok(true)` when the stored and computed hashes agree.
pub fn trailing_md5_matches(path: &std::path::Path) -> io::Result<bool> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len < MD5_LEN {
        return Ok(false);
    }
    let computed = md5_of_reader(&mut file, len - MD5_LEN)?;
    let mut stored = [0u8; 16];
    file.read_exact(&mut stored)?;
    Ok(computed == stored)
}
