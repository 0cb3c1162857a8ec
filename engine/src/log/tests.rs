//! The log reader on chunks built byte by byte from docs/FORMAT.md: unscavenged, scavenged and
//! merged (positions from the records and their posmap), a growing chunk with its zero tail, and
//! damage.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use futures::TryStreamExt;
use uuid::Uuid;

use super::*;
use crate::error::ErrorKind;
use crate::format::chunk::{self, ChunkFooter, ChunkHeader, FOOTER_LEN, HEADER_LEN};
use crate::format::record::encode;
use crate::format::record::{Commit, PrepareFlags, UNIX_EPOCH_TICKS};
use crate::point::{Checkpoints, ChunkRef, Content, FileRef, Segment, Window};
use crate::testing::MemoryTarget;

const SIZE: u32 = 4096;

/// Framed records laid from `start`, each with its position.
fn lay(start: i64, payloads: impl Fn(i64, usize) -> Option<Vec<u8>>) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = start;
    for i in 0.. {
        let Some(p) = payloads(pos, i) else { break };
        let framed = encode::frame(&p);
        let next = pos + framed.len() as i64;
        out.push((pos, framed));
        pos = next;
    }
    out
}

/// Events of `stream` numbered from 0, `n` of them, from position `start`.
fn events(start: i64, stream: &'static str, n: usize) -> Vec<(i64, Vec<u8>)> {
    lay(start, |pos, i| {
        (i < n).then(|| {
            encode::prepare(&encode::event(
                pos,
                stream,
                i as i64,
                "Deposited",
                b"{\"a\":1}",
            ))
        })
    })
}

fn header(start: u32, end: u32, scavenged: bool) -> ChunkHeader {
    ChunkHeader {
        min_compatible_version: 3,
        chunk_size: SIZE,
        start,
        end,
        is_scavenged: scavenged,
        chunk_id: Uuid::from_u128(start as u128),
        version: 4,
        transform: 0,
    }
}

/// A completed chunk file: header, records, posmap, padding, footer (MD5 not needed here).
fn completed(h: &ChunkHeader, records: &[(i64, Vec<u8>)], posmap: bool) -> Vec<u8> {
    let mut file = h.encode().to_vec();
    let mut map = Vec::new();
    let mut logical = 0;
    for (pos, framed) in records {
        map.extend_from_slice(&((file.len() as u64 - HEADER_LEN) as i32).to_le_bytes());
        map.extend_from_slice(&(pos - h.start_position()).to_le_bytes());
        file.extend_from_slice(framed);
        logical = pos + framed.len() as i64 - h.start_position();
    }
    let physical = file.len() as u64 - HEADER_LEN;
    if posmap {
        file.extend_from_slice(&map);
    }
    let len = chunk::align(file.len() as u64 + FOOTER_LEN);
    file.resize((len - FOOTER_LEN) as usize, 0);
    let footer = ChunkFooter {
        flags: 3,
        physical_data_size: physical as i32,
        logical_data_size: logical,
        map_size: if posmap { map.len() as i32 } else { 0 },
        md5: [0; 16],
    };
    file.extend_from_slice(&footer.encode());
    file
}

/// A point over `chunks` (key, bytes, end chunk, completed) with `writer`; objects go to `t`.
fn point(t: &MemoryTarget, chunks: Vec<(&str, Vec<u8>, u32, bool)>, writer: i64) -> Point {
    let mut files = BTreeMap::new();
    for (key, bytes, end, completed) in chunks {
        t.insert(key, bytes.clone());
        let content = Content::Object {
            stored_size: None,
            key: key.to_string(),
            md5: String::new(),
        };
        files.insert(
            key.to_string(),
            chunk_file(bytes.len() as u64, content, end, completed),
        );
    }
    for k in ["writer.chk", "chaser.chk"] {
        files.insert(k.to_string(), crate::point::tests::inline(writer));
    }
    Point {
        format: 4,
        id: "p00000001-20261130T000000000Z-00000000".into(),
        seq: 1,
        time: Utc::now(),
        finished: Utc::now(),
        tool_version: "t".into(),
        host: "h".into(),
        source_db: "/db".into(),
        source_index: "/db/index".into(),
        chunk_size: SIZE,
        checkpoints: Checkpoints {
            writer,
            chaser: writer,
            epoch: -1,
            proposal: -1,
        },
        bytes_added: 0,
        plain_added: None,
        notes: vec![],
        node_state: None,
        log_times: None,
        files,
        pages: vec![],
    }
}

fn chunk_file(size: u64, content: Content, end: u32, completed: bool) -> FileRef {
    FileRef {
        size,
        content,
        chunk: Some(ChunkRef {
            id: "x".into(),
            end,
            completed,
        }),
        stamp: None,
    }
}

