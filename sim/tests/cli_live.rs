//! `esdb-sim live`: the steady writer of bench/continuous.sh.

mod common;

use std::path::Path;

use common::esdb_sim;

use esdb_sim::{check, CheckOptions};

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
