//! Writing chunk files the way the server does (docs/FORMAT.md §1.6): a preallocated active chunk
//! created through `<final>.<guid>.tmp` + rename, in-place appends with a running MD5, and
//! completion (zero padding, footer, MD5, truncate, read-only). Also completed scavenged/merged
//! images with a 12-byte posmap.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use uuid::Uuid;

use esbackup_engine::format::chunk::{self, ChunkFooter, ChunkHeader, FOOTER_LEN, HEADER_LEN};

/// A chunk header as the simulator writes it: version 4 ("current") or the old v3 style.
pub fn header(
    chunk_size: u32,
    start: u32,
    end: u32,
    scavenged: bool,
    id: Uuid,
    legacy_v3: bool,
) -> ChunkHeader {
    ChunkHeader {
        min_compatible_version: 3,
        chunk_size,
        start,
        end,
        is_scavenged: scavenged,
        chunk_id: id,
        version: if legacy_v3 { 0 } else { 4 },
        transform: 0,
    }
}

/// Creates `final_path` preallocated to `len` bytes holding only `header`, through a temp file
/// `<final_path>.<tmp_id>.tmp` that is fsynced and renamed (TFChunk.CreateNew).
pub fn create_preallocated(
    final_path: &Path,
    header: &ChunkHeader,
    len: u64,
    tmp_id: Uuid,
) -> io::Result<File> {
    let mut tmp_name = final_path.as_os_str().to_owned();
    tmp_name.push(format!(".{tmp_id}.tmp"));
    let tmp = PathBuf::from(tmp_name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    file.set_len(len)?;
    file.write_all_at(&header.encode(), 0)?;
    file.sync_all()?;
    fs::rename(&tmp, final_path)?;
    Ok(file)
}

/// Marks a file read-only (on Unix: clears every write bit, like .NET's `FileAttributes.ReadOnly`).
pub fn make_read_only(path: &Path) -> io::Result<()> {
    let mut perms = fs::metadata(path)?.permissions();
    perms.set_readonly(true);
    fs::set_permissions(path, perms)
}

/// Makes a file writable again (before the server deletes or rewrites it).
#[allow(clippy::permissions_set_readonly_false)]
pub fn make_writable(path: &Path) -> io::Result<()> {
    let mut perms = fs::metadata(path)?.permissions();
    perms.set_readonly(false);
    fs::set_permissions(path, perms)
}

/// Completes an open chunk file in place: zero padding from `data_end`, footer with the MD5 of
/// `[0, len-16)`, truncate to the aligned length, fsync, read-only. `hasher` must already hold
/// the bytes `[0, data_end)`. Returns the final file length.
pub fn complete_in_place(
    file: &File,
    path: &Path,
    mut hasher: Md5,
    data_end: u64,
    mut footer: ChunkFooter,
) -> io::Result<u64> {
    let len = chunk::align(data_end + FOOTER_LEN);
    let padding = vec![0u8; (len - FOOTER_LEN - data_end) as usize];
    file.write_all_at(&padding, data_end)?;
    hasher.update(&padding);
    footer.md5 = [0; 16];
    let bytes = footer.encode();
    hasher.update(&bytes[..FOOTER_LEN as usize - 16]);
    footer.md5 = hasher.finalize().into();
    file.write_all_at(&footer.encode(), len - FOOTER_LEN)?;
    file.set_len(len)?;
    file.sync_all()?;
    make_read_only(path)?;
    Ok(len)
}

/// Writes the body of a scavenged or merged chunk (records, posmap, padding, footer, MD5) into a
/// preallocated file that already holds `header`, then truncates it and makes it read-only.
pub fn write_scavenged_body(
    file: &File,
    path: &Path,
    header: &ChunkHeader,
    records: &[u8],
    posmap: &[(i32, i64)],
    logical_data_size: i64,
) -> io::Result<u64> {
    let mut body = Vec::with_capacity(records.len() + posmap.len() * 12);
    body.extend_from_slice(records);
    for (actual, logical) in posmap {
        body.extend_from_slice(&actual.to_le_bytes());
        body.extend_from_slice(&logical.to_le_bytes());
    }
    file.write_all_at(&body, HEADER_LEN)?;
    let mut hasher = Md5::new();
    hasher.update(header.encode());
    hasher.update(&body);
    let footer = ChunkFooter {
        flags: ChunkFooter::COMPLETED | ChunkFooter::MAP_12_BYTES,
        physical_data_size: records.len() as i32,
        logical_data_size,
        map_size: (posmap.len() * 12) as i32,
        md5: [0; 16],
    };
    complete_in_place(file, path, hasher, HEADER_LEN + body.len() as u64, footer)
}

/// The chunk currently being written: preallocated, header at 0, records appended in place.
pub struct ActiveChunk {
    pub header: ChunkHeader,
    pub path: PathBuf,
    file: File,
    /// Bytes of records written in the data area (the local write position).
    pub write_pos: u64,
    hasher: Md5,
}

impl ActiveChunk {
    /// Creates chunk `header.start` as `chunk-N.000000` via `chunk-N.000000.<tmp_id>.tmp`.
    pub fn create(db: &Path, header: ChunkHeader, tmp_id: Uuid) -> io::Result<ActiveChunk> {
        let name = chunk::ChunkName {
            start: header.start,
            version: 0,
        };
        let path = db.join(name.to_string());
        let file = create_preallocated(
            &path,
            &header,
            chunk::active_file_len(header.chunk_size),
            tmp_id,
        )?;
        let mut hasher = Md5::new();
        hasher.update(header.encode());
        Ok(ActiveChunk {
            header,
            path,
            file,
            write_pos: 0,
            hasher,
        })
    }

    /// Reopens an ongoing chunk at local position `write_pos` (re-reads the MD5 of what is kept).
    pub fn reopen(path: &Path, write_pos: u64) -> io::Result<ActiveChunk> {
        make_writable(path)?;
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        let mut hb = [0u8; HEADER_LEN as usize];
        file.read_exact(&mut hb)?;
        let header = ChunkHeader::decode(&hb)?;
        let mut hasher = Md5::new();
        hasher.update(hb);
        let mut data = vec![0u8; write_pos as usize];
        file.read_exact(&mut data)?;
        hasher.update(&data);
        Ok(ActiveChunk {
            header,
            path: path.to_path_buf(),
            file,
            write_pos,
            hasher,
        })
    }

    /// Global log position of the next byte to write.
    pub fn position(&self) -> i64 {
        self.header.start_position() + self.write_pos as i64
    }

    /// Bytes still free before the chunk is full.
    pub fn remaining(&self) -> u64 {
        self.header.chunk_size as u64 - self.write_pos
    }

    /// Appends framed records in place (not yet flushed).
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        assert!(
            bytes.len() as u64 <= self.remaining(),
            "record overflows chunk"
        );
        self.file.write_all_at(bytes, HEADER_LEN + self.write_pos)?;
        self.hasher.update(bytes);
        self.write_pos += bytes.len() as u64;
        Ok(())
    }

    /// Flushes appended data to disk (done before `writer.chk` moves).
    pub fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Completes the chunk (footer, MD5, truncate, read-only); returns the physical data size.
    pub fn complete(self) -> io::Result<u64> {
        let footer = ChunkFooter {
            flags: ChunkFooter::COMPLETED | ChunkFooter::MAP_12_BYTES,
            physical_data_size: self.write_pos as i32,
            logical_data_size: self.write_pos as i64,
            map_size: 0,
            md5: [0; 16],
        };
        complete_in_place(
            &self.file,
            &self.path,
            self.hasher,
            HEADER_LEN + self.write_pos,
            footer,
        )?;
        Ok(self.write_pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use esbackup_engine::format::chunk::ChunkInfo;

    #[test]
    fn active_then_completed_chunk_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let h = header(64 * 1024, 0, 0, false, Uuid::from_u128(9), false);
        let mut c = ActiveChunk::create(dir.path(), h.clone(), Uuid::from_u128(1)).unwrap();
        let path = c.path.clone();
        assert_eq!(fs::metadata(&path).unwrap().len(), 69_632);
        c.append(&crate::records::frame(&[0u8; 20])).unwrap();
        let info = ChunkInfo::read(&path).unwrap();
        assert!(!info.is_completed());
        assert_eq!(info.header, h);
        assert_eq!(c.complete().unwrap(), 28);
        let info = ChunkInfo::read(&path).unwrap();
        assert_eq!(info.file_len, 4096);
        assert_eq!(info.footer.unwrap().physical_data_size, 28);
        assert!(esbackup_engine::format::trailing_md5_matches(&path).unwrap());
        assert!(fs::metadata(&path).unwrap().permissions().readonly());
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "the temp file was renamed away");
    }
}
