//! `esbackup log` on a folder, S3 (Garage), Azure (Azurite) and GCS (fake-gcs-server): a
//! simulated node writes events, hard-deletes a stream (in a chunk a scavenge rewrites later),
//! soft-deletes another and truncates a third (in the growing chunk); `log --deletes --json` finds exactly those, at the simulator's positions
//! and times; every record listed is the simulator's own, in order; `--stream`, `--from` and
//! `--to` filter as `--help` says; `--point` reads an older point; a damaged chunk is exit 5.

mod common;

use common::assert_succeeded;

use std::path::Path;
use std::process::Output;

use chrono::{DateTime, Utc};
use esbackup_engine::format::record::{self, Payload};
use esbackup_tests::scenarios::sim_config;
use esbackup_tests::servers::{AzuriteServer, GcsServer, S3Server};
use esdb_sim::{layout, read_log, LoggedRecord, Node, Written};
use serde_json::Value;

/// Runs esbackup with `env` (the store's variables) and nothing else of ESBACKUP_*/AWS_*.
fn esbackup(env: &[(String, String)], args: &[&str]) -> Output {
    let out = common::esbackup_command(env).args(args).output();
    out.expect("esbackup runs")
}

/// `esbackup log --json ARGS`: the records, after checking the closing ok line.
fn log(env: &[(String, String)], url: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["log", "--json", "--target", url];
    all.extend_from_slice(args);
    let out = esbackup(env, &all);
    assert_succeeded(&out, &format!("{args:?}"));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = lines.pop().expect("an ok line");
    assert_eq!(last["ok"], true, "{last}");
    assert_eq!(last["records"].as_u64(), Some(lines.len() as u64), "{last}");
    lines
}

fn positions(records: &[Value]) -> Vec<i64> {
    records
        .iter()
        .map(|r| r["position"].as_i64().unwrap())
        .collect()
}

/// The backup's point id.
fn backup(env: &[(String, String)], db: &Path, url: &str) -> String {
    let out = esbackup(
        env,
        &[
            "backup",
            "--json",
            "--target",
            url,
            "--db",
            db.to_str().unwrap(),
        ],
    );
    assert_succeeded(&out, "out");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["point"].as_str().unwrap().to_string()
}

/// What the node wrote: the deletions, and the point taken before them.
struct History {
    before: String,
    hard: Written,
    soft: Written,
    cut: Written,
}

