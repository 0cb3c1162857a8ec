//! The checker accepts a clean restore and rejects each bad state with a specific message.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use esbackup_engine::format::checkpoint;
use esbackup_engine::format::chunk::{ChunkInfo, ChunkName};
use esbackup_engine::format::indexmap::IndexMap;
use esdb_sim::{check, chunk_writer, CheckOptions, CheckReport, Checkpoints};
use uuid::Uuid;

use common::*;

const CS: i64 = 64 * 1024;

/// A settled, append-only database with `truncate.chk` := `chaser.chk` (a clean restore).
struct Restored {
    _dir: tempfile::TempDir,
    db: PathBuf,
    index: PathBuf,
    cps: Checkpoints,
}

fn restored(seed: u64) -> Restored {
    let dir = scratch();
    let node = settled_node(dir.path(), seed, 700, 0);
    let cps = node.checkpoints();
    let (db, index) = (node.db_dir().to_path_buf(), node.index_dir().to_path_buf());
    drop(node);
    checkpoint::write(&db.join("truncate.chk"), cps.chaser).unwrap();
    Restored {
        _dir: dir,
        db,
        index,
        cps,
    }
}

fn restore_opts() -> CheckOptions {
    CheckOptions {
        archive: false,
        expect_truncate_equals_chaser: true,
    }
}

fn run(r: &Restored, opts: &CheckOptions) -> CheckReport {
    check(&r.db, &r.index, opts)
}

fn assert_violation(report: &CheckReport, needle: &str) {
    assert!(
        report.violations.iter().any(|v| v.contains(needle)),
        "expected a violation containing {needle:?}, got {:#?}",
        report.violations
    );
}

/// The checker found `expected` and nothing else.
fn assert_only_violation(report: &CheckReport, expected: &str) {
    assert_eq!(report.violations, [expected]);
}

fn chunk_path(db: &Path, start: u32, version: u32) -> PathBuf {
    db.join(ChunkName { start, version }.to_string())
}

fn writer_chunk(r: &Restored) -> u32 {
    (r.cps.writer / CS) as u32
}

/// Puts an empty active chunk file `chunk-start.version` into `db`.
fn add_chunk(db: &Path, start: u32) {
    let header = chunk_writer::header(CS as u32, start, start, false, Uuid::from_u128(7), false);
    chunk_writer::ActiveChunk::create(db, header, Uuid::from_u128(8)).unwrap();
}

/// The checker's report (default options) on `r` with `truncate.chk` at -1, as a node's own
/// folder has it, and an empty chunk file `beyond` chunks after the writer chunk.
fn untruncated_with_chunk_beyond(r: &Restored, beyond: u32) -> CheckReport {
    checkpoint::write(&r.db.join("truncate.chk"), -1).unwrap();
    add_chunk(&r.db, writer_chunk(r) + beyond);
    run(r, &CheckOptions::default())
}

fn first_table(r: &Restored) -> String {
    let map = IndexMap::parse(&fs::read(r.index.join("indexmap")).unwrap()).unwrap();
    map.tables[0].file.clone()
}

#[test]
fn clean_restore_passes() {
    let r = restored(1);
    let report = run(&r, &restore_opts());
    assert!(report.is_ok(), "{:#?}", report.violations);
    assert_eq!(report.writer, r.cps.chaser);
    assert_eq!(report.chaser, r.cps.chaser);
    assert_eq!(report.chunks as u32, writer_chunk(&r) + 1);
    assert!(writer_chunk(&r) >= 2, "the fixture spans several chunks");
    assert!(report.ptables >= 1);
}

#[test]
fn missing_chunk_below_writer_is_rejected() {
    let r = restored(2);
    fs::remove_file(chunk_path(&r.db, 1, 0)).unwrap();
    let report = run(&r, &restore_opts());
    assert_violation(
        &report,
        &format!(
            "missing chunk #1 below the writer chunk #{}",
            writer_chunk(&r)
        ),
    );
}

#[test]
fn archive_mode_tolerates_missing_leading_chunks_only() {
    let r = restored(3);
    fs::remove_file(chunk_path(&r.db, 0, 0)).unwrap();
    let archive = CheckOptions {
        archive: true,
        ..restore_opts()
    };
    let report = run(&r, &archive);
    assert!(report.is_ok(), "{:#?}", report.violations);
    assert_violation(&run(&r, &restore_opts()), "missing chunk #0");
    fs::remove_file(chunk_path(&r.db, 2, 0)).unwrap();
    assert_violation(&run(&r, &archive), "missing chunk #2");
}

