//! The simulator writes real formats, exposes intermediate states, and settles into databases
//! the checker accepts after a vendor-style restore.

mod common;

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use esbackup_engine::format::chunk::{self, ChunkInfo, ChunkName};
use esbackup_engine::format::indexmap::IndexMap;
use esbackup_engine::format::{checkpoint, guid, ptable, trailing_md5_matches};
use esdb_sim::{bloom, check, ptable_writer, records, run_live, CheckOptions, Node, SimConfig};

use common::*;

fn restore_opts() -> CheckOptions {
    CheckOptions {
        archive: false,
        expect_truncate_equals_chaser: true,
    }
}

fn assert_restore_passes(db: &Path, scratch: &Path, opts: &CheckOptions) {
    let (restored, index) = restore(db, scratch);
    let report = check(&restored, &index, opts);
    assert!(report.is_ok(), "{:#?}", report.violations);
}

#[test]
fn random_steps_then_settle_restore_passes_the_checker() {
    let dir = scratch();
    let mut node = new_node(dir.path(), cfg(21));
    let mut seen = String::new();
    for _ in 0..2500 {
        seen.push_str(&node.step().unwrap());
        seen.push('\n');
    }
    node.settle().unwrap();
    for what in [
        "appended",
        "(writer.chk not yet moved)",
        "early completion",
        "writer.chk ->",
        "epoch",
        "memtable flush started",
        "merge of level",
        "window without indexmap",
        "Scavenge: switched in",
        "Merge: switched in",
        "stream-existence",
        "kurrent.ddb",
        "deleted",
        "left a stray",
    ] {
        assert!(seen.contains(what), "no step did {what:?}");
    }
    let cps = node.checkpoints();
    assert_eq!(cps.chaser, cps.writer, "a settled node's chaser caught up");
    assert!(cps.epoch >= 0 && cps.epoch <= cps.writer);
    let report_before = check(node.db_dir(), node.index_dir(), &CheckOptions::default());
    assert!(report_before.is_ok(), "{:#?}", report_before.violations);
    assert_restore_passes(node.db_dir(), dir.path(), &restore_opts());
    let tmp = fs::read_dir(node.db_dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(tmp, 0, "settle leaves no temp files");
}

#[test]
fn files_round_trip_through_the_engine_parsers() {
    let dir = scratch();
    let node = settled_node(dir.path(), 22, 400, 600);
    let (db, index) = (node.db_dir(), node.index_dir());
    let cps = node.checkpoints();
    for name in [
        "writer.chk",
        "chaser.chk",
        "epoch.chk",
        "truncate.chk",
        "proposal.chk",
    ] {
        assert_eq!(fs::read(db.join(name)).unwrap().len(), 8, "{name}");
    }
    assert_eq!(checkpoint::read(&db.join("truncate.chk")).unwrap(), -1);
    assert_eq!(
        checkpoint::read(&db.join("writer.chk")).unwrap(),
        cps.writer
    );

    let names = chunk_names(db);
    let writer_chunk = (cps.writer / node.chunk_size() as i64) as u32;
    let mut completed = 0;
    for name in &names {
        let info = ChunkInfo::read(&db.join(name)).unwrap();
        let parsed = ChunkName::parse(name).unwrap();
        assert_eq!(info.header.start, parsed.start, "{name}");
        assert_eq!(info.header.chunk_size, 64 * 1024);
        assert_eq!(
            (info.header.min_compatible_version, info.header.version),
            (3, 4)
        );
        if info.is_completed() {
            completed += 1;
            assert!(trailing_md5_matches(&db.join(name)).unwrap(), "{name}");
            assert_eq!(info.file_len % 4096, 0);
            let f = info.footer.unwrap();
            assert_eq!(f.flags, 3);
            assert!(f.logical_data_size >= f.physical_data_size as i64);
            if info.header.is_scavenged {
                assert!(parsed.version > 0);
                assert!(f.map_size > 0 && f.map_size % 12 == 0);
            } else {
                assert_eq!(f.map_size, 0);
            }
            assert!(fs::metadata(db.join(name))
                .unwrap()
                .permissions()
                .readonly());
        } else {
            assert_eq!(
                parsed,
                ChunkName {
                    start: writer_chunk,
                    version: 0
                }
            );
            assert_eq!(info.file_len, chunk::active_file_len(64 * 1024));
        }
    }
    assert!(completed >= 2, "{names:?}");

    // Chunk 0 starts with the epoch record of position 0 (unless scavenged: still kept).
    let first = names
        .iter()
        .find(|n| n.starts_with("chunk-000000."))
        .unwrap();
    let data = fs::read(db.join(first)).unwrap();
    let len = i32::from_le_bytes(data[128..132].try_into().unwrap()) as usize;
    assert!(records::is_epoch(&data[132..132 + len]));

    let map = IndexMap::parse(&fs::read(index.join("indexmap")).unwrap()).unwrap();
    assert!(!map.tables.is_empty());
    assert!(map.commit_checkpoint < cps.chaser);
    assert_eq!(map.max_auto_merge_level, Some(i32::MAX));
    let mut entries = 0;
    for t in &map.tables {
        let path = index.join(&t.file);
        assert_eq!(ptable::verify(&path).unwrap(), Ok(()), "{}", t.file);
        let e = ptable_writer::read_entries(&path).unwrap();
        assert!(
            e.windows(2).all(|w| w[0] >= w[1]),
            "entries sorted descending"
        );
        entries += e.len();
        let bf = index.join(format!("{}.bloomfilter", t.file));
        if bf.exists() {
            let bytes = fs::read(&bf).unwrap();
            assert_eq!(
                bytes.len() as u64,
                bloom::file_len(bloom::ptable_logical_bytes(e.len() as u64))
            );
            assert_eq!(bloom::bad_lines(&bytes), 0);
        }
    }
    assert!(entries >= 400, "the tables index the appended events");
    for e in fs::read_dir(index).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let stem = name.trim_end_matches(".bloomfilter");
        if guid::is_guid_name(stem) {
            assert!(
                map.tables.iter().any(|t| t.file == stem),
                "settle deleted {name}"
            );
        }
    }

    let sef = index.join("stream-existence");
    let dat = fs::read(sef.join("streamExistenceFilter.dat")).unwrap();
    assert_eq!(dat.len() as u64, bloom::file_len(60_000));
    assert_eq!(bloom::bad_lines(&dat), 0);
    let chk = checkpoint::read(&sef.join("streamExistenceFilter.chk")).unwrap();
    assert!(chk <= cps.writer);
    let sqlite = fs::read(index.join("scavenging").join("scavenging.db")).unwrap();
    assert!(sqlite.starts_with(b"SQLite format 3\0"));
    assert!(!index.join("scavenging").join("scavenging.db-wal").exists());
    assert_eq!(&fs::read(db.join("kurrent.ddb")).unwrap()[8..12], b"DUCK");
    assert!(db.join("kurrent.ddb.wal").exists());
}

