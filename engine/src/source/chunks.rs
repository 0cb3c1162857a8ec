//! The chunk files, listed after the checkpoints were captured: which versions the server would
//! use, which lie beyond the captured writer, and how much of each holds data.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{open_failure, SourceDirs};
use crate::error::{EngineError, Result};
use crate::format::chunk::{ChunkInfo, ChunkName, HEADER_LEN};
use crate::point::Checkpoints;

/// A chunk file of the source and what its header and footer said when it was listed.
#[derive(Clone, Debug)]
pub(crate) struct SourceChunk {
    pub name: ChunkName,
    pub path: PathBuf,
    pub info: ChunkInfo,
    /// How many leading bytes of the file a backup needs: the whole file, except for the
    /// writer's incomplete chunk, where it is the header and the data up to the writer (the rest
    /// is the preallocated zero tail, or data written after the checkpoints were captured).
    pub data_end: u64,
}

impl SourceChunk {
    pub fn key(&self) -> String {
        self.name.to_string()
    }

    pub fn is_completed(&self) -> bool {
        self.info.is_completed()
    }

    /// True for a chunk that is stored as it grows (appended to), not whole.
    pub fn is_growing(&self) -> bool {
        !self.is_completed() && self.data_end < self.info.file_len
    }
}

/// The chunk files a backup stores, and those it leaves out.
#[derive(Clone, Debug)]
pub(crate) struct ChunkSet {
    pub chunk_size: u32,
    /// Chunks starting at or below the captured writer's chunk, by start number.
    pub chunks: Vec<SourceChunk>,
    /// Chunk files starting beyond the writer's chunk (written during the run): not stored.
    pub beyond_writer: Vec<String>,
    /// Old versions the server would delete at start-up: not stored.
    pub superseded: Vec<String>,
}

/// Lists the chunk files and reads their headers and footers.
pub(crate) fn capture(dirs: &SourceDirs, checkpoints: &Checkpoints) -> Result<ChunkSet> {
    let names = dirs.chunk_names()?;
    let (kept, superseded) = resolve(dirs, &names)?;
    let first = kept.first().ok_or_else(|| {
        EngineError::not_a_database(format!("{} has no chunk files left", dirs.db.display()))
    })?;
    let chunk_size = first.1.header.chunk_size;
    if let Some((odd, info)) = kept.iter().find(|(_, i)| i.header.chunk_size != chunk_size) {
        return Err(EngineError::not_a_database(format!(
            "{odd} says chunk size {} but {} says {chunk_size}: mixed databases in {}",
            info.header.chunk_size,
            first.0,
            dirs.db.display()
        )));
    }
    let writer = checkpoints.writer;
    let writer_chunk = writer / chunk_size as i64;
    let mut chunks = Vec::new();
    let mut beyond_writer = Vec::new();
    for (name, info) in kept {
        if name.start as i64 > writer_chunk {
            beyond_writer.push(name.to_string());
            continue;
        }
        let data_end = data_end(&info, writer).map_err(|why| {
            EngineError::not_a_database(format!(
                "{why} ({}): the checkpoint points past the data on disk; the database is damaged",
                dirs.chunk_path(&name).display()
            ))
        })?;
        chunks.push(SourceChunk {
            path: dirs.chunk_path(&name),
            name,
            info,
            data_end,
        });
    }
    if let Some(open) = open_before_writer(&chunks, writer) {
        return Err(EngineError::not_a_database(format!(
            "{} is not completed although the log continues after it: the database is damaged (a truncated or overwritten chunk?)",
            open.path.display()
        )));
    }
    check_coverage(&chunks, chunk_size, writer)
        .map_err(|why| EngineError::not_a_database(format!("{}: {why}", dirs.db.display())))?;
    Ok(ChunkSet {
        chunk_size,
        chunks,
        beyond_writer,
        superseded: superseded.iter().map(|n| n.to_string()).collect(),
    })
}

/// Reads the headers of `names` and keeps the files the server would use: for each start
/// number the highest version; a file whose start lies inside an earlier kept file's range (a
/// chunk merged away) is an old version too. Returns (kept, superseded).
#[allow(clippy::type_complexity)]
fn resolve(
    dirs: &SourceDirs,
    names: &[ChunkName],
) -> Result<(Vec<(ChunkName, ChunkInfo)>, Vec<ChunkName>)> {
    let mut highest: BTreeMap<u32, ChunkName> = BTreeMap::new();
    let mut superseded = Vec::new();
    for name in names {
        match highest.get(&name.start) {
            Some(prev) if prev.version > name.version => superseded.push(*name),
            Some(prev) => {
                superseded.push(*prev);
                highest.insert(name.start, *name);
            }
            None => {
                highest.insert(name.start, *name);
            }
        }
    }
    let mut kept: Vec<(ChunkName, ChunkInfo)> = Vec::new();
    for name in highest.values() {
        if let Some((_, last)) = kept.last() {
            if name.start <= last.header.end {
                superseded.push(*name);
                continue;
            }
        }
        let path = dirs.chunk_path(name);
        let info = ChunkInfo::read(&path).map_err(|e| open_failure(&path, e))?;
        kept.push((*name, info));
    }
    superseded.sort();
    Ok((kept, superseded))
}

