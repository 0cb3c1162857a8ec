//! What each command prints: a short human summary, or one JSON object with `--json` (always
//! with `"ok"`: true for a success, false with `exit_code` and `error` for a failure).

use esbackup_engine::{
    BackupReport, CopyReport, ForgetReport, Listing, RestoreReport, StatusReport, Tally,
    VerifyReport,
};
use serde::Serialize;

/// Prints `value` as one JSON object with `"ok": true` first.
pub fn json<T: Serialize>(value: &T) {
    let mut object = serde_json::Map::new();
    object.insert("ok".into(), true.into());
    match serde_json::to_value(value).expect("report serialises") {
        serde_json::Value::Object(fields) => object.extend(fields),
        other => {
            object.insert("result".into(), other);
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&object).expect("JSON serialises")
    );
}

/// In a compressed or encrypted location: what the run's new objects take there.
fn encoded(r: &BackupReport) {
    if let Some(plain) = r.plain_added {
        println!(
            "  {:<12} {} of new objects take {} in the location{}",
            "encoded",
            size(plain),
            size(r.bytes_added),
            ratio(r.bytes_added, plain)
        );
    }
}

/// ` (ratio 0.31)`: stored bytes for plain ones, when there are plain bytes.
fn ratio(stored: u64, plain: u64) -> String {
    match plain {
        0 => String::new(),
        _ => format!(" (ratio {:.2})", stored as f64 / plain as f64),
    }
}

