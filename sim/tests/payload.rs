//! What appended events carry (`SimConfig::payload`): the default letters keep their bytes.

mod common;

use std::fs;
use std::path::Path;

use md5::{Digest, Md5};
use serde_json::Value;

use esbackup_engine::format::record::{self, PrepareFlags};
use esdb_sim::{check, read_log, CheckOptions, Node, Payload, SimConfig};

use common::*;

/// The MD5 of every record of the log, positions included.
fn log_digest(db: &std::path::Path) -> String {
    let mut h = Md5::new();
    for r in read_log(db).unwrap() {
        h.update(r.position.to_le_bytes());
        h.update(&r.payload);
    }
    format!("{:x}", h.finalize())
}

#[test]
fn letters_is_the_default_and_keeps_the_bytes_of_every_seed() {
    let dir = scratch();
    let node = settled_node(dir.path(), 7, 300, 300);
    assert_eq!(
        log_digest(node.db_dir()),
        "817235b26903a3ebcf4e6c36a7fd9a66"
    );
    // Small chunks bound the letters by the chunk size.
    let small = scratch();
    let mut node = new_node(
        small.path(),
        SimConfig {
            chunk_size: 4096,
            ..cfg(11)
        },
    );
    node.append(150).unwrap();
    node.settle().unwrap();
    assert_eq!(
        log_digest(node.db_dir()),
        "e53483d12eef31b7e3e602b7f7ea11e8"
    );
}

/// The decoded events the simulator appended (not deletions or stream metadata).
fn events(db: &Path) -> Vec<(String, Vec<u8>, Vec<u8>, bool)> {
    let mut out = Vec::new();
    for r in read_log(db).unwrap() {
        let Ok(record::Payload::Prepare(p)) = record::decode(&r.payload) else {
            continue;
        };
        if p.flags.has(PrepareFlags::DATA) && !p.event_type.starts_with('$') {
            let json = p.flags.has(PrepareFlags::IS_JSON);
            out.push((
                p.event_type.to_string(),
                p.data.to_vec(),
                p.metadata.to_vec(),
                json,
            ));
        }
    }
    out
}

/// Compressed over original size of the completed chunk files of `db`, each file compressed
/// on its own with zstd level 3 (as a backup stores them).
fn zstd_ratio_of_completed_chunks(db: &Path) -> f64 {
    let (mut raw, mut packed) = (0usize, 0usize);
    let names = chunk_names(db);
    // The last chunk is the active one, preallocated with zeros.
    for name in &names[..names.len() - 1] {
        let bytes = fs::read(db.join(name)).unwrap();
        raw += bytes.len();
        packed += zstd::bulk::compress(&bytes, 3).unwrap().len();
    }
    assert!(raw > 1 << 20, "{raw} bytes of completed chunks");
    packed as f64 / raw as f64
}

fn payload_node(dir: &Path, seed: u64, payload: Payload, events: usize) -> Node {
    let mut node = new_node(
        dir,
        SimConfig {
            payload,
            ..cfg(seed)
        },
    );
    node.append(events).unwrap();
    node.settle().unwrap();
    node
}