#[test]
fn extra_chunk_beyond_writer_with_truncate_set_is_rejected() {
    let r = restored(4);
    add_chunk(&r.db, writer_chunk(&r) + 1);
    let report = run(&r, &restore_opts());
    assert_violation(
        &report,
        "excessive chunk files exist beyond the writer chunk",
    );
    assert_violation(
        &report,
        &ChunkName {
            start: writer_chunk(&r) + 1,
            version: 0,
        }
        .to_string(),
    );
}

#[test]
fn one_excessive_chunk_is_tolerated_without_truncation() {
    let r = restored(5);
    let report = untruncated_with_chunk_beyond(&r, 1);
    assert!(report.is_ok(), "{:#?}", report.violations);
}

#[test]
fn unexpected_file_beyond_writer_is_rejected() {
    let r = restored(6);
    let report = untruncated_with_chunk_beyond(&r, 2);
    assert_violation(
        &report,
        &format!(
            "Unexpected files beyond the writer chunk #{}: {}",
            writer_chunk(&r),
            ChunkName {
                start: writer_chunk(&r) + 2,
                version: 0
            }
        ),
    );
}

#[test]
fn corrupt_completed_chunk_md5_is_rejected() {
    let r = restored(7);
    flip_byte(&chunk_path(&r.db, 1, 0), 300);
    let report = run(&r, &restore_opts());
    assert_only_violation(
        &report,
        "chunk-000001.000000: MD5 does not match the completed chunk",
    );
}

#[test]
fn corrupt_ptable_is_rejected() {
    let r = restored(8);
    let table = first_table(&r);
    flip_byte(&r.index.join(&table), 140);
    let report = run(&r, &restore_opts());
    assert_violation(&report, &format!("PTable {table}: MD5 does not match"));
}

#[test]
fn indexmap_md5_mismatch_is_rejected() {
    let r = restored(9);
    let path = r.index.join("indexmap");
    let mut bytes = fs::read(&path).unwrap();
    assert_eq!(&bytes[32..35], b"\n2\n");
    bytes[33] = b'3';
    fs::write(&path, bytes).unwrap();
    let report = run(&r, &restore_opts());
    assert_only_violation(&report, "indexmap: indexmap MD5 does not match its content");
}

#[test]
fn indexmap_naming_a_missing_table_is_rejected() {
    let r = restored(10);
    let table = first_table(&r);
    chunk_writer::make_writable(&r.index.join(&table)).unwrap();
    fs::remove_file(r.index.join(&table)).unwrap();
    let report = run(&r, &restore_opts());
    assert_only_violation(
        &report,
        &format!("indexmap names PTable {table} which is missing"),
    );
}

#[test]
fn indexmap_commit_checkpoint_not_below_chaser_is_rejected() {
    let r = restored(11);
    let path = r.index.join("indexmap");
    let mut map = IndexMap::parse(&fs::read(&path).unwrap()).unwrap();
    map.commit_checkpoint = r.cps.chaser;
    fs::write(&path, map.encode()).unwrap();
    let report = run(&r, &restore_opts());
    assert_violation(
        &report,
        &format!(
            "indexmap commit checkpoint {} is not below chaser.chk {}",
            r.cps.chaser, r.cps.chaser
        ),
    );
}

#[test]
fn chaser_beyond_writer_is_rejected() {
    let r = restored(12);
    let chaser = r.cps.writer + 100;
    checkpoint::write(&r.db.join("chaser.chk"), chaser).unwrap();
    checkpoint::write(&r.db.join("truncate.chk"), chaser).unwrap();
    let report = run(&r, &restore_opts());
    assert_violation(
        &report,
        &format!("chaser.chk {chaser} is beyond writer.chk {}", r.cps.writer),
    );
}

#[test]
fn truncate_not_equal_to_chaser_is_rejected() {
    let r = restored(13);
    checkpoint::write(&r.db.join("truncate.chk"), -1).unwrap();
    let report = run(&r, &restore_opts());
    assert_only_violation(
        &report,
        &format!(
            "truncate.chk is -1 but chaser.chk is {} (a restore sets truncate = chaser)",
            r.cps.chaser
        ),
    );
}