pub fn size(bytes: u64) -> String {
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

fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Prints a failure: one line on stderr, and a JSON object on stdout with `--json`.
pub fn error(as_json: bool, code: i32, message: &str) {
    if as_json {
        let value = serde_json::json!({ "ok": false, "exit_code": code, "error": message });
        println!("{}", serde_json::to_string_pretty(&value).expect("JSON"));
    }
    eprintln!("esbackup: error: {message}");
}

pub fn backup(as_json: bool, r: &BackupReport) {
    // Files left out are warnings, on stderr whatever the format (and in the JSON too).
    for s in &r.skipped {
        eprintln!("esbackup: warning: {} was not backed up: {}", s.file, s.why);
    }
    if as_json {
        return json(r);
    }
    match (&r.point, r.dry_run) {
        (_, true) => println!(
            "dry run: a backup to {} would store (nothing changed):",
            r.target
        ),
        (Some(p), false) => println!("restore point {p} stored in {}", r.target),
        (None, false) => println!("backup to {}", r.target),
    }
    let verb = if r.dry_run { "would store" } else { "stored" };
    println!("  {verb:<12} {}", tally(&r.stored));
    println!("  {:<12} {}", "unchanged", tally(&r.unchanged));
    encoded(r);
    if !r.dry_run {
        println!(
            "  {:<12} {} in {} requests ({} objects, metadata included)",
            "sent",
            size(r.uploaded.bytes),
            r.uploaded.requests,
            r.uploaded.objects
        );
    }
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
    if !r.skipped.is_empty() {
        println!(
            "  not stored   {} file(s) of the database folders (see the warnings): {}",
            r.skipped.len(),
            r.skipped
                .iter()
                .map(|s| s.file.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if r.aborted_uploads > 0 {
        println!(
            "  cleaned up   {} incomplete upload(s) of killed runs",
            r.aborted_uploads
        );
    }
    if let Some(f) = &r.retention {
        println!(
            "  retention    kept {} point(s), forgot {}, deleted {} object(s) ({})",
            f.kept.len(),
            f.forgotten.len(),
            f.pruned_objects,
            size(f.pruned_bytes)
        );
    }
    for note in &r.notes {
        println!("  note: {note}");
    }
    warnings(&r.warnings);
    waited(r.lock_waited_secs);
    println!("  took {:.1}s", r.duration_secs);
}

/// Warnings, on stderr too so that a cron mail shows them.
fn warnings(all: &[String]) {
    for w in all {
        println!("  WARNING: {w}");
        eprintln!("esbackup: warning: {w}");
    }
}

fn waited(secs: f64) {
    if secs >= 1.0 {
        println!("  waited {secs:.0}s for another run's lock");
    }
}

pub fn restore(as_json: bool, r: &RestoreReport) {
    if as_json {
        return json(r);
    }
    println!(
        "restored point {} ({}) from {} into {}: {}",
        r.point,
        time(&r.time),
        r.target,
        r.db,
        tally(&r.restored)
    );
    println!(
        "  writer {} chaser {}; truncate.chk set to {} (the node truncates to it on start)",
        r.writer, r.chaser, r.truncate
    );
    warnings(&r.warnings);
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
    if let Some(running) = &r.running {
        println!("note: {running}");
    }
    for id in &r.forgotten_meanwhile {
        println!("note: restore point {id} was forgotten while verify ran (not checked)");
    }
    for m in &r.mirror {
        println!("WARNING: {m}");
        eprintln!("esbackup: warning: {m}");
    }
    if r.is_ok() {
        println!(
            "ok: {} restore point(s) at {} verify ({} objects, {} {how})",
            r.points.len(),
            r.target,
            r.objects,
            size(r.bytes)
        );
        return;
    }
    let problems = r.problems();
    println!(
        "FAILED: {} problem(s) in the restore points at {}:",
        problems.len(),
        r.target
    );
    for p in problems {
        println!("  - {p}");
    }
}

/// `list --json` prints a JSON array of the entries (points, and `{"id", "damaged"}` for
/// point objects that cannot be read), oldest first.
pub fn list(as_json: bool, listing: &Listing) {
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&listing.entries).expect("JSON serialises")
        );
        for w in &listing.warnings {
            eprintln!("esbackup: warning: {w}");
        }
        return;
    }
    println!(
        "{:<38} {:<23} {:>14} {:>14} {:>6} {:>10} {:>10}",
        "point", "time", "writer", "chaser", "files", "size", "added"
    );
    for e in &listing.entries {
        match e {
            esbackup_engine::ListEntry::Point(p) => println!(
                "{:<38} {:<23} {:>14} {:>14} {:>6} {:>10} {:>10}",
                p.id,
                time(&p.time),
                p.writer,
                p.chaser,
                p.files,
                size(p.bytes),
                size(p.bytes_added)
                    + &p.plain_added
                        .map_or_else(String::new, |plain| ratio(p.bytes_added, plain))
            ),
            esbackup_engine::ListEntry::Damaged { id, .. } => {
                println!("{id:<38} DAMAGED (see below)")
            }
        }
    }
    println!("{} restore point(s)", listing.points().count());
    for (_, why) in listing.damaged() {
        println!("DAMAGED: {why}");
    }
    warnings(&listing.warnings);
}

pub fn status(as_json: bool, r: &StatusReport) {
    if as_json {
        return json(r);
    }
    if !r.exists {
        println!("no esbackup backup at {}", r.target);
    } else {
        println!(
            "backup at {}: {} restore point(s), {} stored in {} objects",
            r.target,
            r.points,
            size(r.stored_bytes),
            r.stored_objects
        );
        if let Some(p) = r.newest.as_ref().filter(|p| p.plain_added.is_some()) {
            let plain = p.plain_added.unwrap_or_default();
            println!(
                "  encoded  the newest point's new objects: {} plain, {} stored{}",
                size(plain),
                size(p.bytes_added),
                ratio(p.bytes_added, plain)
            );
        }
        for (label, p) in [("oldest", &r.oldest), ("newest", &r.newest)] {
            if let Some(p) = p {
                println!(
                    "  {label}  {} at {} (writer {}, chaser {}, from {} on {})",
                    p.id,
                    time(&p.time),
                    p.writer,
                    p.chaser,
                    p.source_db,
                    p.host
                );
            }
        }
        for d in &r.damaged {
            println!("  DAMAGED  {}", d.problem);
        }
        if let Some(n) = r.incomplete_uploads.filter(|&n| n > 0) {
            println!(
                "  leftovers {n} incomplete upload(s) or staging file(s) of killed runs (the next backup removes them)"
            );
        }
        if r.legacy {
            println!("  written by esbackup 0.1: the next backup converts it (its state becomes the first restore point)");
        }
        if let Some(p) = &r.newest {
            for note in &p.notes {
                println!("  note: {note}");
            }
        }
    }
    for lock in &r.locks {
        let l = &lock.info;
        match &lock.dead {
            None => println!(
                "  running     {} {} (host {} pid {}, started {}, heartbeat {})",
                l.command,
                l.run_id,
                l.host,
                l.pid,
                time(&l.started),
                time(&l.heartbeat)
            ),
            Some(why) => println!(
                "  dead lock   {} {} (host {} pid {}): {why}; the next run takes it over",
                l.command, l.run_id, l.host, l.pid
            ),
        }
    }
}

pub fn copy(as_json: bool, r: &CopyReport) {
    if as_json {
        return json(r);
    }
    let (copied, sent) = if r.dry_run {
        ("would copy", "would send")
    } else {
        ("copied", "sent")
    };
    println!(
        "{} {} → {}:",
        if r.dry_run { "dry run: copy" } else { "copy" },
        r.from,
        r.to
    );
    for id in &r.copied {
        println!("  {copied:<12} {id}");
    }
    for id in &r.present {
        println!("  {:<12} {id} (the destination holds it)", "present");
    }
    for id in &r.forgotten {
        println!(
            "  {:<12} {id} (forgotten at the source while this copy ran)",
            "skipped"
        );
    }
    if r.copied.is_empty() {
        println!("  nothing to copy: the destination holds every point selected");
    }
    println!(
        "  {sent:<12} {} object(s), {}; {} object(s) the destination held were kept",
        r.objects_sent,
        size(r.bytes_sent),
        r.objects_kept
    );
    println!(
        "  {:<12} {} to the source, {} to the destination; {:.1} s",
        "requests", r.source_requests, r.destination.requests, r.duration_secs
    );
    waited(r.lock_waited_secs);
}

pub fn forget(as_json: bool, r: &ForgetReport) {
    if as_json {
        return json(r);
    }
    let (kept, forgot, deleted) = if r.dry_run {
        ("would keep", "would forget", "would delete")
    } else {
        ("kept", "forgot", "deleted")
    };
    println!(
        "{} at {}:",
        if r.dry_run { "dry run" } else { "forget" },
        r.target
    );
    for k in &r.kept {
        println!(
            "  {kept:<12} {} ({}): {}",
            k.id,
            time(&k.time),
            k.reasons.join(", ")
        );
    }
    for id in &r.forgotten {
        println!("  {forgot:<12} {id}");
    }
    println!(
        "  {deleted:<12} {} object(s), {}; stored {} → {}",
        r.pruned_objects,
        size(r.pruned_bytes),
        size(r.stored_bytes_before),
        size(r.stored_bytes_after)
    );
    if r.pruned_later > 0 {
        println!(
            "  {:<12} {} unreferenced object(s) written after this run took the lock (the next prune judges them)",
            "left", r.pruned_later
        );
    }
    warnings(&r.warnings);
    waited(r.lock_waited_secs);
}

// `log` ------------------------------------------------------------------------------------------

/// `log`: the records as they stream in, one aligned line each under a header (or one JSON object
/// a line), then a summary line. A failure while reading ends the output with the error (a JSON
/// line too with `--json`) and its exit code; a stdout closed early (`| head`) ends it quietly.
pub async fn log(
    as_json: bool,
    mut listing: esbackup_engine::log::LogListing,
) -> Result<i32, crate::exit::Failure> {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let mut lines = Vec::new();
    if !as_json {
        lines.push(log_header());
    }
    let (mut count, mut chunk) = (0u64, String::new());
    let ended = loop {
        let rec = match listing.next().await {
            None => break None,
            Some(Err(e)) => break Some(crate::exit::Failure::from(e)),
            Some(Ok(rec)) => rec,
        };
        count += 1;
        lines.push(if as_json {
            serde_json::to_string(&rec).expect("a record serialises")
        } else {
            log_line(&rec)
        });
        // Written a chunk at a time, so that a slow store still shows progress.
        let flush = rec.chunk != chunk;
        chunk = rec.chunk;
        if let Err(e) = write_lines(&mut out, &mut lines, flush) {
            return closed_or_failed(e);
        }
    };
    let summary = match (&ended, as_json) {
        (None, true) => serde_json::json!({
            "ok": true, "target": listing.target, "point": listing.point,
            "point_time": listing.point_time, "writer": listing.writer, "records": count,
        })
        .to_string(),
        (None, false) => format!(
            "{count} record(s) of restore point {} ({}) at {}; its log ends at position {}",
            listing.point,
            time(&listing.point_time),
            listing.target,
            listing.writer
        ),
        (Some(_), _) => String::new(),
    };
    lines.extend(Some(summary).filter(|l| !l.is_empty()));
    if let Err(e) = write_lines(&mut out, &mut lines, true) {
        return closed_or_failed(e);
    }
    match ended {
        None => Ok(0),
        Some(f) => log_failed(as_json, f),
    }
}

/// `log` failed: a last JSON line with `--json` (the output stays JSON lines), the error on
/// stderr, and its exit code.
pub fn log_failed(as_json: bool, f: crate::exit::Failure) -> Result<i32, crate::exit::Failure> {
    if as_json {
        let line = serde_json::json!({ "ok": false, "exit_code": f.code, "error": f.message });
        println!("{line}");
    }
    eprintln!("esbackup: error: {}", f.message);
    Ok(f.code)
}

fn write_lines(
    out: &mut impl std::io::Write,
    lines: &mut Vec<String>,
    flush: bool,
) -> std::io::Result<()> {
    for line in lines.drain(..) {
        writeln!(out, "{line}")?;
    }
    if flush {
        out.flush()?;
    }
    Ok(())
}

/// A stdout closed by its reader ends the listing without an error; another write error is one.
fn closed_or_failed(e: std::io::Error) -> Result<i32, crate::exit::Failure> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return Ok(0);
    }
    Err(crate::exit::Failure {
        code: 1,
        message: format!("cannot write to stdout: {e}"),
    })
}

