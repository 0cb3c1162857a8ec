//! Chunk files (`chunk-NNNNNN.VVVVVV`): name, 128-byte header, 128-byte footer (docs/FORMAT.md §1).

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use uuid::Uuid;

use super::guid;

pub const HEADER_LEN: u64 = 128;
pub const FOOTER_LEN: u64 = 128;
/// Chunk files of format version ≥ 3 are padded to this alignment.
pub const ALIGNMENT: u64 = 4096;
/// File type byte of a chunk header.
pub const FILE_TYPE_CHUNK: u8 = 2;
/// Default logical chunk size (256 MiB).
pub const DEFAULT_CHUNK_SIZE: u32 = 256 * 1024 * 1024;

/// Rounds `n` up to the 4 KiB alignment of version ≥ 3 chunks.
pub fn align(n: u64) -> u64 {
    n.div_ceil(ALIGNMENT) * ALIGNMENT
}

/// Size of an active (preallocated) chunk file: align4096(128 + chunk_size + 128).
pub fn active_file_len(chunk_size: u32) -> u64 {
    align(HEADER_LEN + chunk_size as u64 + FOOTER_LEN)
}

/// The parsed name of a chunk file: start number and version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkName {
    pub start: u32,
    pub version: u32,
}

impl ChunkName {
    /// Parses exactly `chunk-` + 6 digits + `.` + 6 digits (the server's anchored pattern).
    pub fn parse(name: &str) -> Option<ChunkName> {
        let rest = name.strip_prefix("chunk-")?;
        let (start, version) = rest.split_once('.')?;
        let digits = |s: &str| s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(start) || !digits(version) {
            return None;
        }
        Some(ChunkName {
            start: start.parse().ok()?,
            version: version.parse().ok()?,
        })
    }
}

impl fmt::Display for ChunkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chunk-{:06}.{:06}", self.start, self.version)
    }
}

/// The 128-byte chunk header (docs/FORMAT.md §1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    pub min_compatible_version: u8,
    pub chunk_size: u32,
    pub start: u32,
    pub end: u32,
    pub is_scavenged: bool,
    pub chunk_id: Uuid,
    /// Written only by format version ≥ 4; 0 in older files.
    pub version: u8,
    pub transform: u8,
}

impl ChunkHeader {
    /// Logical log position of the first byte of this chunk.
    pub fn start_position(&self) -> i64 {
        self.start as i64 * self.chunk_size as i64
    }

    /// Logical log position just past this chunk (covers merged ranges).
    pub fn end_position(&self) -> i64 {
        (self.end as i64 + 1) * self.chunk_size as i64
    }

    /// Parses a header; errors name what is wrong with it.
    pub fn decode(b: &[u8; HEADER_LEN as usize]) -> io::Result<ChunkHeader> {
        if b[0] != FILE_TYPE_CHUNK {
            return Err(invalid(format!(
                "not a chunk: file type byte is {} (a chunk has {FILE_TYPE_CHUNK})",
                b[0]
            )));
        }
        let i32_at = |o: usize| i32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let (chunk_size, start, end) = (i32_at(2), i32_at(6), i32_at(10));
        if chunk_size <= 0 || start < 0 || end < start {
            return Err(invalid(format!(
                "implausible chunk header: size {chunk_size}, start {start}, end {end}"
            )));
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[18..34]);
        Ok(ChunkHeader {
            min_compatible_version: b[1],
            chunk_size: chunk_size as u32,
            start: start as u32,
            end: end as u32,
            is_scavenged: i32_at(14) != 0,
            chunk_id: guid::from_dotnet_bytes(&id),
            version: b[34],
            transform: b[35],
        })
    }

    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut b = [0u8; HEADER_LEN as usize];
        b[0] = FILE_TYPE_CHUNK;
        b[1] = self.min_compatible_version;
        b[2..6].copy_from_slice(&(self.chunk_size as i32).to_le_bytes());
        b[6..10].copy_from_slice(&(self.start as i32).to_le_bytes());
        b[10..14].copy_from_slice(&(self.end as i32).to_le_bytes());
        b[14..18].copy_from_slice(&(self.is_scavenged as i32).to_le_bytes());
        b[18..34].copy_from_slice(&guid::to_dotnet_bytes(&self.chunk_id));
        b[34] = self.version;
        b[35] = self.transform;
        b
    }
}

/// The 128-byte footer of a completed chunk (docs/FORMAT.md §1.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkFooter {
    pub flags: u8,
    pub physical_data_size: i32,
    pub logical_data_size: i64,
    pub map_size: i32,
    pub md5: [u8; 16],
}

impl ChunkFooter {
    pub const COMPLETED: u8 = 0x01;
    pub const MAP_12_BYTES: u8 = 0x02;

    pub fn is_completed(&self) -> bool {
        self.flags & Self::COMPLETED != 0
    }