/// What a reader can observe between steps.
#[derive(Default)]
struct Seen(HashSet<&'static str>);

impl Seen {
    fn look(&mut self, node: &Node) {
        let (db, index) = (node.db_dir(), node.index_dir());
        let names: Vec<String> = fs::read_dir(db)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let has_tables = fs::read_dir(index)
            .unwrap()
            .any(|e| guid::is_guid_name(&e.unwrap().file_name().to_string_lossy()));
        if has_tables && !index.join("indexmap").exists() {
            self.0.insert("indexmap missing");
        }
        for e in fs::read_dir(index).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if guid::is_guid_name(&name) && ptable::verify(&index.join(&name)).unwrap().is_err() {
                self.0.insert("growing ptable");
            }
            if name.ends_with(".indexmap.tmp") {
                self.0.insert("indexmap tmp");
            }
        }
        if names.iter().any(|n| n.ends_with(".scavenge.tmp")) {
            self.0.insert("scavenge tmp");
        }
        if index.join("scavenging").join("scavenging.db-wal").exists() {
            self.0.insert("sqlite wal");
        }
        let chunks: Vec<ChunkName> = names.iter().filter_map(|n| ChunkName::parse(n)).collect();
        if chunks.iter().any(|a| {
            chunks
                .iter()
                .any(|b| a.start == b.start && a.version < b.version)
        }) {
            self.0.insert("two versions");
        }
        if chunks
            .iter()
            .any(|c| c.version == 1 && !chunks.iter().any(|o| o.start == c.start && o.version == 0))
        {
            self.0.insert("version 1 alone");
        }
        let cps = node.checkpoints();
        let cs = node.chunk_size() as i64;
        let active = db.join(
            ChunkName {
                start: (cps.writer / cs) as u32,
                version: 0,
            }
            .to_string(),
        );
        if let Ok(bytes) = fs::read(&active) {
            let at = 128 + (cps.writer % cs) as usize;
            if bytes.len() > at + 4 && bytes[at..at + 4] != [0, 0, 0, 0] {
                self.0.insert("data beyond writer.chk");
            }
            if let Ok(info) = ChunkInfo::read(&active) {
                if info.is_completed() && cps.writer % cs != 0 {
                    self.0.insert("completed before writer moved");
                }
            }
        }
        let next = db.join(
            ChunkName {
                start: (cps.writer / cs) as u32 + 1,
                version: 0,
            }
            .to_string(),
        );
        if next.exists() {
            self.0.insert("next chunk before writer moved");
        }
    }
}