fn log_header() -> String {
    format!(
        "{:>14}  {:<23}  {:<7}  {:<24} {:>9}  {:<20}  flags",
        "position", "time (UTC)", "kind", "stream", "number", "type"
    )
}

/// One record: position, time, kind, stream, event number, type, flags, and what it deletes.
fn log_line(r: &esbackup_engine::log::LogRecord) -> String {
    use esbackup_engine::log::{DeletionKind, RecordKind};
    let number = match r.event_number {
        Some(i64::MAX) => "deleted".to_string(),
        Some(n) => n.to_string(),
        None => "-".to_string(),
    };
    let mut flags: Vec<&str> = r.flags.names().into_iter().map(short_flag).collect();
    let commits = r
        .transaction_position
        .map(|p| format!("commits the transaction at {p}"));
    if r.kind == RecordKind::Commit {
        flags.extend(commits.as_deref());
    }
    let mut line = format!(
        "{:>14}  {:<23}  {:<7}  {:<24} {:>9}  {:<20}  {}",
        r.position,
        r.time.format("%Y-%m-%d %H:%M:%S%.3f"),
        format!("{:?}", r.kind).to_lowercase(),
        r.stream.as_deref().unwrap_or("-"),
        number,
        r.event_type.as_deref().unwrap_or("-"),
        flags.join(",")
    );
    if let Some(d) = &r.deletion {
        let what = match d.kind {
            DeletionKind::Tombstone => format!("HARD DELETE of {}", d.stream),
            DeletionKind::SoftDelete => format!("SOFT DELETE of {}", d.stream),
            DeletionKind::Truncation => {
                let limits: Vec<String> = [
                    d.truncate_before.map(|v| format!("$tb {v}")),
                    d.max_age_secs.map(|v| format!("$maxAge {v}s")),
                    d.max_count.map(|v| format!("$maxCount {v}")),
                ]
                .into_iter()
                .flatten()
                .collect();
                format!("TRUNCATES {}: {}", d.stream, limits.join(", "))
            }
        };
        line.push_str("  << ");
        line.push_str(&what);
    }
    line
}

fn short_flag(name: &'static str) -> &'static str {
    match name {
        "transaction_begin" => "begin",
        "transaction_end" => "end",
        "stream_delete" => "delete",
        "property_metadata" => "props",
        other => other,
    }
}
