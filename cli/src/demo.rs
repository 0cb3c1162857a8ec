//! `esbackup demo`: the main job on an embedded default. Builds a sample database with the
//! simulator, backs it up to a local folder twice while the simulated node keeps writing (two
//! restore points), restores both points, checks each restored database the way the server
//! would open it, verifies every point, and says what it did.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use esbackup_backends::{open_target, TargetOptions};
use esbackup_engine::{
    backup, list, restore, verify, BackupOptions, BackupReport, RestoreOptions, Target,
    VerifyOptions, VerifyReport, Which,
};
use esdb_sim::{check, run_live, CheckOptions, CheckReport, Node, SimConfig};
use serde_json::json;

use crate::args::DemoArgs;
use crate::exit::Failure;

pub async fn run(a: DemoArgs, as_json: bool) -> Result<i32, Failure> {
    let mut temp = None;
    let dir: PathBuf = match &a.dir {
        Some(d) => d.clone(),
        None => {
            let t = tempfile::Builder::new()
                .prefix("esbackup-demo-")
                .tempdir()
                .map_err(|e| Failure::usage(format!("cannot create a temporary folder: {e}")))?;
            let path = t.path().to_path_buf();
            temp = Some(t);
            path
        }
    };
    let result = demo(&dir, as_json).await;
    if a.keep || a.dir.is_some() {
        if let Some(t) = temp {
            let _ = t.keep();
        }
        say(as_json, &format!("kept everything in {}", dir.display()));
    }
    result
}

fn say(as_json: bool, line: &str) {
    if !as_json {
        println!("{line}");
    }
}

fn sim_err(e: std::io::Error) -> Failure {
    Failure {
        code: 1,
        message: format!("simulator: {e}"),
    }
}

fn checked(db: &Path) -> CheckReport {
    check(
        db,
        &db.join("index"),
        &CheckOptions {
            archive: false,
            expect_truncate_equals_chaser: true,
        },
    )
}

/// The demo's folders, each new.
struct Folders {
    db: PathBuf,
    backup: PathBuf,
    restored: PathBuf,
    restored_first: PathBuf,
}

impl Folders {
    fn in_dir(dir: &Path) -> Result<Folders, Failure> {
        let f = Folders {
            db: dir.join("db"),
            backup: dir.join("backup"),
            restored: dir.join("restored-latest"),
            restored_first: dir.join("restored-first"),
        };
        for d in [&f.db, &f.backup, &f.restored, &f.restored_first] {
            if d.exists() {
                return Err(Failure::usage(format!(
                    "{} already exists: give --dir an empty or new folder",
                    d.display()
                )));
            }
        }
        Ok(f)
    }
}

async fn demo(dir: &Path, as_json: bool) -> Result<i32, Failure> {
    let folders = Folders::in_dir(dir)?;
    let target: Arc<dyn Target> = open_target(
        &folders.backup.display().to_string(),
        &TargetOptions::default(),
    )?;
    let (first, second) = backup_twice(&folders.db, &target, as_json).await?;
    let points: Vec<_> = list(target.clone()).await?.points().cloned().collect();
    say(
        as_json,
        &format!("4. the location holds {} restore points", points.len()),
    );
    say(
        as_json,
        &format!(
            "5. restoring the newest point into {}",
            folders.restored.display()
        ),
    );
    let latest = restore(target.clone(), &RestoreOptions::new(&folders.restored)).await?;
    let latest_check = checked(&folders.restored);
    say(
        as_json,
        &format!(
            "6. restoring the first point into {}",
            folders.restored_first.display()
        ),
    );
    let mut first_opts = RestoreOptions::new(&folders.restored_first);
    first_opts.point = Which::Id(points[0].id.clone());
    let earliest = restore(target.clone(), &first_opts).await?;
    let first_check = checked(&folders.restored_first);
    for (name, c) in [("newest", &latest_check), ("first", &first_check)] {
        say_checked(as_json, name, c);
    }
    let verified = verify_all(&target, as_json).await?;
    let ok = latest_check.is_ok() && first_check.is_ok() && verified.is_ok();
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "ok": ok,
                "first_backup": first,
                "second_backup": second,
                "points": points,
                "restore_latest": latest,
                "restore_first": earliest,
                "checker_violations": [latest_check.violations, first_check.violations],
                "verify": verified,
            }))
            .expect("serialises")
        );
    } else if ok {
        say(as_json, "demo ok: a live database was backed up twice; both restore points restored and were found consistent");
    } else {
        say(as_json, "demo FAILED: see above");
    }
    Ok(if ok { 0 } else { 5 })
}

/// Builds the sample database and backs it up twice while the simulated node keeps writing.
async fn backup_twice(
    db: &Path,
    target: &Arc<dyn Target>,
    as_json: bool,
) -> Result<(BackupReport, BackupReport), Failure> {
    let cfg = SimConfig {
        chunk_size: 1 << 20,
        seed: 2026,
        scavenge: false,
        ..SimConfig::default()
    };
    say(
        as_json,
        &format!(
            "1. building a sample database in {} (1 MiB chunks)",
            db.display()
        ),
    );
    let mut node = Node::create(db, cfg).map_err(sim_err)?;
    node.append(20_000).map_err(sim_err)?;
    say(as_json, "2. first backup while the node keeps writing");
    let live = run_live(node);
    let opts = BackupOptions::new(db);
    let first = backup(target.clone(), &opts).await?;
    say(
        as_json,
        &format!(
            "   restore point {}: stored {} files ({} bytes); writer checkpoint {}",
            first.point.as_deref().unwrap_or("-"),
            first.stored.files,
            first.stored.bytes,
            first.checkpoints.writer
        ),
    );
    say(
        as_json,
        "3. second backup, the node still writing: only what changed is stored",
    );
    let second = backup(target.clone(), &opts).await?;
    let steps = live.steps();
    live.stop().map_err(sim_err)?;
    say(
        as_json,
        &format!(
            "   restore point {}: stored {} files ({} bytes), {} unchanged; the node made {steps} changes meanwhile",
            second.point.as_deref().unwrap_or("-"),
            second.stored.files,
            second.stored.bytes,
            second.unchanged.files,
        ),
    );
    Ok((first, second))
}

/// What the checker found in a restored database, opened as the server would.
fn say_checked(as_json: bool, name: &str, c: &CheckReport) {
    for v in &c.violations {
        say(as_json, &format!("   violation ({name}): {v}"));
    }
    say(
        as_json,
        &format!(
            "   {name} point, opened as the server would: {} ({} chunks, {} index tables, log up to {})",
            if c.is_ok() { "consistent" } else { "INCONSISTENT" },
            c.chunks,
            c.ptables,
            c.writer
        ),
    );
}

/// Verifies every point, reading every byte back.
async fn verify_all(target: &Arc<dyn Target>, as_json: bool) -> Result<VerifyReport, Failure> {
    say(as_json, "7. verifying every point, reading every byte back");
    let opts = VerifyOptions {
        read_data: true,
        ..VerifyOptions::default()
    };
    let verified = verify(target.clone(), &opts).await?;
    say(
        as_json,
        &format!(
            "   {} ({} points, {} objects)",
            if verified.is_ok() { "ok" } else { "FAILED" },
            verified.points.len(),
            verified.objects
        ),
    );
    for p in verified.problems() {
        say(as_json, &format!("   problem: {p}"));
    }
    Ok(verified)
}
