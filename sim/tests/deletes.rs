//! Stream deletions written by the simulated node: the records are the server's (read back with
//! the engine's decoder), random appends leave deleted streams alone, scavenges keep them, and
//! a reopened node continues.

use std::path::Path;

use esbackup_engine::format::record::{self, Payload, PrepareFlags};
use esdb_sim::{layout, read_log, CheckOptions, Node, SimConfig, Written};

fn config(seed: u64) -> SimConfig {
    SimConfig {
        chunk_size: 16 * 1024,
        seed,
        memtable_entries: 50,
        ..SimConfig::default()
    }
}

/// The prepare at `at` in `db`'s log: (stream, flags, event type, data, ticks, event number).
fn prepare_at(db: &Path, at: &Written) -> (String, u16, String, Vec<u8>, i64, Option<i64>) {
    let log = read_log(db).unwrap();
    let rec = log
        .iter()
        .find(|r| r.position == at.position)
        .expect("the record is in the log");
    assert_eq!(rec.next_position, at.next_position);
    match record::decode(&rec.payload).unwrap() {
        Payload::Prepare(p) => (
            p.stream.to_string(),
            p.flags.0,
            p.event_type.to_string(),
            p.data.to_vec(),
            p.ticks,
            p.event_number(),
        ),
        other => panic!("not a prepare: {other:?}"),
    }
}

/// Streams of the prepares at or after `from`.
fn streams_after(db: &Path, from: i64) -> Vec<String> {
    read_log(db)
        .unwrap()
        .iter()
        .filter(|r| r.position >= from)
        .filter_map(|r| match record::decode(&r.payload).unwrap() {
            Payload::Prepare(p) => Some(p.stream.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn deletions_are_written_as_the_server_writes_them_and_survive_scavenges() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut node = Node::create(&db, config(3)).unwrap();
    node.append(400).unwrap();
    let hard = node.hard_delete("account-3").unwrap();
    let soft = node.soft_delete("order-5").unwrap();
    let cut = node
        .set_metadata("account-4", r#"{"$maxCount":3}"#)
        .unwrap();
    assert!(hard.position < soft.position && soft.position < cut.position);
    assert!(hard.ticks < soft.ticks);

    let (stream, flags, ty, data, _, number) = prepare_at(&db, &hard);
    assert_eq!(
        (stream.as_str(), ty.as_str(), number),
        ("account-3", "$streamDeleted", Some(i64::MAX))
    );
    assert_eq!(
        flags,
        0x08 | 0x02 | 0x04 | 0x20,
        "StreamDelete | TxBegin | TxEnd | IsCommitted"
    );
    assert!(data.is_empty());
    let (stream, flags, ty, data, ticks, number) = prepare_at(&db, &soft);
    assert_eq!(
        (stream.as_str(), ty.as_str(), number),
        ("$$order-5", "$metadata", Some(0))
    );
    assert!(PrepareFlags(flags).has(PrepareFlags::IS_JSON));
    assert_eq!(data, br#"{"$tb":9223372036854775807}"#);
    assert_eq!(ticks, soft.ticks);
    assert_eq!(prepare_at(&db, &cut).5, Some(0));
    let again = node
        .set_metadata("account-4", r#"{"$maxCount":2}"#)
        .unwrap();
    assert_eq!(
        prepare_at(&db, &again).5,
        Some(1),
        "numbered after the metastream's last"
    );

    // Appends, scavenges and merges later: the deleted streams get no events, the deletions stay.
    node.append(600).unwrap();
    let mut steps = 0;
    while !layout::scavenged_at(&db, hard.position).unwrap() {
        node.step().unwrap();
        steps += 1;
        assert!(
            steps < 5000,
            "no scavenge of the tombstone's chunk in {steps} steps"
        );
    }
    node.settle().unwrap();
    let later = streams_after(&db, again.next_position);
    assert!(!later.is_empty());
    for gone in ["account-3", "order-5", "account-4"] {
        assert!(
            !later.iter().any(|s| s == gone),
            "{gone} was written after its deletion"
        );
    }
    for w in [hard, soft, cut, again] {
        prepare_at(&db, &w);
    }
    let report = esdb_sim::check(&db, &db.join("index"), &CheckOptions::default());
    assert!(report.is_ok(), "{report:?}");

    // The server's start-up reads the tombstone back (its expected version is i64::MAX - 1).
    drop(node);
    let mut node = Node::open(&db, config(3)).unwrap();
    node.append(50).unwrap();
    node.settle().unwrap();
    prepare_at(&db, &hard);
}