#[test]
fn steps_expose_intermediate_states() {
    let dir = scratch();
    let mut node = new_node(dir.path(), cfg(23));
    let mut seen = Seen::default();
    for _ in 0..3000 {
        node.step().unwrap();
        seen.look(&node);
    }
    for state in [
        "indexmap missing",
        "growing ptable",
        "indexmap tmp",
        "scavenge tmp",
        "sqlite wal",
        "two versions",
        "version 1 alone",
        "data beyond writer.chk",
        "completed before writer moved",
        "next chunk before writer moved",
    ] {
        assert!(seen.0.contains(state), "never observed {state:?}");
    }
}

#[test]
fn live_node_runs_until_stopped() {
    let dir = scratch();
    let node = new_node(dir.path(), cfg(24));
    let live = run_live(node);
    let t = Instant::now();
    while live.steps() < 300 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the live node is stuck"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut node = live.stop().unwrap();
    assert!(node.steps() >= 300);
    node.settle().unwrap();
    assert_restore_passes(node.db_dir(), dir.path(), &restore_opts());
}

#[test]
fn open_continues_a_stopped_node() {
    let dir = scratch();
    let node = settled_node(dir.path(), 25, 200, 300);
    let before = node.checkpoints();
    let db = node.db_dir().to_path_buf();
    drop(node);
    let mut node = Node::open(&db, cfg(25)).unwrap();
    assert_eq!(node.checkpoints().writer, before.writer);
    node.append(300).unwrap();
    for _ in 0..300 {
        node.step().unwrap();
    }
    node.settle().unwrap();
    assert!(node.checkpoints().writer > before.writer);
    assert_restore_passes(&db, dir.path(), &restore_opts());
}

#[test]
fn open_applies_the_truncation_of_a_restore() {
    let dir = scratch();
    let mut node = new_node(dir.path(), cfg(26));
    node.append(300).unwrap();
    // Stop mid-flight (a crash): chaser behind, jobs half done.
    for _ in 0..500 {
        node.step().unwrap();
    }
    let (restored, _) = restore(node.db_dir(), dir.path());
    drop(node);
    let chaser = checkpoint::read(&restored.join("chaser.chk")).unwrap();
    let mut node = Node::open(&restored, cfg(26)).unwrap();
    let cps = node.checkpoints();
    assert_eq!(cps.truncate, -1);
    assert_eq!(
        checkpoint::read(&restored.join("truncate.chk")).unwrap(),
        -1
    );
    assert!(
        cps.writer <= chaser + 4096,
        "writer lowered to about the old chaser"
    );
    assert!(
        !fs::read_dir(&restored).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")),
        "temp files removed at open"
    );
    for _ in 0..200 {
        node.step().unwrap();
    }
    node.settle().unwrap();
    let report = check(&restored, &restored.join("index"), &CheckOptions::default());
    assert!(report.is_ok(), "{:#?}", report.violations);
}

