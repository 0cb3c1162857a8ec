//! Restore points. Every completed backup run writes one, last: an immutable record of exactly
//! which bytes make up the database as that run captured it, and where each of them is stored.
//!
//! A point is self-contained: restoring it needs nothing but the objects it names. Objects a
//! retained point names are never overwritten or deleted (see `backup::plan` and `prune`), so a
//! point stays valid while later runs add points and `forget --prune` removes others.

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, ErrorKind, Result};
use crate::layout;
use crate::paged::{self, PageCache, Record, Unreadable};
use crate::source::log_times::LogTimes;
use crate::source::FileStamp;
use crate::status::PointSummary;
use crate::target::{get_bytes, Target};

/// Format of the point objects this version writes: 3 adds the run sequence number (`seq`);
/// 4 stores a point as a small record and its file table in shared pages (see `paged`).
pub const FORMAT: u32 = 4;
/// Formats this version reads (2: points of esbackup 0.2, ordered by their time-named ids).
const READABLE_FORMATS: [u32; 3] = [2, 3, 4];

/// The database checkpoints of a point (-1 where absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoints {
    pub writer: i64,
    pub chaser: i64,
    pub epoch: i64,
    pub proposal: i64,
}

/// One restore point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    pub format: u32,
    /// `p00000042-20261130T070842123Z-1a2b3c4d`: the run's sequence number, its capture time and
    /// a random suffix (see `new_point_id`). Format 2 ids have no sequence number.
    pub id: String,
    /// The run's place in the location's history: one more than the newest point's, taken
    /// with the lock held. Points are ordered by it, never by the clock (0 in format 2).
    #[serde(default)]
    pub seq: u64,
    /// When the run captured the database's checkpoints, by the host's clock: the moment this
    /// point restores to.
    pub time: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub tool_version: String,
    pub host: String,
    pub source_db: String,
    pub source_index: String,
    pub chunk_size: u32,
    pub checkpoints: Checkpoints,
    /// Bytes of the new objects this point's run stored (what this point added to the store;
    /// their stored sizes in a compressed or encrypted location).
    pub bytes_added: u64,
    /// In a compressed or encrypted location: the plain bytes of those objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_added: Option<u64>,
    /// Things an operator should know (e.g. the secondary index was not copied).
    #[serde(default)]
    pub notes: Vec<String>,
    /// The node's state when its run asked its admin API (`leader`, `follower`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_state: Option<String>,
    /// The own times of its first and last log records (read at capture; none in points of
    /// esbackup before 0.4, or where they could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_times: Option<LogTimes>,
    /// Every database file by key (its path relative to the db folder; `index/...` for the
    /// index folder), and how to rebuild it.
    pub files: BTreeMap<String, FileRef>,
    /// The pages a format-4 point's file table is stored in (none for older formats, and for
    /// a point not stored yet).
    #[serde(skip)]
    pub pages: Vec<NeededObject>,
}

/// How to rebuild one database file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Length of the restored file.
    pub size: u64,
    #[serde(flatten)]
    pub content: Content,
    /// For chunk files: what the header and footer said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<ChunkRef>,
    /// For files that change in place: their metadata when captured, to tell later whether
    /// they changed without reading them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<FileStamp>,
}

/// Where a file's bytes are stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "store", rename_all = "snake_case")]
pub enum Content {
    /// One whole object, with the MD5 of its bytes.
    Object {
        key: String,
        md5: String,
        /// What the store holds for it, where that is not the file's size (an encoding
        /// location's compressed or encrypted object).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stored_size: Option<u64>,
    },
    /// Small files (checkpoints, `indexmap`) kept in the point itself.
    Inline {
        #[serde(with = "base64_bytes")]
        data: Bytes,
    },
    /// A growing chunk: its first `data_end` bytes are the segments laid end to end (each at
    /// its offset); the rest of the file, up to `size`, is zeros.
    Segments {
        segments: Vec<Segment>,
        data_end: u64,
        /// MD5 of the last bytes before `data_end` as read from the source, so that the next
        /// run can tell that the stored bytes are still the file's before appending to them.
        tail: Window,
    },
}

/// Bytes `at..at + len` of a growing chunk, stored as the whole object `key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub key: String,
    pub at: u64,
    pub len: u64,
    pub md5: String,
    /// What the store holds for it, where that is not `len` (see [`Content::Object`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_size: Option<u64>,
}

/// A byte range of a file and the MD5 of its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub at: u64,
    pub len: u64,
    pub md5: String,
}

