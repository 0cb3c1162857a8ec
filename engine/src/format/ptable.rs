//! PTable index files (docs/FORMAT.md §3.2): 128-byte header, 24-byte entries, midpoints, a V4 footer,
//! and an MD5 of everything before it in the last 16 bytes.

use std::io::{self, Read};
use std::path::Path;

pub const HEADER_LEN: u64 = 128;
pub const FOOTER_LEN: u64 = 128;
pub const ENTRY_LEN: u64 = 24;
/// File type byte of a PTable header.
pub const FILE_TYPE_PTABLE: u8 = 1;
/// Current PTable version.
pub const VERSION_4: u8 = 4;
/// Suffix of the optional bloom filter beside a PTable.
pub const BLOOM_SUFFIX: &str = ".bloomfilter";

/// Number of midpoints a V4 table of `entries` entries carries at cache depth `depth`.
pub fn midpoint_count(entries: u64, depth: u32) -> u64 {
    match entries {
        0 => 0,
        1 => 2,
        n => (1u64 << depth).min(n).max(2),
    }
}

/// File length of a V4 PTable: 128 + 24N + 24M + 128 + 16.
pub fn v4_file_len(entries: u64, midpoints: u64) -> u64 {
    HEADER_LEN + ENTRY_LEN * entries + ENTRY_LEN * midpoints + FOOTER_LEN + super::MD5_LEN
}

/// Checks the header type byte and the trailing MD5. Returns a reason when the table is bad.
pub fn verify(path: &Path) -> io::Result<Result<(), String>> {
    let mut header = [0u8; 2];
    let mut file = std::fs::File::open(path)?;
    if file.read_exact(&mut header).is_err() {
        return Ok(Err("too short to be a PTable".into()));
    }
    if header[0] != FILE_TYPE_PTABLE {
        return Ok(Err(format!(
            "file type byte is {} (a PTable has {FILE_TYPE_PTABLE})",
            header[0]
        )));
    }
    if !super::trailing_md5_matches(path)? {
        return Ok(Err(
            "MD5 does not match (incomplete or corrupt table)".into()
        ));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midpoints_follow_the_formula() {
        assert_eq!(midpoint_count(0, 16), 0);
        assert_eq!(midpoint_count(1, 16), 2);
        assert_eq!(midpoint_count(2, 16), 2);
        assert_eq!(midpoint_count(1000, 16), 1000);
        assert_eq!(midpoint_count(100_000, 16), 65_536);
        assert_eq!(v4_file_len(0, 0), 272);
    }
}
