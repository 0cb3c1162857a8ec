//! `esbackup copy` as an operator runs it: between folders and between two clouds reached
//! through their own environment variables, incremental, with one-line errors and exit codes.

mod common;

use common::{esbackup, ok, path};

use std::path::Path;

use esbackup_tests::scenarios::{mutate, settled_node};
use esbackup_tests::servers::{AzuriteServer, S3Server};
use esbackup_tests::support::database_files;

/// Restores the newest point of `url` into `into` and checks it is `db`'s files.
fn restores_to(url: &str, into: &Path, want: &Path, env: &[(String, String)]) {
    ok(&["restore", "--target", url, "--db", path(into)], env);
    let (back, source) = (database_files(into), database_files(want));
    assert_eq!(
        back.keys().collect::<Vec<_>>(),
        source.keys().collect::<Vec<_>>()
    );
    assert!(
        back == source,
        "{url}: the restore differs from the database"
    );
}

#[test]
fn a_copy_between_folders_is_incremental_and_restores_with_the_source_gone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut node = settled_node(&db, 12, 60);
    let (near, far) = (dir.path().join("near"), dir.path().join("far"));
    ok(&["backup", "--db", path(&db), "--target", path(&near)], &[]);
    mutate(&mut node, 1);
    ok(&["backup", "--db", path(&db), "--target", path(&near)], &[]);
    let dry = ok(
        &[
            "copy",
            "--from",
            path(&near),
            "--to",
            path(&far),
            "--dry-run",
        ],
        &[],
    );
    assert_eq!(
        (
            dry["dry_run"].as_bool(),
            dry["copied"].as_array().unwrap().len()
        ),
        (Some(true), 2)
    );
    assert!(
        !far.exists() || std::fs::read_dir(&far).unwrap().next().is_none(),
        "a dry run writes nothing"
    );
    let first = ok(&["copy", "--from", path(&near), "--to", path(&far)], &[]);
    assert_eq!(first["ok"], true);
    assert_eq!(first["copied"].as_array().unwrap().len(), 2);
    assert!(first["objects_sent"].as_u64().unwrap() > 0);
    let prom = dir.path().join("copy.prom");
    let again = ok(
        &[
            "copy",
            "--from",
            path(&near),
            "--to",
            path(&far),
            "--metrics-file",
            path(&prom),
        ],
        &[],
    );
    let figures = std::fs::read_to_string(&prom).unwrap();
    for line in [
        "esbackup_last_run_success{command=\"copy\"} 1",
        "esbackup_points 2",
        "esbackup_runs_total{command=\"copy\",result=\"success\"} 1",
    ] {
        assert!(
            figures.contains(line),
            "--metrics-file lacks {line}: {figures}"
        );
    }
    assert!(
        figures.contains("esbackup_last_success_timestamp_seconds "),
        "{figures}"
    );
    assert_eq!(
        (
            again["copied"].as_array().unwrap().len(),
            again["objects_sent"].as_u64()
        ),
        (0, Some(0))
    );
    let text = esbackup(&["copy", "--from", path(&near), "--to", path(&far)], &[]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("nothing to copy"), "{text}");
    std::fs::remove_dir_all(&near).unwrap();
    let listed = ok(&["list", "--target", path(&far)], &[]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    ok(
        &["verify", "--target", path(&far), "--read-data", "--strict"],
        &[],
    );
    restores_to(path(&far), &dir.path().join("restored"), &db, &[]);
}

/// One more point of the node at `db` in `target`.
fn mutate_and_back_up(db: &Path, target: &Path) {
    let mut node = esdb_sim::Node::open(db, esbackup_tests::scenarios::sim_config(13)).unwrap();
    node.append(20).unwrap();
    drop(node);
    ok(&["backup", "--db", path(db), "--target", path(target)], &[]);
}

#[test]
fn bad_copies_fail_with_one_line_and_their_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 13, 30);
    let near = dir.path().join("near");
    ok(&["backup", "--db", path(&db), "--target", path(&near)], &[]);
    let fails = |args: &[&str], code: i32, says: &str| {
        let out = esbackup(args, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
    };
    fails(&["copy", "--from", path(&near)], 2, "missing --to");
    let inside = near.join("sub");
    fails(
        &["copy", "--from", path(&near), "--to", path(&inside)],
        10,
        "lies inside",
    );
    fails(
        &["copy", "--from", path(&near), "--to", path(&near)],
        10,
        "same location",
    );
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"not a backup").unwrap();
    fails(
        &["copy", "--from", path(&near), "--to", path(&other)],
        10,
        "holds 1 object(s)",
    );
    // A destination whose point cannot be read: the copy cannot tell what it needs.
    let damaged = dir.path().join("damaged");
    ok(
        &["copy", "--from", path(&near), "--to", path(&damaged)],
        &[],
    );
    let points = damaged.join(".esbackup/points");
    let point = std::fs::read_dir(&points)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&point, b"{ not a point").unwrap();
    mutate_and_back_up(&db, &near);
    fails(
        &["copy", "--from", path(&near), "--to", path(&damaged)],
        5,
        "cannot be read",
    );
    let empty = dir.path().join("empty");
    fails(
        &["copy", "--from", path(&empty), "--to", path(&other)],
        8,
        "no esbackup backup",
    );
    fails(
        &[
            "copy",
            "--from",
            path(&near),
            "--to",
            path(&dir.path().join("x")),
            "--point",
            "p00000009-20261209T000000000Z-eeeeeeee",
        ],
        2,
        "no such restore point",
    );
}

/// S3 (Garage) to Azure (Azurite), each reached through its own standard variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_from_s3_to_azure_restores_byte_identical() {
    let (s3, azure) = (S3Server::start().await, AzuriteServer::start().await);
    let env: Vec<(String, String)> = [s3.env(), azure.env()].concat();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 14, 80);
    let (from, to) = (s3.url("copy/near"), azure.url("copy/far"));
    ok(&["backup", "--db", path(&db), "--target", &from], &env);
    let report = ok(&["copy", "--from", &from, "--to", &to], &env);
    assert_eq!(report["copied"].as_array().unwrap().len(), 1);
    for key in s3.list_keys("copy/near/").await {
        s3.delete_object(&key).await;
    }
    restores_to(&to, &dir.path().join("restored"), &db, &env);
}
