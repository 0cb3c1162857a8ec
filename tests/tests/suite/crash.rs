//! Crash sweeps: a run fails at remote operation k, for every k, over several seeds and
//! mutation mixes, archive mode and small chunks. Every earlier point must still restore equal
//! to the source it was taken of, every point must verify, and a rerun must store a point that
//! restores equal to the source.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use esbackup_engine::testing::{FaultPlan, FaultyTarget, MemoryTarget};
use esbackup_engine::{backup, restore, verify, RestoreOptions, Target, VerifyOptions, Which};
use esbackup_tests::scenarios::sim_config;
use esbackup_tests::support::{backup_options, copy_dir, database_files, points};
use esdb_sim::{check, CheckOptions, Node, SimConfig};

use crate::common::{settled, Settled};

#[derive(Clone, Debug)]
struct Sweep {
    seed: u64,
    events: usize,
    steps: usize,
    more_events: usize,
    more_steps: usize,
    chunk_size: u32,
    archive: bool,
    /// Only operation k fails (transiently), instead of k and everything after it.
    fail_once: bool,
}

impl Sweep {
    fn config(&self) -> SimConfig {
        SimConfig {
            chunk_size: self.chunk_size,
            archive: self.archive,
            scavenge: true,
            ..sim_config(self.seed)
        }
    }
}

fn base_sweep(seed: u64) -> Sweep {
    Sweep {
        seed,
        events: 500 + 150 * seed as usize,
        steps: 60 + 20 * seed as usize,
        more_events: 100 + 60 * seed as usize,
        more_steps: 40 + 25 * seed as usize,
        chunk_size: 64 * 1024,
        archive: false,
        fail_once: false,
    }
}

fn sweep_dirs(s: &Sweep, dir: &Path) -> (PathBuf, PathBuf) {
    let db = dir.join("db");
    let before = dir.join("db-before");
    let mut node = Node::create(&db, s.config()).unwrap();
    node.append(s.events).unwrap();
    for _ in 0..s.steps {
        node.step().unwrap();
    }
    node.settle().unwrap();
    copy_dir(&db, &before);
    node.append(s.more_events).unwrap();
    for _ in 0..s.more_steps {
        node.step().unwrap();
    }
    node.settle().unwrap();
    (db, before)
}

/// Restores point `which` of `t` into `dest`; what is wrong with it compared to `want`.
async fn restored_problem(
    t: Arc<dyn Target>,
    which: Which,
    dest: &Path,
    want: &Path,
    archive: bool,
) -> Option<String> {
    let mut opts = RestoreOptions::new(dest);
    opts.point = which;
    let problem = match restore(t, &opts).await {
        Err(e) => Some(format!("restore failed: {e}")),
        Ok(_) => {
            let checked = check(
                dest,
                &dest.join("index"),
                &CheckOptions {
                    archive,
                    expect_truncate_equals_chaser: true,
                },
            );
            if !checked.is_ok() {
                Some(format!("checker: {:?}", checked.violations))
            } else if database_files(dest) != database_files(want) {
                Some("restored files differ from the source".into())
            } else {
                None
            }
        }
    };
    let _ = std::fs::remove_dir_all(dest);
    problem
}

async fn sweep(s: Sweep) -> (u64, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let (db, before) = sweep_dirs(&s, dir.path());
    let base = MemoryTarget::new();
    let mut opts = backup_options(&before);
    opts.concurrency = Some(2);
    backup(Arc::new(base.clone()), &opts).await.unwrap();
    let first = points(&(Arc::new(base.clone()) as Arc<dyn Target>)).await[0]
        .id
        .clone();
    let mut opts = backup_options(&db);
    opts.concurrency = Some(2);
    let mut problems = Vec::new();
    for k in 0.. {
        let t = base.deep_clone();
        let plan = if s.fail_once {
            FaultPlan::FailOnce(k)
        } else {
            FaultPlan::CrashAt(k)
        };
        let faulty = Arc::new(FaultyTarget::new(t.clone(), plan));
        let outcome = backup(faulty.clone(), &opts).await;
        let at = format!(
            "seed {} k {k} ({})",
            s.seed,
            faulty.log().get(k as usize).cloned().unwrap_or_default()
        );
        let target: Arc<dyn Target> = Arc::new(t.clone());
        let (point, dest) = (Which::Id(first.clone()), dir.path().join(format!("p{k}")));
        if let Some(p) = restored_problem(target.clone(), point, &dest, &before, s.archive).await {
            problems.push(format!("{at}: the earlier point: {p}"));
        }
        let v = verify(target.clone(), &VerifyOptions::default())
            .await
            .unwrap();
        if !v.is_ok() {
            problems.push(format!("{at}: verify: {:?}", v.problems()));
        }
        match backup(target.clone(), &opts).await {
            Ok(_) => {
                let dest = dir.path().join(format!("r{k}"));
                if let Some(p) =
                    restored_problem(target, Which::Latest, &dest, &db, s.archive).await
                {
                    problems.push(format!("{at}: the rerun's point: {p}"));
                }
            }
            Err(e) => problems.push(format!("{at}: rerun failed: {e}")),
        }
        if outcome.is_ok() {
            return (k, problems);
        }
    }
    unreachable!()
}

/// Runs sweep `s` (named `what` in the output) and asserts it found no problem.
async fn sweep_finds_no_problem(what: &str, s: Sweep) {
    let (points, problems) = sweep(s).await;
    println!("{what}: {points} points");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_any_operation_over_several_seeds_and_mutation_mixes() {
    let mut total = 0;
    let mut problems = Vec::new();
    for seed in 1..=5 {
        let (points, found) = sweep(base_sweep(seed)).await;
        println!(
            "crash sweep seed {seed}: {points} crash points, {} problems",
            found.len()
        );
        assert!(points > 10, "seed {seed}: only {points} operations");
        total += points;
        problems.extend(found);
    }
    println!("crash sweeps: {total} crash points in all");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_failed_operation_anywhere_leaves_every_point_restorable() {
    for seed in [2, 4] {
        let s = Sweep {
            fail_once: true,
            ..base_sweep(seed)
        };
        sweep_finds_no_problem(&format!("single-failure sweep seed {seed}"), s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_sweep_on_an_archive_mode_node() {
    let s = Sweep {
        archive: true,
        events: 1200,
        steps: 250,
        more_events: 300,
        more_steps: 150,
        ..base_sweep(3)
    };
    sweep_finds_no_problem("archive-mode crash sweep", s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_sweep_with_small_chunks() {
    let s = Sweep {
        chunk_size: 10_000,
        events: 400,
        steps: 80,
        more_events: 120,
        more_steps: 60,
        ..base_sweep(7)
    };
    sweep_finds_no_problem("small-chunk crash sweep", s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_the_first_backup_then_a_rerun() {
    let Settled { dir, db, .. } = settled(71, 80);
    for k in 0.. {
        let t = MemoryTarget::new();
        let faulty = Arc::new(FaultyTarget::new(t.clone(), FaultPlan::CrashAt(k)));
        let outcome = backup(faulty, &backup_options(&db)).await;
        let target: Arc<dyn Target> = Arc::new(t);
        backup(target.clone(), &backup_options(&db))
            .await
            .unwrap_or_else(|e| panic!("rerun after a crash at {k} of the first run: {e}"));
        let dest = dir.path().join(format!("r{k}"));
        let problem = restored_problem(target, Which::Latest, &dest, &db, false).await;
        assert!(problem.is_none(), "crash at {k}: {problem:?}");
        if outcome.is_ok() {
            break;
        }
    }
}