/// A growing chunk `start`: `records` stored as two segments, zeros after them.
fn growing(t: &MemoryTarget, p: &mut Point, start: u32, records: &[(i64, Vec<u8>)]) {
    let mut data = header(start, start, false).encode().to_vec();
    for (_, framed) in records {
        data.extend_from_slice(framed);
    }
    let key = chunk::ChunkName { start, version: 0 }.to_string();
    let cut = data.len() / 2;
    let segments: Vec<Segment> = [(0, &data[..cut]), (cut, &data[cut..])]
        .into_iter()
        .enumerate()
        .map(|(i, (at, bytes))| {
            let seg = format!(".esbackup/active/{key}/x/{i}");
            t.insert(&seg, bytes.to_vec());
            Segment {
                stored_size: None,
                key: seg,
                at: at as u64,
                len: bytes.len() as u64,
                md5: String::new(),
            }
        })
        .collect();
    let content = Content::Segments {
        segments,
        data_end: data.len() as u64,
        tail: Window {
            at: 0,
            len: 0,
            md5: String::new(),
        },
    };
    p.files.insert(
        key,
        chunk_file(chunk::active_file_len(SIZE), content, start, false),
    );
}

async fn read(t: &MemoryTarget, p: &Point, filter: LogFilter) -> Result<Vec<LogRecord>> {
    point_records(Arc::new(t.clone()), p, filter)
        .try_collect()
        .await
}

fn positions(recs: &[LogRecord]) -> Vec<i64> {
    recs.iter().map(|r| r.position).collect()
}

#[tokio::test]
async fn an_unscavenged_chunk_and_the_growing_one_up_to_the_writer() {
    let t = MemoryTarget::new();
    let first = events(0, "account-1", 20);
    let second = events(SIZE as i64, "account-2", 5);
    let end = second.last().map(|(p, f)| p + f.len() as i64).unwrap();
    let c0 = completed(&header(0, 0, false), &first, false);
    let mut p = point(&t, vec![("chunk-000000.000000", c0, 0, true)], end);
    growing(&t, &mut p, 1, &second);
    let recs = read(&t, &p, LogFilter::default()).await.unwrap();
    let expected: Vec<i64> = first.iter().chain(&second).map(|(pos, _)| *pos).collect();
    assert_eq!(positions(&recs), expected);
    let last = recs.last().unwrap();
    assert_eq!((last.next_position, last.event_number), (end, Some(4)));
    assert_eq!(last.chunk, "chunk-000001.000000");
    assert_eq!(
        last.flags.names(),
        [
            "data",
            "transaction_begin",
            "transaction_end",
            "committed",
            "json"
        ]
    );

    // A writer checkpoint before the last two records of the growing chunk: they do not count.
    let mut earlier = p.clone();
    earlier.checkpoints.writer = second[3].0;
    let recs = read(&t, &earlier, LogFilter::default()).await.unwrap();
    assert_eq!(recs.len(), first.len() + 3);
    // One inside a record is damage: the log would end inside it.
    earlier.checkpoints.writer = second[3].0 + 20;
    let e = read(&t, &earlier, LogFilter::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Damaged, "{e}");
    assert!(
        e.to_string().contains("runs past the end of the data"),
        "{e}"
    );
}

#[tokio::test]
async fn a_merged_scavenged_chunk_gives_each_record_its_own_position() {
    let t = MemoryTarget::new();
    let one = events(SIZE as i64, "a", 25);
    let two = events(2 * SIZE as i64, "b", 25);
    // Scavenging kept every third record of chunks 1 and 2, merged into one file.
    let kept: Vec<(i64, Vec<u8>)> = one.iter().chain(&two).step_by(3).cloned().collect();
    let merged = completed(&header(1, 2, true), &kept, true);
    let writer = 3 * SIZE as i64;
    let mut p = point(
        &t,
        vec![("chunk-000001.000002", merged.clone(), 2, true)],
        writer,
    );
    growing(&t, &mut p, 3, &[]);
    let recs = read(&t, &p, LogFilter::default()).await.unwrap();
    assert_eq!(
        positions(&recs),
        kept.iter().map(|(pos, _)| *pos).collect::<Vec<_>>()
    );
    assert!(recs.iter().any(|r| r.position >= 2 * SIZE as i64));

    // A posmap entry that disagrees with its record is damage, named with its offset.
    let mut bad = merged.clone();
    let map_at = HEADER_LEN as usize + kept.iter().map(|(_, f)| f.len()).sum::<usize>();
    bad[map_at + 12 + 4] ^= 0x40;
    let p = point(&t, vec![("chunk-000001.000002", bad, 2, true)], writer);
    let e = read(&t, &p, LogFilter::default()).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("chunk-000001.000002 of restore point"),
        "{text}"
    );
    assert!(text.contains(&format!("at byte {}", map_at + 12)), "{text}");
}

