//! The accident, undone through the CLI: a stream of a live simulated node is hard-deleted by
//! mistake; `esbackup log --deletes` finds the deletion, `esbackup restore
//! --before-stream-delete` gives a database that, once the node has truncated it at start-up,
//! holds every event of the stream and not the deletion.

mod common;

use common::assert_succeeded;

use std::path::Path;
use std::process::Output;

use esbackup_engine::format::record::{decode, Payload};
use esbackup_tests::scenarios::{settled_node, sim_config};
use esdb_sim::{read_log, LoggedRecord, Node};
use serde_json::Value;

fn esbackup(args: &[&str]) -> Output {
    let out = common::esbackup_command(&[]).args(args).output();
    out.expect("esbackup runs")
}

fn ok(args: &[&str]) -> Output {
    let out = esbackup(args);
    assert_succeeded(&out, &format!("{args:?}"));
    out
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The events (Prepares) of `stream` in `log`.
fn events_of(log: &[LoggedRecord], stream: &str) -> usize {
    let of = |r: &&LoggedRecord| matches!(decode(&r.payload), Ok(Payload::Prepare(p)) if p.stream == stream);
    log.iter().filter(of).count()
}

#[test]
fn a_hard_deleted_stream_is_found_by_log_and_brought_back_by_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (db, target) = (dir.path().join("db"), dir.path().join("backup"));
    let mut node: Node = settled_node(&db, 31, 60);
    let stream = "account-3";
    ok(&["backup", "--db", path(&db), "--target", path(&target)]);
    node.append(40).unwrap();
    let before = read_log(&db).unwrap();
    assert!(events_of(&before, stream) > 0, "the stream has events");
    // The mistake, then the node goes on writing and the next backups run.
    let deleted = node.hard_delete(stream).unwrap();
    node.append(25).unwrap();
    ok(&["backup", "--db", path(&db), "--target", path(&target)]);
    node.append(10).unwrap();
    ok(&["backup", "--db", path(&db), "--target", path(&target)]);

    let out = ok(&["log", "--target", path(&target), "--deletes", "--json"]);
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let found: Vec<&Value> = lines
        .iter()
        .filter(|v| v.get("position").is_some())
        .collect();
    assert_eq!(found.len(), 1, "{lines:?}");
    assert_eq!(found[0]["position"], deleted.position);
    assert_eq!(found[0]["deletion"]["stream"], stream);
    assert_eq!(found[0]["deletion"]["kind"], "tombstone");

    let restored = dir.path().join("restored");
    let out = ok(&[
        "restore",
        "--target",
        path(&target),
        "--db",
        path(&restored),
        "--before-stream-delete",
        stream,
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["cut"]["boundary"], deleted.position, "{report}");
    assert_eq!(report["truncate"], deleted.position);
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("exits with code 0"),
        "the operator is told to start the node twice: {warnings}"
    );
    // The node's first start truncates the log there.
    Node::open(&restored, sim_config(0)).unwrap();
    let log = read_log(&restored).unwrap();
    assert_eq!(
        events_of(&log, stream),
        events_of(&before, stream),
        "every event of {stream} is back"
    );
    assert!(
        log.iter()
            .all(|r| r.position < deleted.position || r.kind == 2),
        "the deletion is gone"
    );
    let text = esbackup(&[
        "restore",
        "--target",
        path(&target),
        "--db",
        path(&dir.path().join("x")),
        "--before-stream-delete",
        "no-such-stream",
    ]);
    assert_eq!(text.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&text.stderr).contains("no deletion of stream"));
}
