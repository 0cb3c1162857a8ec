//! PTable V4 files (docs/FORMAT.md §3.2): encoding, reading entries back, and writing a table under its
//! final name in several visible pieces (the file grows, the MD5 comes last).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use esbackup_engine::format::ptable::{
    midpoint_count, ENTRY_LEN, FILE_TYPE_PTABLE, FOOTER_LEN, HEADER_LEN, VERSION_4,
};

/// Index cache depth of the server's default configuration.
pub const CACHE_DEPTH: u32 = 16;

/// One index entry: stream hash, event number, log position of the prepare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexEntry {
    pub stream_hash: u64,
    pub version: i64,
    pub position: i64,
}

impl IndexEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.stream_hash.to_le_bytes());
        out.extend_from_slice(&self.position.to_le_bytes());
    }

    fn decode(b: &[u8]) -> IndexEntry {
        let at = |o: usize| b[o..o + 8].try_into().unwrap();
        IndexEntry {
            version: i64::from_le_bytes(at(0)),
            stream_hash: u64::from_le_bytes(at(8)),
            position: i64::from_le_bytes(at(16)),
        }
    }
}

/// Sorts entries the way a PTable stores them: descending by (hash, version, position).
pub fn sort_descending(entries: &mut [IndexEntry]) {
    entries.sort_by(|a, b| b.cmp(a));
}

/// The full bytes of a V4 PTable for entries already sorted descending.
pub fn encode_v4(entries: &[IndexEntry]) -> Vec<u8> {
    let n = entries.len() as u64;
    let m = midpoint_count(n, CACHE_DEPTH);
    let mut out = Vec::with_capacity(esbackup_engine::format::ptable::v4_file_len(n, m) as usize);
    out.resize(HEADER_LEN as usize, 0);
    out[0] = FILE_TYPE_PTABLE;
    out[1] = VERSION_4;
    for e in entries {
        e.encode(&mut out);
    }
    for k in 0..m {
        let idx = if m > 1 { k * (n - 1) / (m - 1) } else { 0 };
        let e = entries[idx as usize];
        out.extend_from_slice(&e.version.to_le_bytes());
        out.extend_from_slice(&e.stream_hash.to_le_bytes());
        out.extend_from_slice(&(idx as i64).to_le_bytes());
    }
    let mut footer = [0u8; FOOTER_LEN as usize];
    footer[0] = FILE_TYPE_PTABLE;
    footer[1] = VERSION_4;
    footer[2..6].copy_from_slice(&(m as u32).to_le_bytes());
    out.extend_from_slice(&footer);
    let md5: [u8; 16] = Md5::digest(&out).into();
    out.extend_from_slice(&md5);
    out
}

/// Reads the entries of a V4 PTable (uses the footer's midpoint count to find where they end).
pub fn read_entries(path: &Path) -> io::Result<Vec<IndexEntry>> {
    let bytes = std::fs::read(path)?;
    let bad = |m: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {m}", path.display()),
        )
    };
    let fixed = (HEADER_LEN + FOOTER_LEN + 16) as usize;
    if bytes.len() < fixed || bytes[0] != FILE_TYPE_PTABLE || bytes[1] != VERSION_4 {
        return Err(bad("not a V4 PTable"));
    }
    let footer = bytes.len() - 16 - FOOTER_LEN as usize;
    let m = u32::from_le_bytes(bytes[footer + 2..footer + 6].try_into().unwrap()) as usize;
    let entry_bytes = (bytes.len() - fixed)
        .checked_sub(m * ENTRY_LEN as usize)
        .ok_or_else(|| bad("midpoint count exceeds the file"))?;
    if entry_bytes % ENTRY_LEN as usize != 0 {
        return Err(bad("entries are not a multiple of 24 bytes"));
    }
    Ok(
        bytes[HEADER_LEN as usize..HEADER_LEN as usize + entry_bytes]
            .chunks(ENTRY_LEN as usize)
            .map(IndexEntry::decode)
            .collect(),
    )
}

/// A file written under its final name in pieces, so readers can see it grow.
#[derive(Debug)]
pub struct GrowingFile {
    pub path: PathBuf,
    bytes: Vec<u8>,
    initial_len: u64,
    /// End offsets of the pieces still to write, next last.
    cuts: Vec<usize>,
    written: usize,
    file: Option<File>,
}

