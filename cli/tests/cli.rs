//! The `esbackup` binary as an operator or a pipeline uses it: exit codes, one-line errors,
//! JSON output, config file and environment variables.

use std::path::Path;
use std::process::{Command, Output};

use esdb_sim::{Node, SimConfig};

fn esbackup() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esbackup"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ESBACKUP_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("esbackup runs")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn sample_db(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("db");
    let mut node = Node::create(
        &db,
        SimConfig {
            chunk_size: 64 * 1024,
            seed: 99,
            memtable_entries: 50,
            ..SimConfig::default()
        },
    )
    .unwrap();
    node.append(800).unwrap();
    node.settle().unwrap();
    db
}

fn stderr_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("esbackup: error:"))
        .collect();
    assert_eq!(lines.len(), 1, "exactly one error line in: {text}");
    lines[0].to_string()
}

#[test]
fn help_teaches_usage_and_exit_codes() {
    let out = run(esbackup().arg("--help"));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "backup",
        "restore",
        "verify",
        "status",
        "demo",
        "Exit codes",
        "s3://",
    ] {
        assert!(text.contains(word), "--help lacks {word}: {text}");
    }
    let out = run(esbackup().args(["backup", "--help"]));
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "--db",
        "--target",
        "--full",
        "--dry-run",
        "--json",
        "ESBACKUP_DB",
    ] {
        assert!(text.contains(word), "backup --help lacks {word}");
    }
}

#[test]
fn backup_restore_verify_status_round_trip_with_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = sample_db(dir.path());
    let target = dir.path().join("backup");
    let t = target.to_str().unwrap();

    let out = run(esbackup()
        .args(["backup", "--db"])
        .arg(&db)
        .args(["--target", t, "--json"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = json(&out);
    assert_eq!(first["completed"], true);
    assert!(first["uploaded"]["files"].as_u64().unwrap() > 3);
    assert!(first["checkpoints"]["writer"].as_i64().unwrap() > 0);

    let out = run(esbackup()
        .args(["backup", "--db"])
        .arg(&db)
        .args(["--target", t, "--json"]));
    let second = json(&out);
    assert_eq!(second["uploaded"]["files"], 0, "nothing changed");
    assert_eq!(second["skipped"]["files"], first["uploaded"]["files"]);

    let out = run(esbackup().args(["verify", "--read-data", "--json", "--target", t]));
    assert!(out.status.success());
    assert_eq!(json(&out)["problems"].as_array().unwrap().len(), 0);

    let out = run(esbackup().args(["status", "--json", "--target", t]));
    assert!(out.status.success());
    assert_eq!(json(&out)["latest_run"]["state"], "completed");

    let restored = dir.path().join("restored");
    let out = run(esbackup()
        .args(["restore", "--target", t, "--db"])
        .arg(&restored));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(restored.join("truncate.chk")).unwrap(),
        std::fs::read(restored.join("chaser.chk")).unwrap()
    );

    let out = run(esbackup()
        .args(["restore", "--target", t, "--db"])
        .arg(&restored));
    assert_eq!(
        out.status.code(),
        Some(9),
        "restore into a non-empty folder"
    );
    assert!(stderr_line(&out).contains("--force"));
}

#[test]
fn bad_input_gets_one_line_and_a_distinct_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("backup");
    let t = t.to_str().unwrap();

    let out = run(esbackup()
        .args(["backup", "--db"])
        .arg(dir.path())
        .args(["--target", t]));
    assert_eq!(out.status.code(), Some(3), "not a database");
    assert!(stderr_line(&out).contains("writer.chk"));

    let out = run(esbackup().args(["backup", "--db"]).arg(dir.path()));
    assert_eq!(out.status.code(), Some(2), "no target");
    assert!(stderr_line(&out).contains("--target"));

    let out = run(esbackup()
        .args(["restore", "--target", t, "--db"])
        .arg(dir.path().join("r")));
    assert_eq!(out.status.code(), Some(8), "no backup there");

    let out = run(esbackup().args(["verify", "--json", "--target", "ftp://x/y"]));
    assert_eq!(out.status.code(), Some(2), "unknown scheme");
    assert_eq!(json(&out)["exit_code"], 2);
}

#[test]
fn options_come_from_the_config_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let db = sample_db(dir.path());
    let target = dir.path().join("from-config");
    let config = dir.path().join("esbackup.yaml");
    std::fs::write(
        &config,
        format!(
            "db: {}\ntarget: {}\nconcurrency: 2\n",
            db.display(),
            target.display()
        ),
    )
    .unwrap();
    let out = run(esbackup()
        .args(["backup", "--json", "--config"])
        .arg(&config));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(target.join("writer.chk").exists());

    let env_target = dir.path().join("from-env");
    let out = run(esbackup()
        .args(["backup", "--json"])
        .env("ESBACKUP_DB", &db)
        .env("ESBACKUP_TARGET", &env_target));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env_target.join("writer.chk").exists());

    std::fs::write(&config, "db: [oops\n").unwrap();
    let out = run(esbackup().args(["status", "--config"]).arg(&config));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_line(&out).contains("esbackup.yaml"));
}

#[test]
fn dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = sample_db(dir.path());
    let target = dir.path().join("backup");
    let out = run(esbackup()
        .args(["backup", "--dry-run", "--json", "--db"])
        .arg(&db)
        .arg("--target")
        .arg(&target));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    assert_eq!(report["dry_run"], true);
    assert!(report["uploaded"]["files"].as_u64().unwrap() > 3);
    assert!(!target.join("writer.chk").exists());
}

#[test]
fn demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(esbackup()
        .args(["demo", "--dir"])
        .arg(dir.path().join("demo")));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("demo ok"), "{text}");
}
