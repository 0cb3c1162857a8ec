//! Where things live in a backup location.
//!
//! The root mirrors the database as of the latest restore point — completed chunks and the
//! checkpoints at the root, the index under `index/` — and keeps the completed chunks and index
//! tables older points still need. esbackup's own files live under `.esbackup/`: the restore
//! points, the lock objects, the growing (active) chunk as append-only segments, and versions of
//! files that change in place.

use crate::format::chunk::ChunkName;
use crate::format::{guid, indexmap, ptable};

/// Folder of esbackup's own files.
pub const META_DIR: &str = ".esbackup/";
/// One object per restore point: `.esbackup/points/<id>.json`.
pub const POINTS_DIR: &str = ".esbackup/points/";
/// Segments of growing chunks: `.esbackup/active/<chunk>/<chunk id>/<from>-<to>.<run>`.
pub const ACTIVE_DIR: &str = ".esbackup/active/";
/// Versions of files that change in place: `.esbackup/data/<key>/<run>`.
pub const DATA_DIR: &str = ".esbackup/data/";
/// The manifest a location of esbackup 0.1 (before restore points) holds.
pub const LEGACY_MANIFEST: &str = ".esbackup/manifest.json";
/// Lock objects, one per run that holds or wants the lock.
pub const LOCKS_DIR: &str = ".esbackup/locks/";
/// Prefix of index files.
pub const INDEX_DIR: &str = "index/";
/// Suffix the vendor procedure (and esbackup 0.1) gives a chunk before it is copied again.
pub const OLD_SUFFIX: &str = ".old";

/// Key of a restore point.
pub fn point_key(id: &str) -> String {
    format!("{POINTS_DIR}{id}.json")
}

/// The pages of format-4 points' file tables, each named by the MD5 of its bytes.
pub const PAGES_DIR: &str = ".esbackup/pages/";

/// Key of the page whose bytes have MD5 `md5` (hex).
pub fn page_key(md5: &str) -> String {
    format!("{PAGES_DIR}{md5}.json")
}

/// The point id of a key under [`POINTS_DIR`], if it is one.
pub fn point_id(key: &str) -> Option<&str> {
    key.strip_prefix(POINTS_DIR)?.strip_suffix(".json")
}

/// Key of one segment (bytes `from..to`) of a growing chunk, written by run `run`.
pub fn segment_key(chunk: &str, chunk_id: &str, from: u64, to: u64, run: &str) -> String {
    format!("{ACTIVE_DIR}{chunk}/{chunk_id}/{from:012}-{to:012}.{run}")
}

/// Key of a version of `key` written by run `run`.
pub fn data_key(key: &str, run: &str) -> String {
    format!("{DATA_DIR}{key}/{run}")
}

pub const STREAM_EXISTENCE_CHK: &str = "stream-existence/streamExistenceFilter.chk";
pub const STREAM_EXISTENCE_DAT: &str = "stream-existence/streamExistenceFilter.dat";
pub const SCAVENGING_DB: &str = "scavenging/scavenging.db";
pub const SCAVENGING_WAL: &str = "scavenging/scavenging.db-wal";
pub const SCAVENGING_SHM: &str = "scavenging/scavenging.db-shm";
/// KurrentDB 25.1+ secondary index (DuckDB), changed in place: copied only on request.
pub const SECONDARY_INDEX: [&str; 2] = ["kurrent.ddb", "kurrent.ddb.wal"];
/// Checkpoints backed up besides the four of the vendor procedure (master-only `tag.chk`).
pub const EXTRA_CHECKPOINTS: [&str; 1] = ["tag.chk"];

/// Key of a file in the index folder (`rel` relative to the index folder, `/`-separated).
pub fn index_key(rel: &str) -> String {
    format!("{INDEX_DIR}{rel}")
}

/// What a key in the backup location holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Chunk(ChunkName),
    /// `chunk-X.Y.old`, left by an esbackup 0.1 run that was copying chunk X.Y again.
    OldChunk(ChunkName),
    /// `*.chk` at the root.
    Checkpoint(String),
    IndexMap,
    PTable(String),
    Bloom(String),
    /// Another file under `index/` (stream-existence, scavenging).
    IndexOther(String),
    SecondaryIndex(String),
    Meta,
    /// Not something esbackup writes; left alone.
    Unknown,
}

