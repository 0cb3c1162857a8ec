//! Checkpoint files: exactly 8 bytes, one little-endian i64, overwritten in place.

use std::io;
use std::path::Path;

/// Length of every checkpoint file.
pub const CHECKPOINT_LEN: usize = 8;

/// The database checkpoints a backup captures, in the order the vendor procedure copies them.
pub const BACKED_UP: [&str; 4] = ["chaser.chk", "epoch.chk", "writer.chk", "proposal.chk"];
/// Never backed up: restore writes it from `chaser.chk`.
pub const TRUNCATE: &str = "truncate.chk";
pub const WRITER: &str = "writer.chk";
pub const CHASER: &str = "chaser.chk";
pub const EPOCH: &str = "epoch.chk";
pub const PROPOSAL: &str = "proposal.chk";
/// The order checkpoints are written in wherever a folder or a root mirror gets them (backup,
/// restore, copy): writer first and chaser last, so that chaser ≤ writer and epoch ≤ writer
/// hold at every moment; other checkpoints go between epoch and chaser.
pub const WRITE_ORDER: [&str; 4] = [WRITER, EPOCH, PROPOSAL, CHASER];

/// Decodes a checkpoint; anything but 8 bytes is an error.
pub fn decode(bytes: &[u8]) -> io::Result<i64> {
    let arr: [u8; CHECKPOINT_LEN] = bytes.try_into().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a checkpoint is 8 bytes, found {}", bytes.len()),
        )
    })?;
    Ok(i64::from_le_bytes(arr))
}

pub fn encode(value: i64) -> [u8; CHECKPOINT_LEN] {
    value.to_le_bytes()
}

/// Reads a checkpoint file.
pub fn read(path: &Path) -> io::Result<i64> {
    let bytes = std::fs::read(path)?;
    decode(&bytes).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Writes a checkpoint in place (like the server: same file, no rename) and fsyncs it.
pub fn write(path: &Path, value: i64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&encode(value))?;
    file.set_len(CHECKPOINT_LEN as u64)?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_length_check() {
        assert_eq!(decode(&encode(-1)).unwrap(), -1);
        assert_eq!(decode(&encode(1 << 40)).unwrap(), 1 << 40);
        assert!(decode(&[0u8; 7]).is_err());
    }
}
