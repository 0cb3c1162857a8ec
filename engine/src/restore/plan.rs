//! What a restore of one point does, decided before the destination is touched: every file of
//! the point and where its bytes come from; and every stored object it needs, checked against a
//! listing so that a damaged location fails before anything is written.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::format::checkpoint;
use crate::layout::{classify, Kind};
use crate::point::{Content, NeededObject, Point, Segment};

/// One file to restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RestoreItem {
    /// Its key (path relative to the db folder; `index/...` for the index folder).
    pub key: String,
    pub size: u64,
    pub source: ItemSource,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ItemSource {
    Object {
        key: String,
        md5: String,
    },
    Inline(Bytes),
    /// Segments laid at their offsets; zeros from `data_end` to the file's size.
    Segments {
        segments: Vec<Segment>,
        data_end: u64,
    },
}

/// The files of a restore, in the order that keeps a half-done restore from looking like a
/// database: data files first (written under temporary names and moved into place after
/// `writer.chk`), then the checkpoints, `truncate.chk` last.
#[derive(Clone, Debug)]
pub(crate) struct RestorePlan {
    pub data: Vec<RestoreItem>,
    /// Checkpoints in write order: writer, then epoch, proposal, others, chaser.
    pub checkpoints: Vec<RestoreItem>,
    /// The value `truncate.chk` gets: the point's chaser.
    pub truncate: i64,
}

impl RestorePlan {
    pub fn bytes(&self) -> u64 {
        self.data.iter().map(|i| i.size).sum()
    }
}

/// The plan for `point`.
pub(crate) fn plan(point: &Point) -> RestorePlan {
    const ORDER: [&str; 4] = checkpoint::WRITE_ORDER;
    let mut data = Vec::new();
    let mut checkpoints = Vec::new();
    for (key, file) in &point.files {
        let source = match &file.content {
            Content::Object { key, md5, .. } => ItemSource::Object {
                key: key.clone(),
                md5: md5.clone(),
            },
            Content::Inline { data } => ItemSource::Inline(data.clone()),
            Content::Segments {
                segments, data_end, ..
            } => ItemSource::Segments {
                segments: segments.clone(),
                data_end: *data_end,
            },
        };
        let item = RestoreItem {
            key: key.clone(),
            size: file.size,
            source,
        };
        match classify(key) {
            Kind::Checkpoint(name) if name != checkpoint::TRUNCATE => checkpoints.push(item),
            Kind::Checkpoint(_) => {}
            _ => data.push(item),
        }
    }
    checkpoints.sort_by_key(|i| {
        ORDER
            .iter()
            .position(|o| *o == i.key)
            .map_or(2, |p| if p == 3 { 9 } else { p })
    });
    RestorePlan {
        data,
        checkpoints,
        truncate: point.checkpoints.chaser,
    }
}

/// Objects the point needs that the listing lacks or holds with another size than the stored
/// size the point records.
pub(crate) fn missing(point: &Point, listing: &BTreeMap<String, u64>) -> Vec<String> {
    point
        .objects()
        .into_iter()
        .filter_map(
            |NeededObject {
                 key, stored_size, ..
             }| match listing.get(&key) {
                Some(&found) if found == stored_size => None,
                Some(&found) => Some(format!("{key} ({found} bytes, {stored_size} expected)")),
                None => Some(key),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::tests::inline;
    use crate::point::{FileRef, Window};

    fn object(key: &str, size: u64) -> FileRef {
        FileRef {
            size,
            content: Content::Object {
                stored_size: None,
                key: key.into(),
                md5: "m".into(),
            },
            chunk: None,
            stamp: None,
        }
    }

    fn point() -> Point {
        let mut files = BTreeMap::new();
        for (k, v) in [
            ("chaser.chk", 100),
            ("writer.chk", 150),
            ("epoch.chk", 0),
            ("proposal.chk", 3),
            ("truncate.chk", -1),
        ] {
            files.insert(k.to_string(), inline(v));
        }
        files.insert(
            "chunk-000000.000000".into(),
            object("chunk-000000.000000", 4096),
        );
        files.insert("index/indexmap".into(), inline(0));
        files.insert(
            "chunk-000001.000000".into(),
            FileRef {
                size: 8192,
                content: Content::Segments {
                    segments: vec![Segment {
                        stored_size: None,
                        key: ".esbackup/active/s".into(),
                        at: 0,
                        len: 300,
                        md5: "s".into(),
                    }],
                    data_end: 300,
                    tail: Window {
                        at: 0,
                        len: 300,
                        md5: "s".into(),
                    },
                },
                chunk: None,
                stamp: None,
            },
        );
        let mut p = crate::point::tests::sample();
        p.files = files;
        p.checkpoints.chaser = 100;
        p
    }

    #[test]
    fn checkpoints_come_last_writer_first_chaser_last_and_truncate_from_the_chaser() {
        let plan = plan(&point());
        let order: Vec<&str> = plan.checkpoints.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            order,
            ["writer.chk", "epoch.chk", "proposal.chk", "chaser.chk"]
        );
        assert_eq!(plan.truncate, 100);
        let data: Vec<&str> = plan.data.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            data,
            [
                "chunk-000000.000000",
                "chunk-000001.000000",
                "index/indexmap"
            ]
        );
        assert!(!data.iter().any(|k| k.ends_with(".chk")));
    }

    #[test]
    fn every_missing_or_short_object_is_named() {
        let p = point();
        let mut listing = BTreeMap::new();
        listing.insert("chunk-000000.000000".to_string(), 4096);
        listing.insert(".esbackup/active/s".to_string(), 300);
        assert!(missing(&p, &listing).is_empty());
        listing.insert("chunk-000000.000000".to_string(), 4000);
        listing.remove(".esbackup/active/s");
        let m = missing(&p, &listing);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(
            m.iter().any(|x| x.contains("4000 bytes, 4096 expected")),
            "{m:?}"
        );
    }
}