/// What a chunk file's header and footer said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: String,
    pub end: u32,
    pub completed: bool,
}

/// A stored object a point needs: the size and MD5 of its bytes, and the size the store holds
/// for them (what a listing must show).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NeededObject {
    pub key: String,
    pub size: u64,
    pub md5: String,
    pub stored_size: u64,
}

/// The size a store holds for an object of `size` bytes recorded with `stored_size`.
pub(crate) fn stored_size(size: u64, stored_size: Option<u64>) -> u64 {
    stored_size.unwrap_or(size)
}

/// What to record of an object's stored size: nothing where it is the object's size.
pub(crate) fn record_stored_size(size: u64, stored: u64) -> Option<u64> {
    (stored != size).then_some(stored)
}

impl FileRef {
    /// The stored objects this file is rebuilt from.
    pub fn objects(&self) -> Vec<NeededObject> {
        match &self.content {
            Content::Object {
                key,
                md5,
                stored_size: stored,
            } => vec![NeededObject {
                key: key.clone(),
                size: self.size,
                md5: md5.clone(),
                stored_size: stored_size(self.size, *stored),
            }],
            Content::Inline { .. } => vec![],
            Content::Segments { segments, .. } => segments
                .iter()
                .map(|s| NeededObject {
                    key: s.key.clone(),
                    size: s.len,
                    md5: s.md5.clone(),
                    stored_size: stored_size(s.len, s.stored_size),
                })
                .collect(),
        }
    }

    /// Bytes stored for this file (as the store holds them).
    pub fn stored_bytes(&self) -> u64 {
        match &self.content {
            Content::Inline { data } => data.len() as u64,
            _ => self.objects().iter().map(|o| o.stored_size).sum(),
        }
    }
}

impl Point {
    pub fn key(&self) -> String {
        layout::point_key(&self.id)
    }

    /// Every stored object this point needs (once each), its pages included.
    pub fn objects(&self) -> Vec<NeededObject> {
        let files = self.files.values().flat_map(FileRef::objects);
        let mut all: Vec<NeededObject> = files.chain(self.pages.iter().cloned()).collect();
        all.sort();
        all.dedup_by(|a, b| a.key == b.key);
        all
    }

    /// This point as a location whose objects are stored with `stored` sizes (key → size, as
    /// listed there) records it: for `copy`, whose destination may encode otherwise. Its pages
    /// are left to [`Point::store`].
    pub(crate) fn stored_as(&self, stored: &BTreeMap<String, u64>) -> Point {
        let mut point = self.clone();
        point.pages.clear();
        for file in point.files.values_mut() {
            let size = file.size;
            match &mut file.content {
                Content::Object {
                    key, stored_size, ..
                } => {
                    if let Some(&s) = stored.get(key.as_str()) {
                        *stored_size = record_stored_size(size, s);
                    }
                }
                Content::Segments { segments, .. } => {
                    for seg in segments {
                        if let Some(&s) = stored.get(&seg.key) {
                            seg.stored_size = record_stored_size(seg.len, s);
                        }
                    }
                }
                Content::Inline { .. } => {}
            }
        }
        point
    }

    /// Bytes of the database this point restores (zero tails included).
    pub fn size(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }

    /// Reads point `id`.
    pub async fn load(target: &dyn Target, id: &str) -> Result<Point> {
        Point::load_with(target, id, &PageCache::default()).await
    }

    /// Reads point `id`, its pages through `cache`.
    pub(crate) async fn load_with(
        target: &dyn Target,
        id: &str,
        cache: &PageCache,
    ) -> Result<Point> {
        let key = layout::point_key(id);
        let damaged =
            |why: String| EngineError::damaged(format!("{key} in {}: {why}", target.describe()));
        let point = match Stored::read(target, id).await? {
            Stored::Full(point) => point,
            Stored::Record(record) => match paged::assemble(target, record, cache).await {
                Ok(point) => point,
                Err(Unreadable::Storage(key, e)) => return Err(EngineError::storage(key, e)),
                Err(Unreadable::Damaged(why)) => return Err(damaged(why)),
            },
        };
        point.check().map_err(damaged)?;
        Ok(point)
    }

