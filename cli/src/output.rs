//! What each command prints: a short human summary, or one JSON object with `--json`.

use esbackup_engine::backup::Tally;
use esbackup_engine::{BackupReport, RestoreReport, StatusReport, VerifyReport};
use serde::Serialize;

fn json<T: Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("report serialises")
    );
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn tally(t: &Tally) -> String {
    format!("{} files, {}", t.files, size(t.bytes))
}

/// Prints a failure: one line on stderr, and a JSON object on stdout with `--json`.
pub fn error(as_json: bool, code: i32, message: &str) {
    if as_json {
        json(&serde_json::json!({ "ok": false, "exit_code": code, "error": message }));
    }
    eprintln!("esbackup: error: {message}");
}

pub fn backup(as_json: bool, r: &BackupReport) {
    if as_json {
        return json(r);
    }
    let verb = if r.dry_run {
        "would upload"
    } else {
        "uploaded"
    };
    println!(
        "{} backup of run {} to {}{}",
        if r.full { "full" } else { "differential" },
        r.run_id,
        r.target,
        if r.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    );
    println!("  {verb:<12} {}", tally(&r.uploaded));
    println!("  {:<12} {}", "unchanged", tally(&r.skipped));
    println!(
        "  {:<12} {}",
        if r.dry_run { "would delete" } else { "deleted" },
        tally(&r.deleted)
    );
    let c = &r.checkpoints;
    println!(
        "  checkpoints  writer {} chaser {} epoch {} proposal {}",
        c.writer, c.chaser, c.epoch, c.proposal
    );
    if !r.beyond_writer.is_empty() {
        println!(
            "  not stored   {} chunk(s) beyond the writer checkpoint (written during the run)",
            r.beyond_writer.len()
        );
    }
    for note in &r.notes {
        println!("  note: {note}");
    }
    println!("  took {:.1}s", r.duration_secs);
}

pub fn restore(as_json: bool, r: &RestoreReport) {
    if as_json {
        return json(r);
    }
    println!(
        "restored {} from {} into {}",
        tally(&r.restored),
        r.target,
        r.db
    );
    println!(
        "  writer {} chaser {}; truncate.chk set to {} (the node truncates to it on start)",
        r.writer, r.chaser, r.truncate
    );
    if !r.beyond_writer.is_empty() {
        println!(
            "  left out {} chunk(s) beyond the writer checkpoint",
            r.beyond_writer.len()
        );
    }
    for old in &r.from_old {
        println!("  restored {old} in place of its missing chunk");
    }
    for w in &r.warnings {
        println!("  warning: {w}");
    }
    println!("  took {:.1}s", r.duration_secs);
}

pub fn verify(as_json: bool, r: &VerifyReport) {
    if as_json {
        return json(r);
    }
    let how = if r.read_data {
        "read back and re-hashed"
    } else {
        "listed"
    };
    if r.is_ok() {
        println!(
            "ok: backup run {} at {} verifies ({} files, {} {how})",
            r.run_id,
            r.target,
            r.files,
            size(r.bytes)
        );
    } else {
        println!(
            "FAILED: backup at {} has {} problem(s):",
            r.target,
            r.problems.len()
        );
        for p in &r.problems {
            println!("  - {p}");
        }
    }
}

pub fn status(as_json: bool, r: &StatusReport) {
    if as_json {
        return json(r);
    }
    if !r.exists {
        println!("no esbackup backup at {}", r.target);
        return;
    }
    println!(
        "backup at {}: {} files, {}",
        r.target,
        r.files,
        size(r.bytes)
    );
    if let Some(run) = &r.latest_run {
        println!(
            "  latest run      {} {:?} (started {}, {}, from {} on {})",
            run.run_id,
            run.state,
            run.started.format("%Y-%m-%d %H:%M:%S UTC"),
            run.tool_version,
            run.source_db,
            run.host
        );
        if let Some(e) = &run.error {
            println!("  error           {e}");
        }
    }
    match &r.last_completed {
        Some(c) => println!(
            "  last completed  {} at {} (writer {}, chaser {})",
            c.run_id,
            c.finished.format("%Y-%m-%d %H:%M:%S UTC"),
            c.checkpoints.writer,
            c.checkpoints.chaser
        ),
        None => println!("  no run has completed yet: nothing to restore (restore --allow-incomplete takes what is there)"),
    }
    for lock in &r.locks {
        println!(
            "  locked by       {} ({} on {} pid {}, heartbeat {})",
            lock.run_id,
            lock.command,
            lock.host,
            lock.pid,
            lock.heartbeat.format("%H:%M:%S UTC")
        );
    }
    for note in &r.notes {
        println!("  note: {note}");
    }
}
