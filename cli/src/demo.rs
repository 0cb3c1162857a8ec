//! `esbackup demo`: the main job on an embedded default. Builds a sample database with the
//! simulator, backs it up to a local folder while the simulated node keeps writing, takes a
//! differential while it still writes, restores, checks the restored database the way the server
//! would open it, verifies the backup, and says what it did.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use esbackup_backends::open_target;
use esbackup_engine::{backup, restore, verify, BackupOptions, RestoreOptions, VerifyOptions};
use esdb_sim::{check, run_live, CheckOptions, Node, SimConfig};
use serde_json::json;

use crate::args::DemoArgs;
use crate::commands::default_storage;
use crate::exit::Failure;

pub async fn run(a: DemoArgs) -> Result<i32, Failure> {
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
    let result = demo(&dir, a.json).await;
    if a.keep || a.dir.is_some() {
        if let Some(t) = temp {
            let _ = t.keep();
        }
        say(a.json, &format!("kept everything in {}", dir.display()));
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

async fn demo(dir: &Path, as_json: bool) -> Result<i32, Failure> {
    let db = dir.join("db");
    let backup_dir = dir.join("backup");
    let restored = dir.join("restored");
    for d in [&db, &backup_dir, &restored] {
        if d.exists() {
            return Err(Failure::usage(format!(
                "{} already exists: give --dir an empty or new folder",
                d.display()
            )));
        }
    }
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
    let mut node = Node::create(&db, cfg).map_err(sim_err)?;
    node.append(20_000).map_err(sim_err)?;
    let target = open_target(&backup_dir.display().to_string(), &default_storage())?;

    say(as_json, "2. first backup while the node keeps writing");
    let live = run_live(node);
    let opts = BackupOptions::new(&db);
    let first = backup(target.clone(), &opts).await?;
    say(
        as_json,
        &format!(
            "   uploaded {} files ({} bytes); writer checkpoint {}",
            first.uploaded.files, first.uploaded.bytes, first.checkpoints.writer
        ),
    );

    say(as_json, "3. differential backup, the node still writing");
    let second = backup(target.clone(), &opts).await?;
    let steps = live.steps();
    let node = live.stop().map_err(sim_err)?;
    say(
        as_json,
        &format!(
            "   uploaded {} files ({} bytes), {} unchanged, {} deleted; the node made {steps} changes meanwhile (writer now {})",
            second.uploaded.files,
            second.uploaded.bytes,
            second.skipped.files,
            second.deleted.files,
            node.checkpoints().writer
        ),
    );

    say(
        as_json,
        &format!("4. restoring into {}", restored.display()),
    );
    let restore_report = restore(target.clone(), &RestoreOptions::new(&restored)).await?;
    say(
        as_json,
        &format!(
            "   restored {} files; truncate.chk = chaser.chk = {}",
            restore_report.restored.files, restore_report.truncate
        ),
    );

    say(
        as_json,
        "5. opening the restored database as the server would (checker)",
    );
    let checked = check(
        &restored,
        &restored.join("index"),
        &CheckOptions {
            archive: false,
            expect_truncate_equals_chaser: true,
        },
    );
    for v in &checked.violations {
        say(as_json, &format!("   violation: {v}"));
    }
    say(
        as_json,
        &format!(
            "   {}: {} chunks, {} index tables, log up to {}",
            if checked.is_ok() {
                "consistent"
            } else {
                "INCONSISTENT"
            },
            checked.chunks,
            checked.ptables,
            checked.writer
        ),
    );

    say(as_json, "6. verifying the backup, reading every byte back");
    let verified = verify(
        Arc::clone(&target),
        &VerifyOptions {
            read_data: true,
            ..VerifyOptions::default()
        },
    )
    .await?;
    say(
        as_json,
        &format!(
            "   {} ({} files)",
            if verified.is_ok() { "ok" } else { "FAILED" },
            verified.files
        ),
    );
    for p in &verified.problems {
        say(as_json, &format!("   problem: {p}"));
    }
    let ok = checked.is_ok() && verified.is_ok();
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "ok": ok,
                "first_backup": first,
                "differential_backup": second,
                "restore": restore_report,
                "checker_violations": checked.violations,
                "verify": verified,
            }))
            .expect("serialises")
        );
    } else {
        say(
            as_json,
            if ok {
                "demo ok: a live database was backed up twice, restored and found consistent"
            } else {
                "demo FAILED: see above"
            },
        );
    }
    Ok(if ok { 0 } else { 5 })
}
