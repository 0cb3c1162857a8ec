//! How the server sees the chunk files of a db directory (docs/FORMAT.md §1.1, `TFChunkEnumerator`):
//! files sorted by name; per start number the highest version is the latest; version > 0 ⇒ the
//! header's end number says how far the file reaches; files inside an earlier range are old.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use esbackup_engine::format::chunk::{ChunkInfo, ChunkName};

/// One `chunk-NNNNNN.VVVVVV` file and what its header and footer say.
#[derive(Clone, Debug)]
pub struct ChunkFile {
    pub name: ChunkName,
    pub path: PathBuf,
    pub info: Result<ChunkInfo, String>,
    /// Set by the truncation model: the file counts as an ongoing chunk whose data ends here
    /// (local position) and whose tail is zeros up to the full preallocated size.
    pub zero_from: Option<u64>,
}

impl ChunkFile {
    /// Last logical chunk number this file covers (version 0 files cover one chunk).
    pub fn end(&self) -> u32 {
        match (&self.info, self.name.version) {
            (_, 0) => self.name.start,
            (Ok(info), _) => info.header.end.max(self.name.start),
            (Err(_), _) => self.name.start,
        }
    }

    pub fn is_completed(&self) -> bool {
        self.zero_from.is_none() && matches!(&self.info, Ok(i) if i.is_completed())
    }

    pub fn is_scavenged(&self) -> bool {
        matches!(&self.info, Ok(i) if i.header.is_scavenged)
    }

    pub fn file_name(&self) -> String {
        self.name.to_string()
    }
}

/// Lists the chunk files of `db`, sorted by name, with their headers and footers read.
pub fn scan(db: &Path) -> io::Result<Vec<ChunkFile>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(db)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str().and_then(ChunkName::parse) else {
            continue;
        };
        let path = entry.path();
        let info = ChunkInfo::read(&path).map_err(|e| e.to_string());
        files.push(ChunkFile {
            name,
            path,
            info,
            zero_from: None,
        });
    }
    files.sort_by_key(|f| f.name);
    Ok(files)
}

/// What the enumeration says about a chunk number or file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Index into the file list of the latest version of chunks `start..=end`.
    Latest { file: usize, start: u32, end: u32 },
    /// An older version (or a file inside an earlier file's range).
    Old { file: usize, start: u32 },
    /// No file covers this chunk number.
    Missing { number: u32 },
}

/// Enumerates `files` (sorted by name) like `TFChunkEnumerator.EnumerateChunks(last_chunk)`.
pub fn enumerate(files: &[ChunkFile], last_chunk: u32) -> Vec<Slot> {
    let mut out = Vec::new();
    let mut expected = 0u32;
    for (i, f) in files.iter().enumerate() {
        let start = f.name.start;
        if start < expected {
            out.push(Slot::Old { file: i, start });
            continue;
        }
        out.extend((expected..start).map(|number| Slot::Missing { number }));
        expected = start;
        if files.get(i + 1).is_some_and(|n| n.name.start == start) {
            out.push(Slot::Old { file: i, start });
        } else {
            let end = f.end();
            expected = end + 1;
            out.push(Slot::Latest {
                file: i,
                start,
                end,
            });
        }
    }
    out.extend((expected..=last_chunk).map(|number| Slot::Missing { number }));
    out
}

/// Indexes of the files named for chunk `number` (any version), highest version first.
pub fn versions_of(files: &[ChunkFile], number: u32) -> Vec<usize> {
    let mut v: Vec<usize> = (0..files.len())
        .filter(|&i| files[i].name.start == number)
        .collect();
    v.sort_by_key(|&i| std::cmp::Reverse(files[i].name.version));
    v
}

/// Whether the chunk file that holds log position `at` in `db` is a scavenged one (what a
/// test waits for after asking the node to scavenge).
pub fn scavenged_at(db: &Path, at: i64) -> io::Result<bool> {
    let files = scan(db)?;
    Ok(enumerate(&files, 0).iter().any(|slot| match slot {
        Slot::Latest { file, .. } => files[*file].info.as_ref().is_ok_and(|i| {
            let h = &i.header;
            h.is_scavenged && (h.start_position()..h.end_position()).contains(&at)
        }),
        _ => false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(start: u32, version: u32) -> ChunkFile {
        ChunkFile {
            name: ChunkName { start, version },
            path: PathBuf::new(),
            info: Err("not read".into()),
            zero_from: None,
        }
    }

    #[test]
    fn latest_old_and_missing() {
        let files = vec![file(0, 0), file(0, 1), file(2, 0), file(3, 0)];
        let slots = enumerate(&files, 5);
        assert_eq!(
            slots,
            vec![
                Slot::Old { file: 0, start: 0 },
                Slot::Latest {
                    file: 1,
                    start: 0,
                    end: 0
                },
                Slot::Missing { number: 1 },
                Slot::Latest {
                    file: 2,
                    start: 2,
                    end: 2
                },
                Slot::Latest {
                    file: 3,
                    start: 3,
                    end: 3
                },
                Slot::Missing { number: 4 },
                Slot::Missing { number: 5 },
            ]
        );
        assert_eq!(versions_of(&files, 0), vec![1, 0]);
    }
}