fn assert_checks(db: &Path) {
    let report = check(db, &db.join("index"), &CheckOptions::default());
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn json_events_are_realistic_json_and_compress_like_real_ones() {
    let dir = scratch();
    let node = payload_node(dir.path(), 5, Payload::Json, 4000);
    let db = node.db_dir();
    assert_checks(db);
    let events = events(db);
    assert_eq!(events.len(), 4000);
    let (mut typical, mut types) = (0, std::collections::BTreeSet::new());
    for (ty, data, metadata, is_json) in &events {
        assert!(is_json, "{ty}");
        let v: Value = serde_json::from_slice(data).unwrap();
        assert!(v.is_object(), "{ty}: {v}");
        assert!(
            (150..=1500).contains(&data.len()),
            "{ty}: {} bytes",
            data.len()
        );
        typical += usize::from((300..=600).contains(&data.len()));
        let m: Value = serde_json::from_slice(metadata).unwrap();
        for key in ["$correlationId", "$causationId", "userId", "source"] {
            assert!(m[key].is_string(), "metadata {m} has no {key}");
        }
        types.insert(ty.as_str());
    }
    assert!(
        typical * 2 > events.len(),
        "{typical} of {} in 300..=600",
        events.len()
    );
    for ty in [
        "CustomerRegistered",
        "OrderPlaced",
        "ItemAdded",
        "PaymentCaptured",
    ] {
        assert!(types.contains(ty), "no {ty} in {types:?}");
    }
    let ratio = zstd_ratio_of_completed_chunks(db);
    println!("json: zstd -3 of completed chunks: {ratio:.3}");
    assert!((0.15..=0.45).contains(&ratio), "ratio {ratio}");
}

#[test]
fn random_events_do_not_compress() {
    let dir = scratch();
    let node = payload_node(dir.path(), 5, Payload::Random, 3000);
    let db = node.db_dir();
    assert_checks(db);
    let events = events(db);
    assert_eq!(events.len(), 3000);
    assert!(events.iter().all(|(_, _, _, is_json)| !is_json));
    let bytes: Vec<u8> = events
        .iter()
        .flat_map(|(_, data, metadata, _)| data.iter().chain(metadata))
        .copied()
        .collect();
    let packed = zstd::bulk::compress(&bytes, 3).unwrap().len();
    let of_events = packed as f64 / bytes.len() as f64;
    // The record framing around the events (ids, stream names, types) still compresses.
    let of_chunks = zstd_ratio_of_completed_chunks(db);
    println!("random: zstd -3 of event bytes {of_events:.3}, of completed chunks {of_chunks:.3}");
    assert!(of_events > 0.95, "event bytes: ratio {of_events}");
    assert!(of_chunks > 0.85, "completed chunks: ratio {of_chunks}");
}

#[test]
fn json_in_small_chunks_still_fits_whole_transactions() {
    let dir = scratch();
    let mut node = new_node(
        dir.path(),
        SimConfig {
            chunk_size: 4096,
            payload: Payload::Json,
            ..cfg(11)
        },
    );
    node.append(300).unwrap();
    for _ in 0..200 {
        node.step().unwrap();
    }
    node.settle().unwrap();
    assert_checks(node.db_dir());
    for (ty, data, _, _) in events(node.db_dir()) {
        let v: Value = serde_json::from_slice(&data).unwrap();
        assert!(v.is_object(), "{ty}: {v}");
    }
}

#[test]
fn a_reopened_node_goes_on_with_the_payload_of_its_newest_event() {
    let dir = scratch();
    let node = payload_node(dir.path(), 3, Payload::Json, 50);
    let db = node.db_dir().to_path_buf();
    drop(node);
    let node = Node::open(&db, cfg(3)).unwrap();
    assert_eq!(node.logged_payload(), Some(Payload::Json));
    drop(node);
    let letters = scratch();
    let node = settled_node(letters.path(), 3, 50, 0);
    let db = node.db_dir().to_path_buf();
    drop(node);
    assert_eq!(
        Node::open(&db, cfg(3)).unwrap().logged_payload(),
        Some(Payload::Letters)
    );
}

#[test]
fn the_cli_keeps_the_payload_a_db_was_created_with_unless_told_otherwise() {
    let dir = scratch();
    let db = dir.path().join("db");
    let db = db.to_str().unwrap();
    let v = esdb_sim(&["create", "--db", db, "--bytes", "32K", "--payload", "json"]);
    assert_eq!(v["payload"], "json");
    let v = esdb_sim(&["append", "--db", db, "--bytes", "16K"]);
    assert_eq!(v["payload"], "json");
    let v = esdb_sim(&["step", "--db", db, "--count", "20", "--payload", "random"]);
    assert_eq!(v["payload"], "random");
    assert_checks(Path::new(db));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_esdb-sim"))
        .args(["append", "--db", db, "--bytes", "1K", "--payload", "xml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("letters, json, random"), "{err}");
}