/// How many leading bytes of a chunk file hold data as of the writer checkpoint `writer`.
fn data_end(info: &ChunkInfo, writer: i64) -> std::result::Result<u64, String> {
    let h = &info.header;
    let growing = !info.is_completed() && h.transform == 0 && writer < h.end_position();
    if !growing {
        return Ok(info.file_len);
    }
    let end = HEADER_LEN + (writer - h.start_position()).max(0) as u64;
    if end > info.file_len {
        return Err(format!(
            "writer.chk ({writer}) needs {end} bytes of chunk {} but the file has {}",
            h.start, info.file_len
        ));
    }
    Ok(end)
}

/// A chunk that is not completed although the writer is past its end. (A full chunk is completed
/// only when the next record does not fit, so the writer may sit exactly at the end of an open
/// chunk, with no next chunk yet.)
fn open_before_writer(chunks: &[SourceChunk], writer: i64) -> Option<&SourceChunk> {
    chunks
        .iter()
        .find(|c| !c.is_completed() && writer > c.info.header.end_position())
}

/// The chunks must cover the log from the first one (a node with archiving may have dropped
/// older ones) up to the writer checkpoint: the server refuses a gap below the writer, and a
/// writer beyond the last chunk means checkpoints and chunks do not belong together.
fn check_coverage(
    chunks: &[SourceChunk],
    chunk_size: u32,
    writer: i64,
) -> std::result::Result<(), String> {
    let size = chunk_size as i64;
    let mut next = chunks.first().map_or(0, |c| c.name.start as i64);
    for chunk in chunks {
        if chunk.name.start as i64 > next {
            return Err(format!(
                "there is no chunk {next} although the writer checkpoint is beyond it: the database is damaged, or a scavenge is replacing chunks (stop it and run again)"
            ));
        }
        next = next.max(chunk.info.header.end as i64 + 1);
    }
    if writer > next * size {
        return Err(format!(
            "writer.chk ({writer}) points past the end of the chunk files on disk (they end at log position {}): the database is incomplete or the checkpoint is damaged",
            next * size
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(start: u32, end: u32, completed: bool, file_len: u64) -> ChunkInfo {
        ChunkInfo::sample((start, end), completed, file_len, uuid::Uuid::nil())
    }

    fn chunk(start: u32, end: u32, completed: bool) -> SourceChunk {
        SourceChunk {
            name: ChunkName { start, version: 0 },
            path: PathBuf::new(),
            info: info(start, end, completed, 4096),
            data_end: 4096,
        }
    }

    #[test]
    fn the_writers_chunk_is_stored_up_to_the_writer_only() {
        let active = info(3, 3, false, 4096);
        assert_eq!(data_end(&active, 3000), Ok(128));
        assert_eq!(data_end(&active, 3500), Ok(628));
        assert!(data_end(&active, 3999 + 5000).is_ok(), "beyond: whole file");
        assert!(data_end(&info(3, 3, false, 200), 3500).is_err());
        assert_eq!(data_end(&info(3, 3, true, 2048), 3500), Ok(2048));
        let mut encrypted = info(3, 3, false, 4096);
        encrypted.header.transform = 1;
        assert_eq!(data_end(&encrypted, 3500), Ok(4096));
    }

    #[test]
    fn an_open_chunk_is_damage_only_when_the_writer_is_past_its_end() {
        let full = [chunk(0, 0, true), chunk(1, 1, false)];
        assert!(
            open_before_writer(&full, 1500).is_none(),
            "the writer inside"
        );
        assert!(
            open_before_writer(&full, 2000).is_none(),
            "the writer exactly at the end: full, completed with the next record"
        );
        assert_eq!(
            open_before_writer(&[chunk(0, 0, false), chunk(1, 1, false)], 1500)
                .map(|c| c.name.start),
            Some(0)
        );
    }

    #[test]
    fn gaps_and_a_writer_past_the_chunks_are_refused() {
        let ok = [chunk(0, 0, true), chunk(1, 2, true), chunk(3, 3, false)];
        assert!(check_coverage(&ok, 1000, 3500).is_ok());
        assert!(check_coverage(&ok, 1000, 4000).is_ok());
        assert!(check_coverage(&ok, 1000, 4001)
            .unwrap_err()
            .contains("past the end"));
        assert!(check_coverage(&ok, 1000, i64::MAX).is_err());
        let gap = [chunk(0, 0, true), chunk(2, 2, false)];
        assert!(check_coverage(&gap, 1000, 2500)
            .unwrap_err()
            .contains("no chunk 1"));
        let archived = [chunk(5, 5, true), chunk(6, 6, false)];
        assert!(check_coverage(&archived, 1000, 6500).is_ok());
    }
}