impl GrowingFile {
    /// Plans writing `bytes` to `path` in `pieces` (at least 2) writes: the file is created with
    /// length `initial_len`, the body arrives in pieces, and the last 16 bytes (the MD5) come last.
    pub fn new(path: PathBuf, bytes: Vec<u8>, initial_len: u64, pieces: usize) -> GrowingFile {
        let body_end = bytes.len().saturating_sub(16);
        let body_pieces = pieces.max(2) - 1;
        let mut cuts: Vec<usize> = (1..=body_pieces)
            .map(|k| k * body_end / body_pieces)
            .collect();
        cuts.push(bytes.len());
        cuts.dedup();
        cuts.reverse();
        GrowingFile {
            path,
            bytes,
            initial_len,
            cuts,
            written: 0,
            file: None,
        }
    }

    /// Plans a PTable write: sized to header + entries first, as the server does.
    pub fn ptable(path: PathBuf, bytes: Vec<u8>, entries: usize, pieces: usize) -> GrowingFile {
        let initial = HEADER_LEN + entries as u64 * ENTRY_LEN;
        GrowingFile::new(path, bytes, initial, pieces)
    }

    pub fn is_done(&self) -> bool {
        self.cuts.is_empty()
    }

    /// Writes still to do; 1 means only the trailing MD5 is missing.
    pub fn pieces_left(&self) -> usize {
        self.cuts.len()
    }

    /// Writes the next piece (creating the file on the first call). After the last piece the
    /// file is fsynced and marked read-only. Returns true once the file is complete.
    pub fn write_next(&mut self) -> io::Result<bool> {
        let Some(end) = self.cuts.pop() else {
            return Ok(true);
        };
        if self.file.is_none() {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&self.path)?;
            file.set_len(self.initial_len)?;
            self.file = Some(file);
        }
        let file = self.file.as_ref().unwrap();
        file.write_all_at(&self.bytes[self.written..end], self.written as u64)?;
        self.written = end;
        if self.cuts.is_empty() {
            file.set_len(self.bytes.len() as u64)?;
            file.sync_all()?;
            self.file = None;
            crate::chunk_writer::make_read_only(&self.path)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Writes every remaining piece.
    pub fn finish(&mut self) -> io::Result<()> {
        while !self.write_next()? {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use esbackup_engine::format::ptable;

    fn entries(n: u64) -> Vec<IndexEntry> {
        let mut v: Vec<IndexEntry> = (0..n)
            .map(|i| IndexEntry {
                stream_hash: crate::hash::stream_hash(&format!("s-{}", i % 7)),
                version: (i / 7) as i64,
                position: i as i64 * 100,
            })
            .collect();
        sort_descending(&mut v);
        v
    }

    #[test]
    fn v4_layout_midpoints_and_md5() {
        let dir = tempfile::tempdir().unwrap();
        for n in [0u64, 1, 2, 50] {
            let e = entries(n);
            let bytes = encode_v4(&e);
            let m = midpoint_count(n, CACHE_DEPTH);
            assert_eq!(bytes.len() as u64, ptable::v4_file_len(n, m));
            let path = dir.path().join(format!("t{n}"));
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(ptable::verify(&path).unwrap(), Ok(()));
            assert_eq!(read_entries(&path).unwrap(), e);
            if n >= 2 {
                let mid = |k: usize| {
                    let at = 128 + 24 * n as usize + 24 * k + 16;
                    i64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
                };
                assert_eq!(mid(0), 0);
                assert_eq!(mid(m as usize - 1), n as i64 - 1);
            }
        }
        let e = entries(50);
        assert!(e.windows(2).all(|w| w[0] >= w[1]));
    }

    #[test]
    fn growing_table_is_visible_and_incomplete_until_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let e = entries(40);
        let bytes = encode_v4(&e);
        let path = dir.path().join("growing");
        let mut g = GrowingFile::ptable(path.clone(), bytes.clone(), e.len(), 4);
        assert!(!g.write_next().unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 128 + 24 * 40);
        assert!(ptable::verify(&path).unwrap().is_err());
        g.finish().unwrap();
        assert!(g.is_done());
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(ptable::verify(&path).unwrap(), Ok(()));
    }
}
