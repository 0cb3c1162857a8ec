//! The `esbackup` binary as an operator or a pipeline uses it: exit codes, one-line errors,
//! JSON output, config file and environment variables.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use esdb_sim::{Node, SimConfig};

mod common;

use common::assert_succeeded;

/// The binary without the caller's variables.
fn esbackup() -> Command {
    common::esbackup_command(&[])
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("esbackup runs")
}

/// Runs `cmd`, which must succeed (its stderr is shown when it does not).
fn succeeds(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert_succeeded(&out, "out");
    out
}

/// `esbackup backup --db <db>`, to be given its target and options.
fn backup_of(db: &Path) -> Command {
    let mut cmd = esbackup();
    cmd.args(["backup", "--db"]).arg(db);
    cmd
}

/// `esbackup backup --db <db> --target <target>`, to be given its options.
fn backup_to(db: &Path, target: &Path) -> Command {
    let mut cmd = backup_of(db);
    cmd.arg("--target").arg(target);
    cmd
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

/// A node of small chunks at `db` from `seed`, settled after `events` appends.
fn sample_node(db: &Path, seed: u64, events: usize) -> Node {
    let config = SimConfig {
        chunk_size: 64 * 1024,
        seed,
        memtable_entries: 50,
        ..SimConfig::default()
    };
    let mut node = Node::create(db, config).unwrap();
    node.append(events).unwrap();
    node.settle().unwrap();
    node
}

/// A temporary folder with a sample database in it, and the database's path (`dir/db`).
fn sample_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    sample_node(&db, 99, 800);
    (dir, db)
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

/// `esbackup <args>` succeeds and its stdout mentions every one of `words`.
fn assert_help_mentions(args: &[&str], words: &[&str]) {
    let out = succeeds(esbackup().args(args));
    let text = String::from_utf8_lossy(&out.stdout);
    for word in words {
        assert!(text.contains(word), "{args:?} lacks {word}: {text}");
    }
}

#[test]
fn help_teaches_usage_and_exit_codes() {
    let main_help = [
        "backup",
        "restore",
        "verify",
        "list",
        "status",
        "forget",
        "log",
        "demo",
        "Exit codes",
        "s3://",
    ];
    assert_help_mentions(&["--help"], &main_help);
    let backup_help = [
        "--db",
        "--target",
        "--full",
        "--dry-run",
        "--json",
        "ESBACKUP_DB",
    ];
    assert_help_mentions(&["backup", "--help"], &backup_help);
}

/// A file the backup cannot store is named in both outputs, with a warning on stderr; the run
/// still stores its point and exits 0. The other files are stored and restored.
#[test]
fn a_file_left_out_is_named_in_the_text_and_the_json_output() {
    let (dir, db) = sample_db();
    std::fs::write(db.join("custom-notes.txt"), b"notes").unwrap();
    std::fs::write(db.join("two\nlines.txt"), b"a newline in its name").unwrap();
    let target = dir.path().join("backup");
    let t = target.to_str().unwrap();
    let warning = "esbackup: warning: two\\nlines.txt was not backed up";

    let out = succeeds(backup_of(&db).args(["--target", t, "--json"]));
    let report = json(&out);
    assert_eq!(report["skipped"][0]["file"], "two\\nlines.txt", "{report}");
    assert!(report["skipped"][0]["why"]
        .as_str()
        .unwrap()
        .contains("control character"));
    assert!(report["stored_keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k == "custom-notes.txt"));
    assert!(String::from_utf8_lossy(&out.stderr).contains(warning));

    let out = run(backup_of(&db).args(["--target", t]));
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("not stored") && stdout.contains("two\\nlines.txt"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(warning));

    let restored = dir.path().join("restored");
    succeeds(
        esbackup()
            .args(["restore", "--target", t, "--db"])
            .arg(&restored),
    );
    assert_eq!(
        std::fs::read(restored.join("custom-notes.txt")).unwrap(),
        b"notes"
    );
    assert!(!restored.join("two\nlines.txt").exists());
}

#[test]
fn backup_list_restore_verify_status_forget_round_trip_with_json() {
    let (dir, db) = sample_db();
    let target = dir.path().join("backup");
    let t = target.to_str().unwrap();

    let out = succeeds(backup_of(&db).args(["--target", t, "--json"]));
    let first = json(&out);
    assert_eq!(first["ok"], true);
    assert!(first["point"].is_string());
    assert!(first["stored"]["files"].as_u64().unwrap() > 3);
    assert!(
        first["uploaded"]["bytes"].as_u64().unwrap() >= first["stored"]["bytes"].as_u64().unwrap()
    );
    assert!(first["checkpoints"]["writer"].as_i64().unwrap() > 0);

    let out = run(backup_of(&db).args(["--target", t, "--json"]));
    let second = json(&out);
    assert_eq!(second["stored"]["files"], 0, "nothing changed");
    assert_eq!(second["unchanged"]["files"], first["stored"]["files"]);

    let out = run(esbackup().args(["list", "--json", "--target", t]));
    assert!(out.status.success());
    let points = json(&out);
    let points = points.as_array().expect("list --json is an array");
    assert_eq!(points.len(), 2);
    for field in ["id", "time", "writer", "chaser", "files", "bytes_added"] {
        assert!(!points[0][field].is_null(), "list lacks {field}");
    }
    assert!(
        points[0]["time"].as_str().unwrap() <= points[1]["time"].as_str().unwrap(),
        "oldest first"
    );

    let out = run(esbackup().args(["verify", "--read-data", "--json", "--target", t]));
    assert!(out.status.success());
    let v = json(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["points"].as_array().unwrap().len(), 2);

    let out = run(esbackup().args(["status", "--json", "--target", t]));
    assert!(out.status.success());
    let s = json(&out);
    assert_eq!(s["points"], 2);
    assert_eq!(s["newest"]["id"], points[1]["id"]);

    let restored = dir.path().join("restored");
    succeeds(
        esbackup()
            .args([
                "restore",
                "--target",
                t,
                "--point",
                points[0]["id"].as_str().unwrap(),
                "--db",
            ])
            .arg(&restored),
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
    let out = run(esbackup()
        .args(["restore", "--target", t, "--at", "1h", "--db"])
        .arg(dir.path().join("too-early")));
    assert_eq!(out.status.code(), Some(2), "no point an hour ago");
    assert!(stderr_line(&out).contains("no restore point at or before"));
    let out = succeeds(
        esbackup()
            .args([
                "restore",
                "--json",
                "--target",
                t,
                "--at",
                "2099-01-01T00:00:00Z",
                "--db",
            ])
            .arg(dir.path().join("at")),
    );
    assert_eq!(json(&out)["point"], points[1]["id"]);

    let out = succeeds(esbackup().args([
        "forget",
        "--keep-last",
        "1",
        "--prune",
        "--json",
        "--target",
        t,
    ]));
    let f = json(&out);
    assert_eq!(f["forgotten"].as_array().unwrap().len(), 1);
    assert!(
        f["stored_bytes_after"].as_u64().unwrap() <= f["stored_bytes_before"].as_u64().unwrap()
    );
    let out = run(esbackup().args(["forget", "--target", t]));
    assert_eq!(out.status.code(), Some(2), "no rule, nothing forgotten");
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
    assert_eq!(json(&out)["ok"], false);

    // Usage errors found by the argument parser are JSON too with --json.
    let out = run(esbackup().args(["backup", "--json", "--no-such-option"]));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json(&out)["ok"], false);
    assert!(json(&out)["error"]
        .as_str()
        .unwrap()
        .contains("--no-such-option"));
    let out = run(esbackup().args(["restore", "--point", "x", "--at", "1h"]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_database_folder_as_target_is_refused_with_exit_10_and_left_alone() {
    let (dir, db) = sample_db();
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("chunk-000000.000000"), b"someone's data").unwrap();
    let out = run(&mut backup_to(&db, &other));
    assert_eq!(
        out.status.code(),
        Some(10),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(other.join("chunk-000000.000000")).unwrap(),
        b"someone's data"
    );
}

#[test]
fn read_only_commands_never_create_a_missing_target_folder() {
    let (dir, db) = sample_db();
    let missing = dir.path().join("no-such-backup");
    for args in [
        vec!["verify", "--target"],
        vec!["status", "--target"],
        vec!["list", "--target"],
        vec!["log", "--target"],
    ] {
        let out = run(esbackup().args(&args).arg(&missing));
        assert_eq!(out.status.code(), Some(8), "{args:?}");
        assert!(!missing.exists(), "{args:?} created the target folder");
    }
    let out = run(esbackup()
        .args(["restore", "--db"])
        .arg(dir.path().join("r"))
        .arg("--target")
        .arg(&missing));
    assert_eq!(out.status.code(), Some(8));
    assert!(!missing.exists(), "restore created the target folder");
    succeeds(backup_to(&db, &missing).arg("--dry-run"));
    assert!(!missing.exists(), "a dry run created the target folder");
}

#[test]
fn too_many_open_files_is_a_local_error_not_a_damaged_database() {
    let (dir, db) = sample_db();
    let target = dir.path().join("backup");
    let script = format!(
        "ulimit -n 12 && exec {} backup --db {} --target {}",
        env!("CARGO_BIN_EXE_esbackup"),
        db.display(),
        target.display()
    );
    let out = run(Command::new("sh").args(["-c", &script]));
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert_ne!(
        out.status.code(),
        Some(3),
        "reported as not a database: {text}"
    );
    if !out.status.success() {
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("open files"), "{text}");
    }
}

/// `dir/esbackup.yaml` naming `db` and `target`, then `more` keys.
fn config_file(dir: &Path, db: &Path, target: &Path, more: &str) -> PathBuf {
    let config = dir.join("esbackup.yaml");
    let yaml = format!("db: {}\ntarget: {}\n{more}", db.display(), target.display());
    std::fs::write(&config, yaml).unwrap();
    config
}

#[test]
fn options_come_from_the_config_file_and_environment() {
    let (dir, db) = sample_db();
    let target = dir.path().join("from-config");
    let config = config_file(
        dir.path(),
        &db,
        &target,
        "concurrency: 2\njson: true\nretention:\n  last: 1\n",
    );
    for _ in 0..2 {
        let out = succeeds(esbackup().args(["backup", "--config"]).arg(&config));
        let report = json(&out);
        assert_eq!(report["ok"], true, "json: true in the file");
        assert_eq!(report["retention"]["kept"].as_array().unwrap().len(), 1);
    }
    // The command line turns off what the file turned on.
    let out = run(esbackup()
        .args(["status", "--json=false", "--config"])
        .arg(&config));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 restore point(s)"));
    assert!(target.join("writer.chk").exists());

    let env_target = dir.path().join("from-env");
    let out = succeeds(
        esbackup()
            .args(["backup", "--json"])
            .env("ESBACKUP_DB", &db)
            .env("ESBACKUP_TARGET", &env_target)
            .env("ESBACKUP_DRY_RUN", "true"),
    );
    assert_eq!(json(&out)["dry_run"], true);
    assert!(!env_target.exists());

    std::fs::write(&config, "db: [oops\n").unwrap();
    let out = run(esbackup().args(["status", "--config"]).arg(&config));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_line(&out).contains("esbackup.yaml"));
}

/// The documented order: command line, then environment, then config file, then default.
#[test]
fn the_command_line_wins_over_the_environment_which_wins_over_the_config_file() {
    let (dir, db) = sample_db();
    let in_file = dir.path().join("in-file");
    let in_env = dir.path().join("in-env");
    let config = config_file(dir.path(), &db, &in_file, "");
    succeeds(esbackup().args(["backup", "--config"]).arg(&config));
    assert!(in_file.join("writer.chk").exists(), "the file's target");

    let status = |cli_target: Option<&Path>| {
        let mut cmd = esbackup();
        cmd.args(["status", "--json", "--config"]).arg(&config);
        cmd.env("ESBACKUP_TARGET", &in_env);
        if let Some(t) = cli_target {
            cmd.arg("--target").arg(t);
        }
        run(&mut cmd).status.code()
    };
    assert_eq!(
        status(None),
        Some(8),
        "the environment's target (empty) wins over the file's"
    );
    assert_eq!(
        status(Some(&in_file)),
        Some(0),
        "the command line wins over the environment"
    );
}

#[test]
fn dry_run_writes_nothing() {
    let (dir, db) = sample_db();
    let target = dir.path().join("backup");
    std::fs::create_dir_all(&target).unwrap();
    let out = succeeds(backup_to(&db, &target).args(["--dry-run", "--json"]));
    let report = json(&out);
    assert_eq!(report["dry_run"], true);
    assert!(report["stored"]["files"].as_u64().unwrap() > 3);
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
}

#[cfg(feature = "demo")]
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

#[test]
fn forget_help_shows_each_example_on_its_own_line() {
    let out = run(esbackup().args(["forget", "--help"]));
    let text = String::from_utf8_lossy(&out.stdout);
    let examples: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("esbackup forget --target"))
        .collect();
    assert_eq!(examples.len(), 2, "{text}");
    assert!(text.contains("--lock-wait"), "{text}");
}

/// A damaged point object: `list` shows the others, names it, and exits 5; JSON stays an array.
#[test]
fn list_names_a_damaged_point_and_exits_5() {
    let (dir, db) = sample_db();
    let bk = dir.path().join("bk");
    for _ in 0..2 {
        succeeds(backup_to(&db, &bk).arg("--quiet"));
    }
    let points = bk.join(".esbackup/points");
    let mut names: Vec<_> = std::fs::read_dir(&points)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    std::fs::write(points.join(&names[0]), b"{\"format\": 3, \"id\":").unwrap();
    let out = run(esbackup().args(["list", "--json", "--target"]).arg(&bk));
    assert_eq!(out.status.code(), Some(5));
    let entries = json(&out);
    let entries = entries.as_array().expect("an array");
    assert_eq!(entries.len(), 2);
    assert!(entries[0]["damaged"].is_string(), "{entries:?}");
    assert!(entries[1]["writer"].is_number(), "{entries:?}");
    let out = run(esbackup().args(["list", "--target"]).arg(&bk));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DAMAGED") && text.contains("1 restore point(s)"),
        "{text}"
    );
}

/// verify warns about a damaged root mirror (exit 0) and fails with --strict (exit 5).
#[test]
fn verify_strict_fails_on_a_damaged_root_mirror() {
    let (dir, db) = sample_db();
    let bk = dir.path().join("bk");
    succeeds(backup_to(&db, &bk).arg("--quiet"));
    std::fs::remove_file(bk.join("index/indexmap")).unwrap();
    let out = run(esbackup().args(["verify", "--target"]).arg(&bk));
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("index/indexmap"));
    let out = run(esbackup().args(["verify", "--strict", "--target"]).arg(&bk));
    assert_eq!(out.status.code(), Some(5));
}