#[tokio::test]
async fn damaged_lengths_are_reported_with_the_object_and_offset() {
    let t = MemoryTarget::new();
    let recs = events(0, "x", 10);
    let good = completed(&header(0, 0, false), &recs, false);
    let third = HEADER_LEN as usize + recs[0].1.len() + recs[1].1.len();
    for (what, at, value) in [
        ("record length -3", third, (-3i32).to_le_bytes()),
        ("record length 9000", third, 9000i32.to_le_bytes()),
        (
            "length suffix",
            third + recs[2].1.len() - 4,
            77i32.to_le_bytes(),
        ),
    ] {
        let mut bad = good.clone();
        bad[at..at + 4].copy_from_slice(&value);
        let p = point(&t, vec![("chunk-000000.000000", bad, 0, true)], SIZE as i64);
        let e = read(&t, &p, LogFilter::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Damaged);
        let text = e.to_string();
        assert!(text.contains(what), "{what}: {text}");
        assert!(
            text.contains("object chunk-000000.000000 in memory"),
            "{text}"
        );
        assert!(text.contains(&format!("at byte {at}")), "{what}: {text}");
    }
    // A record whose own position field is not where it lies.
    let mut moved = good.clone();
    moved[third + 6] ^= 1;
    let p = point(
        &t,
        vec![("chunk-000000.000000", moved, 0, true)],
        SIZE as i64,
    );
    let e = read(&t, &p, LogFilter::default()).await.unwrap_err();
    assert!(e.to_string().contains("says log position"), "{e}");
}

/// Three events of `gone`, its tombstone, a soft delete of `soft`, then a transaction of `tx`
/// (a prepare not committed at once and its Commit); a minute apart.
fn deleting_log() -> Vec<(i64, Vec<u8>)> {
    let soft = br#"{"$tb":9223372036854775807}"#;
    let began = std::cell::Cell::new(0);
    lay(0, |pos, i| {
        let ticks = UNIX_EPOCH_TICKS + (i as i64) * 600_000_000; // a minute apart
        let mut p = match i {
            0..=2 => encode::event(pos, "gone", i as i64, "Opened", b"{}"),
            3 => {
                let mut tomb = encode::event(pos, "gone", 0, "$streamDeleted", b"");
                tomb.flags = PrepareFlags(tomb.flags.0 | PrepareFlags::STREAM_DELETE);
                tomb.expected_version = i64::MAX - 1;
                tomb
            }
            4 => encode::event(pos, "$$soft", 0, METADATA_EVENT_TYPE, soft),
            5 => {
                // A transaction of one prepare not committed at once, then its Commit.
                began.set(pos);
                let mut p = encode::event(pos, "tx", 0, "Opened", b"{}");
                p.flags = PrepareFlags(PrepareFlags::DATA | PrepareFlags::TRANSACTION_BEGIN);
                p
            }
            6 => {
                let c = Commit {
                    log_position: pos,
                    transaction_position: began.get(),
                    first_event_number: 0,
                    correlation_id: Uuid::nil(),
                    ticks,
                };
                return Some(encode::commit(&c));
            }
            _ => return None,
        };
        p.ticks = ticks;
        Some(encode::prepare(&p))
    })
}

#[tokio::test]
async fn deletions_commits_and_filters() {
    let t = MemoryTarget::new();
    let recs = deleting_log();
    let file = completed(&header(0, 0, false), &recs, false);
    let p = point(
        &t,
        vec![("chunk-000000.000000", file, 0, true)],
        SIZE as i64,
    );
    let all = read(&t, &p, LogFilter::default()).await.unwrap();
    assert_eq!(all.len(), 7);
    assert_eq!(all[6].kind, RecordKind::Commit);
    assert_eq!(all[5].event_number, None, "numbered by its commit");
    let commit = &all[6];
    assert_eq!(commit.transaction_position, Some(recs[5].0));
    assert_eq!(
        (commit.stream.as_deref(), commit.event_number),
        (Some("tx"), Some(0))
    );
    let deletes = LogFilter {
        deletes: true,
        ..LogFilter::default()
    };
    let found = read(&t, &p, deletes.clone()).await.unwrap();
    assert_eq!(positions(&found), [recs[3].0, recs[4].0]);
    let kinds: Vec<DeletionKind> = found
        .iter()
        .map(|r| r.deletion.as_ref().unwrap().kind)
        .collect();
    assert_eq!(kinds, [DeletionKind::Tombstone, DeletionKind::SoftDelete]);
    assert_eq!(found[0].event_number, Some(i64::MAX));

    let of = |s: &str| LogFilter {
        stream: Some(s.into()),
        ..LogFilter::default()
    };
    assert_eq!(read(&t, &p, of("gone")).await.unwrap().len(), 4);
    assert_eq!(
        positions(&read(&t, &p, of("soft")).await.unwrap()),
        [recs[4].0]
    );
    let window = LogFilter {
        from: Some(Bound::Position(recs[1].0)),
        to: Some(Bound::Position(recs[3].0)),
        ..LogFilter::default()
    };
    assert_eq!(
        positions(&read(&t, &p, window).await.unwrap()),
        [recs[1].0, recs[2].0]
    );
    let minute =
        |m: i64| crate::format::record::ticks_to_time(UNIX_EPOCH_TICKS + m * 600_000_000).unwrap();
    let by_time = LogFilter {
        from: Some(Bound::Time(minute(2))),
        to: Some(Bound::Time(minute(4))),
        ..deletes
    };
    assert_eq!(
        positions(&read(&t, &p, by_time).await.unwrap()),
        [recs[3].0]
    );
}