/// Classifies a key of the backup location.
pub fn classify(key: &str) -> Kind {
    if key.starts_with(META_DIR) {
        return Kind::Meta;
    }
    if let Some(rel) = key.strip_prefix(INDEX_DIR) {
        if rel == indexmap::FILE_NAME {
            return Kind::IndexMap;
        }
        if guid::is_guid_name(rel) {
            return Kind::PTable(rel.to_string());
        }
        if let Some(table) = rel.strip_suffix(ptable::BLOOM_SUFFIX) {
            if guid::is_guid_name(table) {
                return Kind::Bloom(table.to_string());
            }
        }
        return match rel {
            STREAM_EXISTENCE_CHK | STREAM_EXISTENCE_DAT | SCAVENGING_DB | SCAVENGING_WAL
            | SCAVENGING_SHM => Kind::IndexOther(rel.to_string()),
            _ => Kind::Unknown,
        };
    }
    if key.contains('/') {
        return Kind::Unknown;
    }
    if let Some(name) = ChunkName::parse(key) {
        return Kind::Chunk(name);
    }
    if let Some(name) = key.strip_suffix(OLD_SUFFIX).and_then(ChunkName::parse) {
        return Kind::OldChunk(name);
    }
    if key.ends_with(".chk") {
        return Kind::Checkpoint(key.to_string());
    }
    if SECONDARY_INDEX.contains(&key) {
        return Kind::SecondaryIndex(key.to_string());
    }
    Kind::Unknown
}

/// Suffix a restore gives a file until it is complete (never a database file's name).
pub const PARTIAL_SUFFIX: &str = ".esbackup-partial";

/// Why `key` cannot be the name of a database file in a restore point, or `None` when it can:
/// a relative path that stays inside the db folder (or, under `index/`, the index folder) and
/// is none of esbackup's own names. A point is written by whoever can write the location, so a
/// restore checks this before it creates anything.
pub fn unsafe_file_key(key: &str) -> Option<&'static str> {
    if let Some(why) = unsafe_path(key) {
        return Some(why);
    }
    if key == ".esbackup" || key.starts_with(META_DIR) || key == INDEX_DIR.trim_end_matches('/') {
        return Some("a folder esbackup uses");
    }
    if key.ends_with(PARTIAL_SUFFIX) {
        return Some("the suffix of a restore's temporary files");
    }
    None
}

/// Why a point cannot name `key` as the object holding a file's bytes, or `None` when it can.
pub fn unsafe_object_key(key: &str) -> Option<&'static str> {
    if let Some(why) = unsafe_path(key) {
        return Some(why);
    }
    if key.starts_with(LOCKS_DIR) || key.starts_with(POINTS_DIR) {
        return Some("a lock or point object");
    }
    None
}

/// A `/`-separated relative path: not empty, no leading `/`, no empty, `.` or `..` segment, no
/// control character.
fn unsafe_path(key: &str) -> Option<&'static str> {
    if key.is_empty() || key.len() > 4096 {
        return Some("an empty or overlong name");
    }
    if key.starts_with('/') {
        return Some("an absolute path");
    }
    if key.chars().any(char::is_control) {
        return Some("a control character");
    }
    if key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Some("an empty, `.` or `..` path segment");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_the_folder_are_unsafe() {
        for key in [
            "../escape.chk",
            "/abs/path/escape.chk",
            "index/../../escape.chk",
            "index//x",
            "./writer.chk",
            "",
            "a\nb",
            ".esbackup/points/x.json",
            "index",
            "chunk-000000.000000.esbackup-partial",
        ] {
            assert!(unsafe_file_key(key).is_some(), "{key:?}");
        }
        for key in [
            "writer.chk",
            "index/indexmap",
            "index/kontext/vectors.bin",
            "notes .txt",
        ] {
            assert_eq!(unsafe_file_key(key), None, "{key:?}");
        }
        assert!(unsafe_object_key("../x").is_some());
        assert!(unsafe_object_key(".esbackup/locks/r.1.json").is_some());
        assert_eq!(unsafe_object_key(".esbackup/data/index/x/run"), None);
    }

    #[test]
    fn classifies_every_kind() {
        let g = "5a1a8395-94ee-40c1-bf93-aa757b5887f8";
        assert_eq!(
            classify("chunk-000002.000001"),
            Kind::Chunk(ChunkName {
                start: 2,
                version: 1
            })
        );
        assert_eq!(
            classify("chunk-000002.000000.old"),
            Kind::OldChunk(ChunkName {
                start: 2,
                version: 0
            })
        );
        assert_eq!(
            classify("writer.chk"),
            Kind::Checkpoint("writer.chk".into())
        );
        assert_eq!(classify("index/indexmap"), Kind::IndexMap);
        assert_eq!(classify(&format!("index/{g}")), Kind::PTable(g.into()));
        assert_eq!(
            classify(&format!("index/{g}.bloomfilter")),
            Kind::Bloom(g.into())
        );
        assert_eq!(
            classify("index/stream-existence/streamExistenceFilter.dat"),
            Kind::IndexOther(STREAM_EXISTENCE_DAT.into())
        );
        assert_eq!(
            classify("kurrent.ddb"),
            Kind::SecondaryIndex("kurrent.ddb".into())
        );
        assert_eq!(classify(".esbackup/manifest.json"), Kind::Meta);
        assert_eq!(classify("notes.txt"), Kind::Unknown);
        assert_eq!(classify("index/indexmap.1234.indexmap.tmp"), Kind::Unknown);
    }
}