/// A backup run with the host clock a day behind (libfaketime) is still the newest point and
/// says so; a plain restore gives its state. Skipped where `faketime` is not installed.
#[test]
fn a_backup_with_the_clock_a_day_behind_is_the_newest_point() {
    if Command::new("faketime").arg("--version").output().is_err() {
        eprintln!("skipped: faketime is not installed (scripts/test-env.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut node = sample_node(&db, 7, 400);
    let bk = dir.path().join("bk");
    succeeds(backup_to(&db, &bk).arg("--quiet"));
    node.append(400).unwrap();
    node.settle().unwrap();
    let writer = std::fs::read(db.join("writer.chk")).unwrap();
    let mut behind = Command::new("faketime");
    behind
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .arg("-f")
        .arg("-1d")
        .arg(env!("CARGO_BIN_EXE_esbackup"))
        .args(["backup", "--json", "--quiet", "--db"])
        .arg(&db)
        .arg("--target")
        .arg(&bk);
    let out = succeeds(&mut behind);
    let report = json(&out);
    let warned = report["warnings"].as_array().unwrap();
    assert!(
        warned
            .iter()
            .any(|w| w.as_str().unwrap().contains("behind")),
        "{report}"
    );
    let out = run(esbackup().args(["list", "--json", "--target"]).arg(&bk));
    let listed = json(&out);
    assert_eq!(
        listed.as_array().unwrap().last().unwrap()["id"],
        report["point"]
    );
    let dest = dir.path().join("restored");
    succeeds(
        esbackup()
            .args(["restore", "--quiet", "--target"])
            .arg(&bk)
            .arg("--db")
            .arg(&dest),
    );
    assert_eq!(std::fs::read(dest.join("writer.chk")).unwrap(), writer);
}

#[test]
fn shell_completions_and_the_manual_page_cover_every_command() {
    let bash = succeeds(esbackup().args(["completions", "bash"]));
    let script = String::from_utf8(bash.stdout).unwrap();
    for command in [
        "backup", "restore", "verify", "list", "status", "forget", "copy", "run",
    ] {
        assert!(script.contains(command), "bash completion lacks {command}");
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &script).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(file.path())
        .output()
        .unwrap();
    assert_succeeded(&syntax, "syntax");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        assert!(
            !succeeds(esbackup().args(["completions", shell]))
                .stdout
                .is_empty(),
            "{shell}"
        );
    }
    let man = String::from_utf8(succeeds(esbackup().arg("man")).stdout).unwrap();
    assert!(
        man.starts_with(".ie") && man.contains(".TH esbackup 1"),
        "{}",
        &man[..200]
    );
    assert!(
        man.contains("copy") && man.contains("Exit codes"),
        "the page has the commands and the exit codes"
    );
    let bad = run(esbackup().args(["completions", "nosh"]));
    assert_eq!(bad.status.code(), Some(2));
}
