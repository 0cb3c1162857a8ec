//! `esdb-sim live`: the steady writer of bench/continuous.sh.

use std::path::Path;
use std::process::Command;

use esdb_sim::{check, CheckOptions};

fn esdb_sim(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_esdb-sim"))
        .args(args)
        .output()
        .expect("running esdb-sim");
    assert!(
        out.status.success(),
        "esdb-sim {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

#[test]
fn live_appends_rate_times_duration_in_whole_transactions_and_leaves_a_settled_node() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let db_arg = db.to_str().unwrap();
    esdb_sim(&["create", "--db", db_arg, "--bytes", "64K", "--seed", "3"]);

    let v = esdb_sim(&[
        "live", "--db", db_arg, "--rate", "64K", "--for", "2s", "--seed", "3",
    ]);

    // Whatever the timing, the writer ends at rate × duration, plus at most the last
    // transaction it had to finish.
    let appended = v["appended"].as_u64().unwrap();
    assert!(
        (2 * 65536..2 * 65536 + 16384).contains(&appended),
        "appended {appended}"
    );
    assert_eq!(
        v["writer"].as_i64().unwrap(),
        v["writer_before"].as_i64().unwrap() + appended as i64
    );
    assert_eq!(
        v["chaser"], v["writer"],
        "settled: the chaser is at the writer"
    );
    let report = check(
        &db,
        &Path::new(db_arg).join("index"),
        &CheckOptions::default(),
    );
    assert!(report.is_ok(), "{report:?}");
}