    /// The keys of the objects point `id` needs, its pages included, read through `cache`;
    /// the objects of a page another call on the same cache returned already are left out
    /// (the caller collects a set).
    pub(crate) async fn objects_of(
        target: &dyn Target,
        id: &str,
        cache: &PageCache,
    ) -> Result<Vec<String>> {
        let key = layout::point_key(id);
        let damaged =
            |why: String| EngineError::damaged(format!("{key} in {}: {why}", target.describe()));
        let record = match Stored::read(target, id).await? {
            Stored::Full(point) => return Ok(point.objects().into_iter().map(|o| o.key).collect()),
            Stored::Record(record) => record,
        };
        match paged::objects_of(target, &record, cache).await {
            Ok(keys) => Ok(keys),
            Err(Unreadable::Storage(key, e)) => Err(EngineError::storage(key, e)),
            Err(Unreadable::Damaged(why)) => Err(damaged(why)),
        }
    }

    /// The summary of point `id`, from its record alone where it has one (format 4).
    pub(crate) async fn summary(target: &dyn Target, id: &str) -> Result<PointSummary> {
        match Stored::read(target, id).await? {
            Stored::Full(point) => {
                let key = layout::point_key(id);
                point.check().map_err(|why| {
                    EngineError::damaged(format!("{key} in {}: {why}", target.describe()))
                })?;
                Ok(PointSummary::from(&point))
            }
            Stored::Record(r) => Ok(PointSummary {
                files: r.file_count,
                bytes: r.size,
                ..PointSummary::from(&r.point)
            }),
        }
    }

    /// Decodes and checks a point object of format 2 or 3 (a whole point in one object).
    pub fn parse(bytes: &[u8]) -> std::result::Result<Point, String> {
        let point: Point =
            serde_json::from_slice(bytes).map_err(|e| format!("unreadable point: {e}"))?;
        if !READABLE_FORMATS.contains(&point.format) || point.format >= 4 {
            return Err(format!(
                "point format {} is not one this esbackup reads ({READABLE_FORMATS:?}): written by another esbackup version",
                point.format
            ));
        }
        point.check()?;
        Ok(point)
    }

