//! The server's cache-line bloom filter file (docs/FORMAT.md §3.3), used for `<guid>.bloomfilter` and
//! `stream-existence/streamExistenceFilter.dat`: a 64-byte header line, then 64-byte lines of 60
//! filter bytes plus the line's xxHash32. Pages of 8 KiB are rewritten in place.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::hash::{xxh32, SEED};

pub const LINE: usize = 64;
pub const LINE_DATA: usize = 60;
pub const PAGE: usize = 8192;
/// Hash probes per key.
const PROBES: u64 = 4;

/// File length for a filter of `logical_bytes` filter bytes.
pub fn file_len(logical_bytes: u64) -> u64 {
    (64 + logical_bytes + logical_bytes / 60 * 4) / 64 * 64 + 64
}

/// Logical size of a PTable's bloom filter: clamp(entries / 4, 10 000, 4 000 000 000).
pub fn ptable_logical_bytes(entries: u64) -> u64 {
    (entries / 4).clamp(10_000, 4_000_000_000)
}

/// An in-memory image of a bloom filter file that tracks which pages changed.
#[derive(Clone, Debug)]
pub struct BloomFile {
    bytes: Vec<u8>,
    dirty: BTreeSet<usize>,
}

impl BloomFile {
    /// An empty filter: header line plus all-zero (valid) lines.
    pub fn new(logical_bytes: u64) -> BloomFile {
        let mut bytes = vec![0u8; file_len(logical_bytes) as usize];
        bytes[0] = 1;
        let num_bits = ((bytes.len() / LINE - 1) * LINE_DATA * 8) as i64;
        bytes[8..16].copy_from_slice(&num_bits.to_le_bytes());
        let dirty = (0..bytes.len().div_ceil(PAGE)).collect();
        BloomFile { bytes, dirty }
    }

    /// Wraps bytes read back from disk (nothing dirty).
    pub fn from_bytes(bytes: Vec<u8>) -> BloomFile {
        BloomFile {
            bytes,
            dirty: BTreeSet::new(),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn num_bits(&self) -> u64 {
        ((self.bytes.len() / LINE).saturating_sub(1) * LINE_DATA * 8) as u64
    }

    /// Sets the probe bits of a 64-bit key and rehashes the lines it touched.
    pub fn add(&mut self, key: u64) {
        let bits = self.num_bits();
        if bits == 0 {
            return;
        }
        let (h1, h2) = (key >> 32, (key & 0xffff_ffff) | 1);
        for i in 0..PROBES {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % bits;
            let byte = (bit / 8) as usize;
            let line = 1 + byte / LINE_DATA;
            let at = line * LINE + byte % LINE_DATA;
            self.bytes[at] |= 1 << (bit % 8);
            let data = &self.bytes[line * LINE..line * LINE + LINE_DATA];
            let h = xxh32(data, SEED).to_le_bytes();
            self.bytes[line * LINE + LINE_DATA..(line + 1) * LINE].copy_from_slice(&h);
            self.dirty.insert(line * LINE / PAGE);
        }
    }

    /// Pages changed since the last [`BloomFile::take_dirty`].
    pub fn take_dirty(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    /// Writes one 8 KiB page in place.
    pub fn write_page(&self, file: &File, page: usize) -> io::Result<()> {
        let start = page * PAGE;
        let end = (start + PAGE).min(self.bytes.len());
        file.write_all_at(&self.bytes[start..end], start as u64)
    }
}

/// Checks every line: all zeros, all 0xFF, or 60 bytes followed by their xxHash32.
/// Returns the number of bad lines.
pub fn bad_lines(bytes: &[u8]) -> usize {
    bytes
        .chunks(LINE)
        .skip(1)
        .filter(|line| {
            line.len() == LINE
                && !line.iter().all(|&b| b == 0)
                && !line.iter().all(|&b| b == 0xff)
                && xxh32(&line[..LINE_DATA], SEED).to_le_bytes() != line[LINE_DATA..]
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_format_md() {
        assert_eq!(file_len(10_000), 10_752);
        assert_eq!(ptable_logical_bytes(100), 10_000);
        assert_eq!(file_len(256_000_000), 273_066_752);
    }

    #[test]
    fn lines_carry_their_hash() {
        let mut f = BloomFile::new(10_000);
        assert_eq!(f.take_dirty(), vec![0, 1]);
        f.add(0x1234_5678_9abc_def0);
        f.add(42);
        assert!(!f.take_dirty().is_empty());
        assert_eq!(bad_lines(f.bytes()), 0);
        assert!(f.bytes()[64..].iter().any(|&b| b != 0));
        let mut damaged = f.bytes().to_vec();
        let line = damaged[64..]
            .chunks(64)
            .position(|l| l.iter().any(|&b| b != 0))
            .unwrap();
        damaged[64 + line * 64] ^= 0x80;
        assert_eq!(bad_lines(&damaged), 1);
    }
}