/// The node's history, backed up twice to `url`.
fn write_and_back_up(env: &[(String, String)], db: &Path, url: &str) -> History {
    let mut node = Node::create(db, sim_config(20)).unwrap();
    node.append(600).unwrap();
    node.settle().unwrap();
    let before = backup(env, db, url);
    let hard = node.hard_delete("account-3").unwrap();
    node.append(600).unwrap();
    let soft = node.soft_delete("order-7").unwrap();
    node.append(300).unwrap();
    let mut steps = 0;
    while !layout::scavenged_at(db, hard.position).unwrap() {
        node.step().unwrap();
        steps += 1;
        assert!(steps < 5000, "no scavenge of the tombstone's chunk");
    }
    node.settle().unwrap();
    node.append(10).unwrap();
    let cut = node
        .set_metadata("account-5", r#"{"$maxAge":3600}"#)
        .unwrap();
    node.append(10).unwrap();
    node.settle().unwrap();
    backup(env, db, url);
    History {
        before,
        hard,
        soft,
        cut,
    }
}

fn time_of(ticks: i64) -> DateTime<Utc> {
    record::ticks_to_time(ticks).unwrap()
}

fn json_time(r: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(r["time"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

/// (ticks, stream of a prepare, transaction position) of a record the simulator wrote.
fn fields(r: &LoggedRecord) -> (i64, Option<String>, Option<i64>) {
    match record::decode(&r.payload).unwrap() {
        Payload::Prepare(p) => (
            p.ticks,
            Some(p.stream.to_string()),
            Some(p.transaction_position),
        ),
        Payload::Commit(c) => (c.ticks, None, Some(c.transaction_position)),
        Payload::System(s) => (s.ticks, None, None),
    }
}

async fn the_log_of_a_backup(env: &[(String, String)], url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let h = write_and_back_up(env, &db, url);
    // The source folder is as the newest point captured it: its log is the expected one.
    let source = read_log(&db).unwrap();

    let deletes = log(env, url, &["--deletes"]);
    let expected = [
        (&h.hard, "tombstone", "account-3"),
        (&h.soft, "soft_delete", "order-7"),
        (&h.cut, "truncation", "account-5"),
    ];
    assert_eq!(positions(&deletes), expected.map(|(w, _, _)| w.position));
    for (rec, (w, kind, stream)) in deletes.iter().zip(expected) {
        assert_eq!(rec["deletion"]["kind"], kind, "{rec}");
        assert_eq!(rec["deletion"]["stream"], stream, "{rec}");
        assert_eq!(rec["next_position"].as_i64(), Some(w.next_position));
        assert_eq!(json_time(rec), time_of(w.ticks), "{rec}");
    }
    assert_eq!(deletes[2]["deletion"]["max_age_secs"], 3600);
    assert_ne!(
        deletes[0]["chunk"], deletes[2]["chunk"],
        "the truncation is in the growing chunk"
    );

    let all = log(env, url, &[]);
    assert_eq!(
        positions(&all),
        source.iter().map(|r| r.position).collect::<Vec<_>>()
    );
    let earlier = log(env, url, &["--point", &h.before]);
    assert!(earlier.len() < all.len() && !earlier.is_empty());
    assert!(log(env, url, &["--point", &h.before, "--deletes"]).is_empty());

    by_stream(env, url, &source);
    by_position_and_time(env, url, &source, &h);
}

/// `--stream S`: the prepares of S and `$$S`, and the commits of their transactions.
fn by_stream(env: &[(String, String)], url: &str, source: &[LoggedRecord]) {
    for stream in ["account-3", "order-7", "account-5"] {
        let listed = log(env, url, &["--stream", stream]);
        let meta = format!("$${stream}");
        let prepares: Vec<&LoggedRecord> = source
            .iter()
            .filter(|r| fields(r).1.is_some_and(|s| s == stream || s == meta))
            .collect();
        let txs: Vec<i64> = prepares.iter().filter_map(|r| fields(r).2).collect();
        let wanted: Vec<i64> = source
            .iter()
            .filter(|r| {
                let (_, s, tx) = fields(r);
                prepares.iter().any(|p| p.position == r.position)
                    || (s.is_none() && r.kind == 1 && tx.is_some_and(|t| txs.contains(&t)))
            })
            .map(|r| r.position)
            .collect();
        assert!(!wanted.is_empty());
        assert_eq!(positions(&listed), wanted, "--stream {stream}");
    }
}

/// `--from`/`--to` by position (inclusive, exclusive; a position inside a record starts at the
/// next) and by time.
fn by_position_and_time(env: &[(String, String)], url: &str, source: &[LoggedRecord], h: &History) {
    let (a, b) = (
        source[source.len() / 3].position,
        source[2 * source.len() / 3].position,
    );
    let within = |from: i64, to: i64| -> Vec<i64> {
        source
            .iter()
            .map(|r| r.position)
            .filter(|p| (from..to).contains(p))
            .collect()
    };
    let listed = log(
        env,
        url,
        &["--from", &a.to_string(), "--to", &b.to_string()],
    );
    assert_eq!(positions(&listed), within(a, b));
    let listed = log(env, url, &["--from", &(a + 1).to_string()]);
    assert_eq!(positions(&listed), within(a + 1, i64::MAX));

    let (t, u) = (time_of(h.hard.ticks), time_of(h.soft.ticks));
    let (from, to) = (t.to_rfc3339(), u.to_rfc3339());
    let listed = log(env, url, &["--from", &from, "--to", &to]);
    let wanted: Vec<i64> = source
        .iter()
        .filter(|r| (t..u).contains(&time_of(fields(r).0)))
        .map(|r| r.position)
        .collect();
    assert_eq!(positions(&listed), wanted);
    assert_eq!(
        listed.first().map(|r| r["position"].as_i64().unwrap()),
        Some(h.hard.position)
    );
    let deletes = log(env, url, &["--deletes", "--from", &from, "--to", &to]);
    assert_eq!(positions(&deletes), [h.hard.position]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_of_a_folder_backup() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("backup");
    the_log_of_a_backup(&[], url.to_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_of_an_s3_backup() {
    let server = S3Server::start().await;
    let env: Vec<(String, String)> = server.env();
    the_log_of_a_backup(&env, &server.url("log/node1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_of_an_azure_backup() {
    let server = AzuriteServer::start().await;
    the_log_of_a_backup(&server.env(), &server.url("log/node1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_of_a_gcs_backup() {
    let server = GcsServer::start().await;
    the_log_of_a_backup(&server.env(), &server.url("log/node1")).await;
}

#[test]
fn a_damaged_chunk_is_exit_5_naming_the_chunk_and_the_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (db, bk) = (dir.path().join("db"), dir.path().join("backup"));
    let mut node = Node::create(&db, sim_config(21)).unwrap();
    node.append(600).unwrap();
    node.settle().unwrap();
    let url = bk.to_str().unwrap();
    backup(&[], &db, url);
    // The first record after the epoch: a length prefix far larger than a chunk.
    let stored = bk.join("chunk-000000.000000");
    let mut bytes = std::fs::read(&stored).unwrap();
    let epoch_len = i32::from_le_bytes(bytes[128..132].try_into().unwrap()) as usize;
    let at = 128 + epoch_len + 8;
    bytes[at..at + 4].copy_from_slice(&i32::MAX.to_le_bytes());
    let mut perms = std::fs::metadata(&stored).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&stored, perms).unwrap();
    std::fs::write(&stored, &bytes).unwrap();

    let out = esbackup(&[], &["log", "--target", url]);
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("chunk-000000.000000 of restore point"),
        "{err}"
    );
    assert!(
        err.contains(&format!("damaged at byte {at}: record length 2147483647")),
        "{err}"
    );
    let out = esbackup(&[], &["log", "--json", "--target", url]);
    assert_eq!(out.status.code(), Some(5));
    let text = String::from_utf8(out.stdout).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["ok"].as_bool(), last["exit_code"].as_i64()),
        (Some(false), Some(5))
    );
    assert_eq!(text.lines().count(), 2, "the epoch, then the error: {text}");
}