    /// What a point must hold to be restorable at all.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        if self.chunk_size == 0 {
            return Err("it records a chunk size of 0".into());
        }
        for chk in ["writer.chk", "chaser.chk"] {
            if !self.files.contains_key(chk) {
                return Err(format!("it has no {chk}"));
            }
        }
        if layout::unsafe_file_key(&self.id).is_some() || self.id.contains('/') {
            return Err(format!("its id {:?} is not a point id", self.id));
        }
        for (key, f) in &self.files {
            if let Some(why) = layout::unsafe_file_key(key) {
                return Err(format!("it names a database file {key:?} ({why})"));
            }
            let folders = key.match_indices('/').map(|(at, _)| &key[..at]);
            if let Some(folder) = folders.into_iter().find(|f| self.files.contains_key(*f)) {
                return Err(format!(
                    "it names {folder:?} both as a file and as a folder"
                ));
            }
            for o in f.objects() {
                if let Some(why) = layout::unsafe_object_key(&o.key) {
                    return Err(format!(
                        "{key}: it names a stored object {:?} ({why})",
                        o.key
                    ));
                }
            }
            match &f.content {
                Content::Inline { data } if data.len() as u64 != f.size => {
                    return Err(format!("{key}: its inline data is not {} bytes", f.size));
                }
                Content::Segments {
                    segments, data_end, ..
                } => {
                    let covered = segments.iter().map(|s| s.at + s.len).max().unwrap_or(0);
                    let inside = segments
                        .iter()
                        .all(|s| s.at.checked_add(s.len).is_some_and(|end| end <= *data_end));
                    if covered < *data_end || *data_end > f.size || !inside {
                        return Err(format!("{key}: its segments do not cover its data"));
                    }
                    // A growing chunk is one preallocated chunk file, never larger.
                    let most = crate::format::chunk::active_file_len(self.chunk_size);
                    if f.size > most {
                        return Err(format!(
                            "{key}: {} bytes is more than a chunk file holds ({most})",
                            f.size
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Stores the point (its key is new: points are never overwritten) in format 4: its pages
    /// but those in `existing` (key → stored size, of pages the location holds already), then
    /// its record. Returns the bytes written, and sets the point's pages.
    pub async fn store(
        &mut self,
        target: &dyn Target,
        existing: &BTreeMap<String, u64>,
    ) -> Result<u64> {
        let stored = paged::store(self, target, existing)
            .await
            .map_err(|(key, e)| EngineError::storage(key, e))?;
        self.pages = stored.pages;
        Ok(stored.written)
    }
}

/// A point object as read: a whole point (formats 2 and 3), or a record (format 4).
enum Stored {
    Full(Point),
    Record(Record),
}

impl Stored {
    /// Reads point object `id`; a missing one is `NoBackup` (forgotten meanwhile), one that
    /// is no point of a format this version reads is `Damaged`.
    async fn read(target: &dyn Target, id: &str) -> Result<Stored> {
        let key = layout::point_key(id);
        let bytes = match get_bytes(target, &key).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                return Err(EngineError::new(
                    ErrorKind::NoBackup,
                    format!(
                        "restore point {id} is not in {} (it may have been forgotten meanwhile): see `esbackup list`",
                        target.describe()
                    ),
                ))
            }
            Err(e) => return Err(EngineError::storage(&key, e)),
        };
        let damaged =
            |why: String| EngineError::damaged(format!("{key} in {}: {why}", target.describe()));
        #[derive(Deserialize)]
        struct Format {
            format: u32,
            id: String,
        }
        let head: Format = serde_json::from_slice(&bytes)
            .map_err(|e| damaged(format!("unreadable point: {e}")))?;
        if head.id != id {
            return Err(damaged(format!("it says it is point {}", head.id)));
        }
        if head.format < 4 {
            return Point::parse(&bytes).map(Stored::Full).map_err(damaged);
        }
        if !READABLE_FORMATS.contains(&head.format) {
            return Err(damaged(format!(
                "point format {} is not one this esbackup reads ({READABLE_FORMATS:?}): written by a newer esbackup",
                head.format
            )));
        }
        let record: Record = serde_json::from_slice(&bytes)
            .map_err(|e| damaged(format!("unreadable point record: {e}")))?;
        paged::check_record(&record).map_err(damaged)?;
        Ok(Stored::Record(record))
    }
}

/// The id of the point of the run with sequence number `seq`:
/// `p00000042-20261130T070842123Z-1a2b3c4d` (the `p` sorts these after the time-named ids of
/// format 2 in a plain listing; the time is for people, the order is the number).
pub fn new_point_id(seq: u64) -> String {
    format!("p{seq:08}-{}", new_run_id())
}

/// The sequence number in a point id, or `None` for a time-named id of format 2.
pub fn id_seq(id: &str) -> Option<u64> {
    let digits = id.strip_prefix('p')?.split('-').next()?;
    digits
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| digits.parse().ok())?
}

/// How point ids are ordered: the order their runs completed. Time-named ids (format 2, before
/// sequence numbers) come first, by name; then ids by sequence number.
pub fn run_order(id: &str) -> (u64, &str) {
    (id_seq(id).map_or(0, |s| s + 1), id)
}

/// `20261130T070842123Z-1a2b3c4d`: the time to the millisecond, then 8 random hex digits (the
/// id of a run, and of its lock object).
pub fn new_run_id() -> String {
    format!(
        "{}-{}",
        Utc::now().format("%Y%m%dT%H%M%S%3fZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

pub fn tool_version() -> String {
    format!("esbackup {}", env!("CARGO_PKG_VERSION"))
}

mod base64_bytes {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A checkpoint file holding `v`, stored inline.
    pub(crate) fn inline(v: i64) -> FileRef {
        FileRef {
            size: 8,
            content: Content::Inline {
                data: Bytes::copy_from_slice(&v.to_le_bytes()),
            },
            chunk: None,
            stamp: None,
        }
    }

    pub(crate) fn sample() -> Point {
        let mut files = BTreeMap::new();
        for (k, v) in [("writer.chk", 300i64), ("chaser.chk", 200)] {
            files.insert(k.to_string(), inline(v));
        }
        files.insert(
            "chunk-000000.000000".into(),
            FileRef {
                size: 4096,
                content: Content::Segments {
                    segments: vec![Segment {
                        stored_size: None,
                        key: ".esbackup/active/x".into(),
                        at: 0,
                        len: 428,
                        md5: "00".into(),
                    }],
                    data_end: 428,
                    tail: Window {
                        at: 0,
                        len: 428,
                        md5: "00".into(),
                    },
                },
                chunk: Some(ChunkRef {
                    id: "id".into(),
                    end: 0,
                    completed: false,
                }),
                stamp: None,
            },
        );
        // Format 3: a whole point in one object (what `Point::parse` reads).
        Point {
            format: 3,
            id: "p00000001-20261130T000000000Z-00000000".into(),
            seq: 1,
            time: Utc::now(),
            finished: Utc::now(),
            tool_version: tool_version(),
            host: "h".into(),
            source_db: "/db".into(),
            source_index: "/db/index".into(),
            chunk_size: 1000,
            checkpoints: Checkpoints {
                writer: 300,
                chaser: 200,
                epoch: -1,
                proposal: -1,
            },
            bytes_added: 0,
            plain_added: None,
            notes: vec![],
            files,
            pages: vec![],
            node_state: None,
            log_times: None,
        }
    }

    #[test]
    fn a_point_round_trips_through_json() {
        let p = sample();
        let json = serde_json::to_vec(&p).unwrap();
        assert_eq!(Point::parse(&json).unwrap(), p);
        let text = String::from_utf8(json).unwrap();
        assert!(text.contains("\"store\":\"inline\""), "{text}");
        assert!(text.contains("\"store\":\"segments\""), "{text}");
    }

    #[test]
    fn a_point_naming_files_outside_the_database_is_damaged() {
        let inline = |data: &'static [u8]| FileRef {
            size: data.len() as u64,
            content: Content::Inline {
                data: Bytes::from_static(data),
            },
            chunk: None,
            stamp: None,
        };
        for key in [
            "../escape.chk",
            "/abs/path/escape.chk",
            "index/../../escape.chk",
        ] {
            let mut p = sample();
            p.files.insert(key.into(), inline(b"12345678"));
            let why = Point::parse(&serde_json::to_vec(&p).unwrap()).unwrap_err();
            assert!(why.contains(key), "{why}");
        }
        let mut p = sample();
        p.files.insert("index".into(), inline(b"x"));
        p.files.insert("index-x".into(), inline(b"x"));
        assert!(Point::parse(&serde_json::to_vec(&p).unwrap()).is_err());
        let mut p = sample();
        p.files.insert("notes".into(), inline(b"x"));
        p.files.insert("notes/a".into(), inline(b"x"));
        let why = Point::parse(&serde_json::to_vec(&p).unwrap()).unwrap_err();
        assert!(why.contains("both as a file and as a folder"), "{why}");
        let mut p = sample();
        p.files.insert("tag.chk".into(), inline(b"1234"));
        p.files.get_mut("tag.chk").unwrap().size = 8;
        assert!(Point::parse(&serde_json::to_vec(&p).unwrap()).is_err());
        let mut p = sample();
        p.id = "../x".into();
        assert!(Point::parse(&serde_json::to_vec(&p).unwrap()).is_err());
    }

    #[test]
    fn a_point_of_format_2_still_reads_without_a_sequence_number() {
        let mut p = sample();
        p.format = 2;
        p.id = "20261130T000000000Z-00000000".into();
        let mut json = serde_json::to_value(&p).unwrap();
        json.as_object_mut().unwrap().remove("seq");
        let read = Point::parse(&serde_json::to_vec(&json).unwrap()).unwrap();
        assert_eq!((read.format, read.seq), (2, 0));
        p.format = 1;
        assert!(Point::parse(&serde_json::to_vec(&p).unwrap()).is_err());
    }

    #[test]
    fn points_are_ordered_by_sequence_after_time_named_ids() {
        let mut ids = vec![
            "p00000010-20200101T000000000Z-00000000",
            "p00000009-20300101T000000000Z-00000000",
            "20261130T000000000Z-00000000",
            "p100000000-20100101T000000000Z-00000000",
        ];
        ids.sort_by(|a, b| run_order(a).cmp(&run_order(b)));
        assert_eq!(
            ids,
            [
                "20261130T000000000Z-00000000",
                "p00000009-20300101T000000000Z-00000000",
                "p00000010-20200101T000000000Z-00000000",
                "p100000000-20100101T000000000Z-00000000",
            ]
        );
        assert_eq!(id_seq(&new_point_id(42)), Some(42));
        assert_eq!(id_seq("20261130T000000000Z-00000000"), None);
    }

    #[test]
    fn a_damaged_point_is_refused_not_restored() {
        let mut p = sample();
        p.chunk_size = 0;
        assert!(Point::parse(&serde_json::to_vec(&p).unwrap())
            .unwrap_err()
            .contains("chunk size of 0"));
        let mut p = sample();
        p.files.remove("chaser.chk");
        assert!(Point::parse(&serde_json::to_vec(&p).unwrap()).is_err());
        let mut p = sample();
        if let Content::Segments { data_end, .. } =
            &mut p.files.get_mut("chunk-000000.000000").unwrap().content
        {
            *data_end = 5000;
        }
        assert!(Point::parse(&serde_json::to_vec(&p).unwrap()).is_err());
        assert!(Point::parse(b"{").is_err());
    }
}