    pub fn decode(b: &[u8; FOOTER_LEN as usize]) -> ChunkFooter {
        let i32_at = |o: usize| i32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let flags = b[0];
        let (logical_data_size, map_size) = if flags & Self::MAP_12_BYTES != 0 {
            (i64::from_le_bytes(b[5..13].try_into().unwrap()), i32_at(13))
        } else {
            (i32_at(5) as i64, i32_at(9))
        };
        let mut md5 = [0u8; 16];
        md5.copy_from_slice(&b[112..128]);
        ChunkFooter {
            flags,
            physical_data_size: i32_at(1),
            logical_data_size,
            map_size,
            md5,
        }
    }

    /// Encodes the footer in the current (12-byte posmap) layout; `md5` goes last.
    pub fn encode(&self) -> [u8; FOOTER_LEN as usize] {
        let mut b = [0u8; FOOTER_LEN as usize];
        b[0] = self.flags;
        b[1..5].copy_from_slice(&self.physical_data_size.to_le_bytes());
        b[5..13].copy_from_slice(&self.logical_data_size.to_le_bytes());
        b[13..17].copy_from_slice(&self.map_size.to_le_bytes());
        b[112..128].copy_from_slice(&self.md5);
        b
    }
}

/// What a chunk file says about itself: header, footer when completed, and its length.
#[derive(Clone, Debug)]
pub struct ChunkInfo {
    pub header: ChunkHeader,
    pub footer: Option<ChunkFooter>,
    pub file_len: u64,
}

impl ChunkInfo {
    /// Reads the header and, if the file is completed, its footer.
    pub fn read(path: &Path) -> io::Result<ChunkInfo> {
        let mut file = std::fs::File::open(path)?;
        Self::read_from(&mut file)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }

    pub fn read_from(file: &mut std::fs::File) -> io::Result<ChunkInfo> {
        let file_len = file.metadata()?.len();
        if file_len < HEADER_LEN + FOOTER_LEN {
            return Err(invalid(format!(
                "chunk file is {file_len} bytes, shorter than header and footer"
            )));
        }
        let mut hb = [0u8; HEADER_LEN as usize];
        file.seek(SeekFrom::Start(0))?;
        file.read_exact(&mut hb)?;
        let header = ChunkHeader::decode(&hb)?;
        let mut fb = [0u8; FOOTER_LEN as usize];
        file.seek(SeekFrom::Start(file_len - FOOTER_LEN))?;
        file.read_exact(&mut fb)?;
        let footer = ChunkFooter::decode(&fb);
        Ok(ChunkInfo {
            header,
            footer: footer.is_completed().then_some(footer),
            file_len,
        })
    }

    pub fn is_completed(&self) -> bool {
        self.footer.is_some()
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A chunk of 1000-byte logical size for unit tests: chunks `start..=end`, completed (with a
/// footer) or not.
#[cfg(test)]
impl ChunkInfo {
    pub(crate) fn sample(
        (start, end): (u32, u32),
        completed: bool,
        file_len: u64,
        chunk_id: uuid::Uuid,
    ) -> ChunkInfo {
        ChunkInfo {
            header: ChunkHeader {
                min_compatible_version: 3,
                chunk_size: 1000,
                start,
                end,
                is_scavenged: false,
                chunk_id,
                version: 4,
                transform: 0,
            },
            footer: completed.then_some(ChunkFooter {
                flags: 3,
                physical_data_size: 0,
                logical_data_size: 0,
                map_size: 0,
                md5: [0; 16],
            }),
            file_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_strictly() {
        assert_eq!(
            ChunkName::parse("chunk-000123.000002"),
            Some(ChunkName {
                start: 123,
                version: 2
            })
        );
        assert_eq!(
            ChunkName {
                start: 5,
                version: 0
            }
            .to_string(),
            "chunk-000005.000000"
        );
        for bad in [
            "chunk-000123.000000.old",
            "chunk-000123.000000.3f2a.tmp",
            "chunk-12.0",
            "chk-000001.000000",
            "chunk-00012a.000000",
        ] {
            assert_eq!(ChunkName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn header_round_trip_and_example_bytes() {
        let h = ChunkHeader {
            min_compatible_version: 3,
            chunk_size: DEFAULT_CHUNK_SIZE,
            start: 5,
            end: 5,
            is_scavenged: false,
            chunk_id: Uuid::parse_str("5a1a8395-94ee-40c1-bf93-aa757b5887f8").unwrap(),
            version: 4,
            transform: 0,
        };
        let b = h.encode();
        assert_eq!(&b[..6], &[0x02, 0x03, 0x00, 0x00, 0x00, 0x10]);
        assert_eq!(&b[18..22], &[0x95, 0x83, 0x1a, 0x5a]);
        assert_eq!(b[34], 4);
        assert_eq!(ChunkHeader::decode(&b).unwrap(), h);
        assert_eq!(active_file_len(DEFAULT_CHUNK_SIZE), 268_439_552);
    }

    #[test]
    fn footer_round_trip() {
        let f = ChunkFooter {
            flags: 3,
            physical_data_size: 1000,
            logical_data_size: 5000,
            map_size: 120,
            md5: [7; 16],
        };
        assert_eq!(ChunkFooter::decode(&f.encode()), f);
        assert!(!ChunkFooter::decode(&[0u8; 128]).is_completed());
    }
}
