//! The destination's root mirror after a copy: the root of a plain location is the newest
//! point's database (README, "The backup location"), so a copy that brings a newer point
//! writes that point's root copies, in the order a backup writes them.

use std::collections::BTreeMap;

use crate::backup::Mirror;
use crate::format::{checkpoint, indexmap};
use crate::point::{Content, NeededObject, Point};

/// What a key must hold for a point there to be restorable (object key → the object as a
/// destination point records it).
pub(super) type Vouched = BTreeMap<String, NeededObject>;

/// The writes that turn the root mirror of `previous` (the destination's newest point before
/// the copy) into that of `newest`. A root name some point of the destination names as a
/// stored object is never written or deleted (as a backup puts such a file under
/// `.esbackup/data/` and leaves the root name alone); a root copy already there, of the same
/// stored object and size, is not sent again.
pub(super) fn writes(
    newest: &Point,
    previous: Option<&Point>,
    held: &BTreeMap<String, u64>,
    vouched: &Vouched,
) -> Vec<Mirror> {
    let mut deletes = Vec::new();
    for (key, f) in previous.map(|p| p.files.iter()).into_iter().flatten() {
        if is_root_copy(key, &f.content)
            && !newest.files.contains_key(key)
            && !vouched.contains_key(key)
        {
            deletes.push(Mirror::Delete { key: key.clone() });
        }
    }
    let mut copies = Vec::new();
    let mut bytes = Vec::new();
    for (key, f) in &newest.files {
        if vouched.contains_key(key) {
            continue;
        }
        match &f.content {
            Content::Inline { data } => bytes.push(Mirror::Bytes {
                key: key.clone(),
                data: data.clone(),
            }),
            Content::Object { key: stored, .. } if stored != key => {
                let same = previous
                    .and_then(|p| p.files.get(key))
                    .is_some_and(|old| old.content == f.content);
                let listed = f.objects().first().map(|o| o.stored_size);
                if !(same && held.get(key).copied() == listed) {
                    copies.push(Mirror::Copy {
                        from: stored.clone(),
                        to: key.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    bytes.sort_by_key(|m| match m {
        Mirror::Bytes { key, .. } => write_order(key),
        _ => 0,
    });
    deletes.into_iter().chain(copies).chain(bytes).collect()
}

/// A root name that holds a copy of what the point stores elsewhere (or in itself).
fn is_root_copy(key: &str, content: &Content) -> bool {
    match content {
        Content::Inline { .. } => true,
        Content::Object { key: stored, .. } => stored != key,
        Content::Segments { .. } => false,
    }
}

/// Data before the checkpoints that vouch for it: other small files first, then the
/// checkpoints writer first and chaser last (so chaser ≤ writer holds at every moment), then
/// `indexmap`.
fn write_order(key: &str) -> u8 {
    const ORDER: [&str; 4] = checkpoint::WRITE_ORDER;
    if let Some(i) = ORDER.iter().position(|c| *c == key) {
        return 2 + i as u8 * 2;
    }
    if key == format!("index/{}", indexmap::FILE_NAME) {
        return 20;
    }
    if key.ends_with(".chk") && !key.contains('/') {
        return 5; // tag.chk and the like: after the writer, before the chaser
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::tests::sample;

    fn point(files: &[(&str, Content)]) -> Point {
        let mut p = sample();
        p.files.clear();
        for (key, content) in files {
            let size = match content {
                Content::Inline { data } => data.len() as u64,
                _ => 10,
            };
            p.files.insert(
                key.to_string(),
                crate::point::FileRef {
                    size,
                    content: content.clone(),
                    chunk: None,
                    stamp: None,
                },
            );
        }
        p
    }

    fn bytes(b: &'static [u8]) -> Content {
        Content::Inline {
            data: bytes::Bytes::from_static(b),
        }
    }

    fn object(key: &str) -> Content {
        Content::Object {
            stored_size: None,
            key: key.into(),
            md5: "m".into(),
        }
    }

    fn keys(writes: &[Mirror]) -> Vec<String> {
        writes
            .iter()
            .map(|m| match m {
                Mirror::Bytes { key, .. } => format!("put {key}"),
                Mirror::Copy { from, to } => format!("copy {from} {to}"),
                Mirror::Delete { key } => format!("delete {key}"),
            })
            .collect()
    }

    #[test]
    fn writes_data_then_checkpoints_writer_first_chaser_last_then_indexmap() {
        let newest = point(&[
            ("chaser.chk", bytes(b"c")),
            ("index/indexmap", bytes(b"i")),
            ("writer.chk", bytes(b"w")),
            ("epoch.chk", bytes(b"e")),
            (
                "index/scavenging/scavenging.db",
                object(".esbackup/data/index/scavenging/scavenging.db/r1"),
            ),
            ("chunk-000000.000000", object("chunk-000000.000000")),
        ]);
        let w = writes(&newest, None, &BTreeMap::new(), &Vouched::new());
        assert_eq!(
            keys(&w),
            [
                "copy .esbackup/data/index/scavenging/scavenging.db/r1 index/scavenging/scavenging.db",
                "put writer.chk",
                "put epoch.chk",
                "put chaser.chk",
                "put index/indexmap",
            ]
        );
    }

    #[test]
    fn drops_root_copies_the_newest_lacks_but_never_a_name_a_point_needs() {
        let previous = point(&[("side.txt", bytes(b"s")), ("gone.txt", bytes(b"g"))]);
        let newest = point(&[("writer.chk", bytes(b"w"))]);
        let vouched: Vouched = [(
            "side.txt".to_string(),
            NeededObject {
                key: "side.txt".into(),
                size: 1,
                md5: "m".into(),
                stored_size: 1,
            },
        )]
        .into();
        let w = writes(&newest, Some(&previous), &BTreeMap::new(), &vouched);
        assert_eq!(keys(&w), ["delete gone.txt", "put writer.chk"]);
    }

    #[test]
    fn an_unchanged_root_copy_is_not_sent_again() {
        let stored = ".esbackup/data/index/stream-existence/streamExistenceFilter.dat/r1";
        let previous = point(&[(
            "index/stream-existence/streamExistenceFilter.dat",
            object(stored),
        )]);
        let held: BTreeMap<String, u64> = [(
            "index/stream-existence/streamExistenceFilter.dat".to_string(),
            10,
        )]
        .into();
        let w = writes(&previous.clone(), Some(&previous), &held, &Vouched::new());
        assert!(w.is_empty(), "{:?}", keys(&w));
        let w = writes(
            &previous.clone(),
            Some(&previous),
            &BTreeMap::new(),
            &Vouched::new(),
        );
        assert_eq!(w.len(), 1, "a lost root copy is written again");
    }
}
