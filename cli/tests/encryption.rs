//! Compressed and encrypted locations as an operator uses them: `init`, the password sources,
//! `key list|add|remove`, wrong and missing keys (exit 2, nothing written), tampered and cut
//! objects (exit 5 naming the object), copies that re-encode between locations, and passwords
//! typed at a terminal.

mod common;

use common::{esbackup, isolated, ok, path};

use std::path::{Path, PathBuf};

use esbackup_tests::scenarios::{mutate, settled_node};
use esbackup_tests::support::database_files;

fn env(password: &str) -> Vec<(String, String)> {
    vec![("ESBACKUP_PASSWORD".to_string(), password.to_string())]
}

/// Runs `args`, which must fail with `code`; its stderr.
fn fails(args: &[&str], env: &[(String, String)], code: i32) -> String {
    let out = esbackup(args, env);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    stderr
}

fn assert_restores(url: &str, into: &Path, want: &Path, env: &[(String, String)]) {
    ok(&["restore", "--target", url, "--db", path(into)], env);
    assert!(
        database_files(into) == database_files(want),
        "{url}: the restore differs from the database"
    );
}

/// Every stored object outside `.esbackup/` holds none of the database's own bytes.
fn assert_no_plain_bytes(location: &Path, db: &Path) {
    let chunk = std::fs::read(db.join("chunk-000000.000000")).unwrap();
    let probe = &chunk[200..264];
    for entry in walk(location) {
        let stored = std::fs::read(&entry).unwrap();
        assert!(
            !stored.windows(probe.len()).any(|w| w == probe),
            "{} holds plain database bytes",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        match p.is_dir() {
            true => out.extend(walk(&p)),
            false => out.push(p),
        }
    }
    out
}

/// A settled database of `seed` in a fresh folder, and a location path beside it.
fn database(seed: u64, steps: usize) -> (tempfile::TempDir, PathBuf, esdb_sim::Node, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let node = settled_node(&db, seed, steps);
    let loc = dir.path().join("loc");
    (dir, db, node, loc)
}

/// `init --target loc <flags>`, then a backup of `db` into it, both with `pw`.
fn init_and_back_up(db: &Path, loc: &Path, flags: &[&str], pw: &[(String, String)]) {
    ok(&[&["init", "--target", path(loc)], flags].concat(), pw);
    ok(&["backup", "--db", path(db), "--target", path(loc)], pw);
}

#[test]
fn an_encrypted_compressed_location_backs_up_restores_and_hides_the_events() {
    let (dir, db, mut node, loc) = database(21, 60);
    let pw = env("correct horse");
    let init = ok(
        &[
            "init",
            "--target",
            path(&loc),
            "--encrypt",
            "--compression",
            "zstd",
        ],
        &pw,
    );
    assert_eq!(
        (init["encrypted"].as_bool(), init["compression"].as_i64()),
        (Some(true), Some(3))
    );
    let first = ok(&["backup", "--db", path(&db), "--target", path(&loc)], &pw);
    assert!(first["plain_added"].as_u64().unwrap() > first["bytes_added"].as_u64().unwrap());
    mutate(&mut node, 1);
    ok(&["backup", "--db", path(&db), "--target", path(&loc)], &pw);
    assert_no_plain_bytes(&loc, &db);
    let listed = ok(&["list", "--target", path(&loc)], &pw);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let verified = ok(&["verify", "--target", path(&loc), "--read-data"], &pw);
    assert_eq!(verified["ok"], true);
    assert_restores(path(&loc), &dir.path().join("r"), &db, &pw);
    // A prune keeps the location's settings and keys.
    ok(
        &[
            "forget",
            "--target",
            path(&loc),
            "--keep-last",
            "1",
            "--prune",
        ],
        &pw,
    );
    assert!(loc.join(".esbackup/config").exists());
    assert_eq!(
        std::fs::read_dir(loc.join(".esbackup/keys"))
            .unwrap()
            .count(),
        1
    );
    assert_restores(path(&loc), &dir.path().join("r-pruned"), &db, &pw);
    // The same password from a file and from a command.
    let file = dir.path().join("pw");
    std::fs::write(&file, "correct horse\n").unwrap();
    ok(
        &[
            "status",
            "--target",
            path(&loc),
            "--password-file",
            path(&file),
        ],
        &[],
    );
    let cmd = format!("cat {}", file.display());
    ok(
        &["status", "--target", path(&loc), "--password-command", &cmd],
        &[],
    );
}

#[test]
fn a_wrong_or_missing_password_is_exit_2_naming_how_to_give_it_and_writes_nothing() {
    let (dir, db, _node, loc) = database(22, 30);
    let pw = env("right");
    init_and_back_up(&db, &loc, &["--encrypt"], &pw);
    let before: Vec<_> = walk(&loc);
    let into = dir.path().join("restored");
    let err = fails(
        &["restore", "--target", path(&loc), "--db", path(&into)],
        &env("wrong"),
        2,
    );
    assert!(
        err.contains("ESBACKUP_PASSWORD") && err.lines().count() == 1,
        "{err}"
    );
    let err = fails(
        &["restore", "--target", path(&loc), "--db", path(&into)],
        &[],
        2,
    );
    assert!(err.contains("--password-file"), "{err}");
    assert!(!into.exists(), "not even the restore folder");
    fails(
        &["backup", "--db", path(&db), "--target", path(&loc)],
        &env("wrong"),
        2,
    );
    assert_eq!(walk(&loc), before, "nothing written");
    let file = dir.path().join("nope");
    let err = fails(
        &[
            "list",
            "--target",
            path(&loc),
            "--password-file",
            path(&file),
        ],
        &[],
        2,
    );
    assert!(err.contains("--password-file"), "{err}");
}

#[test]
fn key_slots_are_added_listed_and_removed_and_the_last_one_stays() {
    let (dir, db, _node, loc) = database(23, 30);
    init_and_back_up(&db, &loc, &["--encrypt"], &env("first"));
    let mut both = env("first");
    both.push(("ESBACKUP_NEW_PASSWORD".into(), "second".into()));
    let added = ok(&["key", "add", "--target", path(&loc)], &both);
    let second = added["added"].as_str().unwrap().to_string();
    let slots = ok(&["key", "list", "--target", path(&loc)], &env("second"));
    let ids: Vec<&str> = slots["key_slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    let first = ids.iter().find(|id| **id != second).unwrap().to_string();
    ok(
        &["key", "remove", "--target", path(&loc), &first],
        &env("second"),
    );
    fails(&["list", "--target", path(&loc)], &env("first"), 2);
    assert_restores(path(&loc), &dir.path().join("r"), &db, &env("second"));
    let err = fails(
        &["key", "remove", "--target", path(&loc), &second],
        &env("second"),
        2,
    );
    assert!(err.contains("last"), "{err}");
    let plain = dir.path().join("plain");
    ok(
        &["backup", "--db", path(&db), "--target", path(&plain)],
        &[],
    );
    let err = fails(&["key", "list", "--target", path(&plain)], &env("x"), 2);
    assert!(err.contains("not encrypted"), "{err}");
}

#[test]
fn init_refuses_a_used_location_and_a_bad_compression() {
    let (dir, db, _node, loc) = database(24, 20);
    ok(&["backup", "--db", path(&db), "--target", path(&loc)], &[]);
    let err = fails(
        &["init", "--target", path(&loc), "--compression", "zstd"],
        &[],
        9,
    );
    assert!(err.contains("not empty"), "{err}");
    let fresh = dir.path().join("fresh");
    let err = fails(
        &["init", "--target", path(&fresh), "--compression", "lz4"],
        &[],
        2,
    );
    assert!(err.contains("--compression"), "{err}");
    fails(&["init", "--target", path(&fresh), "--encrypt"], &[], 2);
    ok(
        &["init", "--target", path(&fresh), "--compression", "zstd:9"],
        &[],
    );
    fails(
        &["init", "--target", path(&fresh), "--compression", "zstd"],
        &[],
        9,
    );
}

/// Flips a byte in the middle of `file`, or cuts it short.
fn tamper(file: &Path, cut: bool) {
    let mut bytes = std::fs::read(file).unwrap();
    match cut {
        true => bytes.truncate(bytes.len() - 7),
        false => {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x01;
        }
    }
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn a_tampered_or_cut_object_is_exit_5_naming_it_in_verify_and_restore() {
    for cut in [false, true] {
        let (dir, db, _node, loc) = database(25, 40);
        let pw = env("pw");
        init_and_back_up(&db, &loc, &["--encrypt", "--compression", "zstd"], &pw);
        tamper(&loc.join("chunk-000001.000000"), cut);
        let out = esbackup(&["verify", "--target", path(&loc), "--read-data"], &pw);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(5), "{stdout}");
        assert!(stdout.contains("chunk-000001.000000"), "{stdout}");
        let into = dir.path().join("r");
        let err = fails(
            &["restore", "--target", path(&loc), "--db", path(&into)],
            &pw,
            5,
        );
        assert!(err.contains("chunk-000001.000000"), "{err}");
        assert!(!into.join("chunk-000001.000000").exists());
    }
}

#[test]
fn copies_re_encode_between_plain_and_encrypted_locations_and_back() {
    let (dir, db, mut node, _) = database(26, 40);
    let near = dir.path().join("near");
    ok(&["backup", "--db", path(&db), "--target", path(&near)], &[]);
    mutate(&mut node, 1);
    ok(&["backup", "--db", path(&db), "--target", path(&near)], &[]);
    let far = dir.path().join("far");
    ok(
        &[
            "init",
            "--target",
            path(&far),
            "--encrypt",
            "--compression",
            "zstd",
        ],
        &env("far"),
    );
    let copied = ok(
        &["copy", "--from", path(&near), "--to", path(&far)],
        &env("far"),
    );
    assert_eq!(copied["copied"].as_array().unwrap().len(), 2);
    let again = ok(
        &["copy", "--from", path(&near), "--to", path(&far)],
        &env("far"),
    );
    assert_eq!(again["copied"].as_array().unwrap().len(), 0, "{again}");
    assert_no_plain_bytes(&far, &db);
    // On to a location with another key, then back to a plain one.
    let other = dir.path().join("other");
    ok(
        &["init", "--target", path(&other), "--encrypt"],
        &env("other"),
    );
    let mut two = env("other");
    two.push(("ESBACKUP_FROM_PASSWORD".into(), "far".into()));
    ok(&["copy", "--from", path(&far), "--to", path(&other)], &two);
    let back = dir.path().join("back");
    ok(
        &["copy", "--from", path(&other), "--to", path(&back)],
        &env("other"),
    );
    std::fs::remove_dir_all(&near).unwrap();
    std::fs::remove_dir_all(&far).unwrap();
    assert_restores(path(&other), &dir.path().join("r1"), &db, &env("other"));
    assert_restores(path(&back), &dir.path().join("r2"), &db, &[]);
    ok(
        &["verify", "--target", path(&back), "--read-data", "--strict"],
        &[],
    );
}

/// `init` and `backup` started together on an empty location: whichever takes the lock first
/// decides, and neither says ok about a location the other broke (a backup's plain objects in
/// an encrypted location, or an init over a backup).
#[test]
fn init_beside_a_backup_never_leaves_plain_objects_in_an_encrypted_location() {
    let (dir, db, _node, _) = database(27, 30);
    for round in 0..4 {
        let loc = dir.path().join(format!("loc-{round}"));
        let pw = env("pw");
        let spawn = |args: &[&str]| {
            common::esbackup_command(&pw)
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut init = spawn(&["init", "--target", path(&loc), "--encrypt"]);
        let mut backup = spawn(&["backup", "--db", path(&db), "--target", path(&loc)]);
        let (init, backup) = (init.wait().unwrap(), backup.wait().unwrap());
        assert!(
            init.success() || backup.success(),
            "round {round}: one of them wins"
        );
        if init.success() {
            assert!(loc.join(".esbackup/config").exists());
            assert_no_plain_bytes(&loc, &db);
        }
        if backup.success() {
            let into = dir.path().join(format!("r-{round}"));
            assert_restores(path(&loc), &into, &db, &pw);
        }
        println!("round {round}: init {init}, backup {backup}");
    }
}

/// `esbackup <args>` run at a terminal (`script` gives it one) with `typed` as the keyboard's
/// input and no password variable: its exit code and what the terminal showed.
fn at_a_terminal(args: &[&str], typed: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let line = [&[env!("CARGO_BIN_EXE_esbackup")], args].concat().join(" ");
    let mut script = std::process::Command::new("script");
    script.args(["-qec", &line, "/dev/null"]);
    let mut child = isolated(script, &[])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(typed.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

#[test]
fn a_password_is_asked_at_a_terminal_twice_when_new_and_never_in_a_pipeline() {
    let (_dir, db, _node, loc) = database(27, 20);
    let url = path(&loc);
    let (code, shown) = at_a_terminal(&["init", "--target", url, "--encrypt"], "one\ntwo\n");
    assert_eq!(code, Some(2), "{shown}");
    assert!(shown.contains("the two passwords typed differ"), "{shown}");
    assert!(
        !loc.join(".esbackup").exists(),
        "a refused init wrote {shown}"
    );

    let (code, shown) = at_a_terminal(&["init", "--target", url, "--encrypt"], "pw1\npw1\n");
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains("new password for") && shown.contains("again"),
        "{shown}"
    );
    ok(&["backup", "--db", path(&db), "--target", url], &env("pw1"));

    let (code, shown) = at_a_terminal(&["status", "--target", url], "pw1\n");
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains(&format!("password for {url}")), "{shown}");
    let (code, shown) = at_a_terminal(&["status", "--target", url], "wrong\n");
    assert_eq!(code, Some(2), "{shown}");
    assert!(
        shown.contains("the password from the terminal opens none"),
        "{shown}"
    );

    // The current password first, then the new one twice.
    let typed = "pw1\npw2\npw2\n";
    let (code, shown) = at_a_terminal(&["key", "add", "--target", url], typed);
    assert_eq!(code, Some(0), "{shown}");
    ok(&["status", "--target", url], &env("pw2"));

    // Without a terminal nothing is asked: the password must be given.
    let stderr = fails(&["status", "--target", url], &[], 2);
    assert!(stderr.contains("ESBACKUP_PASSWORD"), "{stderr}");
}