#[test]
fn bad_checkpoint_length_is_rejected() {
    let r = restored(14);
    fs::write(r.db.join("epoch.chk"), [0u8; 7]).unwrap();
    assert_violation(
        &run(&r, &restore_opts()),
        "epoch.chk: 7 bytes, a checkpoint is exactly 8",
    );
    fs::remove_file(r.db.join("writer.chk")).unwrap();
    let report = run(&r, &restore_opts());
    assert_violation(&report, "writer.chk: cannot read");
}

#[test]
fn epoch_not_pointing_at_an_epoch_record_is_rejected() {
    let r = restored(15);
    // The epoch record at 0 is followed by the first Prepare.
    let chunk0 = fs::read(chunk_path(&r.db, 0, 0)).unwrap();
    let first_len = i32::from_le_bytes(chunk0[128..132].try_into().unwrap()) as i64 + 8;
    checkpoint::write(&r.db.join("epoch.chk"), first_len).unwrap();
    let report = run(&r, &restore_opts());
    assert_only_violation(
        &report,
        &format!("epoch.chk {first_len} does not point at an epoch record in chunk-000000.000000"),
    );
}

#[test]
fn torn_record_before_the_writer_is_rejected() {
    let r = restored(16);
    let n = writer_chunk(&r);
    assert!(r.cps.writer % CS > 0, "the writer is inside chunk {n}");
    let path = chunk_path(&r.db, n, 0);
    flip_byte(&path, 128 + 1);
    let report = run(&r, &restore_opts());
    assert_violation(
        &report,
        &format!(
            "{}: records up to writer.chk: bad record length",
            ChunkName {
                start: n,
                version: 0
            }
        ),
    );
}

#[test]
fn chunk_completed_during_the_copy_is_zero_filled_by_the_model() {
    let dir = scratch();
    let mut node = settled_node(dir.path(), 17, 700, 0);
    let before = node.checkpoints();
    let n = (before.writer / CS) as u32;
    // The backup took checkpoints and index now...
    let (backup, index) = restore(node.db_dir(), dir.path());
    // ...and copied chunk n after the node completed it and started n + 1.
    while node.checkpoints().writer / CS == n as i64 {
        node.append(20).unwrap();
    }
    let completed = chunk_path(node.db_dir(), n, 0);
    assert!(ChunkInfo::read(&completed).unwrap().is_completed());
    fs::write(chunk_path(&backup, n, 0), fs::read(&completed).unwrap()).unwrap();
    let len_before = fs::metadata(chunk_path(&backup, n, 0)).unwrap().len();

    let report = check(&backup, &index, &restore_opts());
    assert!(report.is_ok(), "{:#?}", report.violations);
    assert_eq!(report.writer, before.chaser);
    assert_eq!(
        fs::metadata(chunk_path(&backup, n, 0)).unwrap().len(),
        len_before,
        "the checker never modifies the folder"
    );

    // Copying chunk n + 1 as well makes the truncator refuse the database.
    let next = chunk_path(node.db_dir(), n + 1, 0);
    fs::write(chunk_path(&backup, n + 1, 0), fs::read(next).unwrap()).unwrap();
    let report = check(&backup, &index, &restore_opts());
    assert_violation(
        &report,
        "excessive chunk files exist beyond the writer chunk",
    );
}

#[test]
fn truncation_inside_a_scavenged_chunk_drops_it() {
    let dir = scratch();
    let node = settled_node(dir.path(), 18, 300, 700);
    let (db, index) = (node.db_dir().to_path_buf(), node.index_dir().to_path_buf());
    let writer = node.checkpoints().writer;
    drop(node);
    let scavenged = chunk_names(&db)
        .into_iter()
        .map(|n| ChunkInfo::read(&db.join(n)).unwrap().header)
        .find(|h| h.is_scavenged && h.end_position() < writer)
        .expect("a scavenged chunk below the writer");
    let inside = scavenged.start_position() + 100;
    checkpoint::write(&db.join("chaser.chk"), inside).unwrap();
    checkpoint::write(&db.join("truncate.chk"), inside).unwrap();
    // The index is ahead of the new chaser; the server would rebuild it.
    fs::remove_file(index.join("indexmap")).unwrap();

    let report = check(&db, &index, &restore_opts());
    assert!(report.is_ok(), "{:#?}", report.violations);
    assert_eq!(report.writer, scavenged.start_position());
    assert_eq!(report.chaser, scavenged.start_position());
    assert!(report.chunks <= scavenged.start as usize);
    assert!(
        chunk_names(&db)
            .iter()
            .any(|n| n.starts_with(&format!("chunk-{:06}.", scavenged.start))),
        "the folder is untouched"
    );
}