#[test]
fn the_highest_version_of_each_chunk_is_read_and_merged_ones_hide_the_rest() {
    let t = MemoryTarget::new();
    let c = |end| (completed(&header(0, end, end > 0), &[], end > 0), end);
    let mut p = point(&t, vec![], 0);
    for (key, (bytes, end)) in [
        ("chunk-000000.000000", c(0)),
        ("chunk-000001.000000", c(0)),
        ("chunk-000001.000001", c(2)),
        ("chunk-000002.000000", c(0)),
        ("chunk-000003.000000", c(0)),
    ] {
        let content = Content::Object {
            stored_size: None,
            key: key.into(),
            md5: String::new(),
        };
        p.files.insert(
            key.into(),
            chunk_file(bytes.len() as u64, content, end, true),
        );
    }
    let keys: Vec<String> = point_reader::chunk_files(&p)
        .into_iter()
        .map(|c| c.key)
        .collect();
    assert_eq!(
        keys,
        [
            "chunk-000000.000000",
            "chunk-000001.000001",
            "chunk-000003.000000"
        ]
    );
}

#[tokio::test]
async fn an_open_chunk_stored_whole_counts_up_to_the_writer_and_its_zero_tail_is_no_record() {
    let t = MemoryTarget::new();
    let recs = events(0, "a", 8);
    let end = recs.last().map(|(p, f)| p + f.len() as i64).unwrap();
    let mut file = header(0, 0, false).encode().to_vec();
    recs.iter().for_each(|(_, f)| file.extend_from_slice(f));
    file.resize(chunk::active_file_len(SIZE) as usize, 0);
    let mut p = point(&t, vec![("chunk-000000.000000", file, 0, false)], end);
    assert_eq!(read(&t, &p, LogFilter::default()).await.unwrap().len(), 8);
    // A writer checkpoint past the records: the zeros after them are no record.
    p.checkpoints.writer = end + 100;
    let e = read(&t, &p, LogFilter::default()).await.unwrap_err();
    let at = HEADER_LEN as i64 + end;
    assert!(
        e.to_string()
            .contains(&format!("at byte {at}: record length 0")),
        "{e}"
    );
}

#[tokio::test]
async fn a_scavenged_chunk_with_the_old_8_byte_posmap() {
    let t = MemoryTarget::new();
    let kept: Vec<(i64, Vec<u8>)> = events(SIZE as i64, "a", 12)
        .into_iter()
        .step_by(2)
        .collect();
    let h = header(1, 1, true);
    let mut file = h.encode().to_vec();
    let mut map = Vec::new();
    for (pos, framed) in &kept {
        let actual = file.len() as u64 - HEADER_LEN;
        map.extend_from_slice(&(((pos - h.start_position()) as u64) << 32 | actual).to_le_bytes());
        file.extend_from_slice(framed);
    }
    let physical = (file.len() as u64 - HEADER_LEN) as i32;
    file.extend_from_slice(&map);
    let len = chunk::align(file.len() as u64 + FOOTER_LEN);
    file.resize((len - FOOTER_LEN) as usize, 0);
    // Footer without the 12-byte flag: i32 logical size at 5, map size at 9.
    let mut footer = [0u8; FOOTER_LEN as usize];
    footer[0] = ChunkFooter::COMPLETED;
    footer[1..5].copy_from_slice(&physical.to_le_bytes());
    footer[5..9].copy_from_slice(&(SIZE as i32).to_le_bytes());
    footer[9..13].copy_from_slice(&(map.len() as i32).to_le_bytes());
    file.extend_from_slice(&footer);
    let p = point(
        &t,
        vec![("chunk-000001.000001", file, 1, true)],
        2 * SIZE as i64,
    );
    let recs = read(&t, &p, LogFilter::default()).await.unwrap();
    assert_eq!(
        positions(&recs),
        kept.iter().map(|(p, _)| *p).collect::<Vec<_>>()
    );
}