#[test]
fn archive_mode_removes_leading_chunks() {
    let dir = scratch();
    let config = SimConfig {
        archive: true,
        ..cfg(27)
    };
    let mut node = new_node(dir.path(), config);
    let mut merged = false;
    for _ in 0..1500 {
        merged |= node.step().unwrap().starts_with("Merge");
    }
    node.settle().unwrap();
    assert!(!merged, "archive mode never merges");
    let names = chunk_names(node.db_dir());
    assert!(
        !names.iter().any(|n| n.starts_with("chunk-000000.")),
        "{names:?}"
    );
    let archive = CheckOptions {
        archive: true,
        ..restore_opts()
    };
    assert_restore_passes(node.db_dir(), dir.path(), &archive);
    let (restored, index) = restore(node.db_dir(), &dir.path().join("again"));
    let report = check(&restored, &index, &restore_opts());
    assert!(report
        .violations
        .iter()
        .any(|v| v.contains("missing chunk #0")));
}

#[test]
fn follower_has_raw_replicated_chunks_without_version_zero() {
    let dir = scratch();
    let mut node = new_node(dir.path(), cfg(28));
    let mut replicated = None;
    for _ in 0..4000 {
        let d = node.step().unwrap();
        if let Some(name) = d.strip_prefix("Replicate: switched in ") {
            replicated = Some(name.split(' ').next().unwrap().to_string());
            break;
        }
    }
    let name = ChunkName::parse(&replicated.expect("a raw-replicated chunk")).unwrap();
    assert_eq!(name.version, 1);
    let info = ChunkInfo::read(&node.db_dir().join(name.to_string())).unwrap();
    assert!(info.header.is_scavenged);
    assert!(!node
        .db_dir()
        .join(ChunkName { version: 0, ..name }.to_string())
        .exists());
}

#[test]
fn legacy_headers_have_zeros_from_offset_34() {
    let dir = scratch();
    let config = SimConfig {
        legacy_v3_headers: true,
        ..cfg(29)
    };
    let mut node = new_node(dir.path(), config);
    node.append(400).unwrap();
    node.settle().unwrap();
    for name in chunk_names(node.db_dir()) {
        let bytes = fs::read(node.db_dir().join(&name)).unwrap();
        assert_eq!(bytes[1], 3, "{name}");
        assert!(bytes[34..128].iter().all(|&b| b == 0), "{name}");
    }
    assert_restore_passes(node.db_dir(), dir.path(), &restore_opts());
}

#[test]
fn index_dir_can_live_outside_the_db() {
    let dir = scratch();
    let config = SimConfig {
        index_dir: Some(dir.path().join("elsewhere")),
        ..cfg(30)
    };
    let mut node = new_node(dir.path(), config);
    node.append(200).unwrap();
    node.settle().unwrap();
    assert_eq!(node.index_dir(), dir.path().join("elsewhere"));
    assert!(dir.path().join("elsewhere").join("indexmap").exists());
    assert!(!node.db_dir().join("index").exists());
    let report = check(node.db_dir(), node.index_dir(), &CheckOptions::default());
    assert!(report.is_ok(), "{:#?}", report.violations);
    assert!(report.ptables >= 1);
}

#[test]
fn same_seed_same_history() {
    let run = |seed: u64| {
        let dir = scratch();
        let mut node = new_node(dir.path(), cfg(seed));
        (0..400).map(|_| node.step().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(run(31), run(31));
    assert_ne!(run(31), run(32));
}

#[test]
fn node_is_send() {
    fn send<T: Send>() {}
    send::<Node>();
}
