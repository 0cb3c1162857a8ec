//! The engine's scenario suite, run unchanged against every backend: each test file picks a
//! backend (memory, folder, S3, Azure, GCS) by giving a [`Locations`] and calls these.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use esbackup_engine::testing::{FaultPlan, FaultyTarget};
use esbackup_engine::{backup, verify, EngineError, Target, VerifyOptions};
use esdb_sim::{run_live, Node, SimConfig};

use crate::support::{
    backup_contents, backup_options, copy_dir, database_files, restore_and_check, Slow,
};

/// Hands out empty backup locations on one backend.
pub trait Locations: Send + Sync {
    fn name(&self) -> String;
    /// A new, empty backup location.
    fn fresh(&self) -> Arc<dyn Target>;
}

/// A small node: 64 KiB chunks, index tables every 50 entries.
pub fn sim_config(seed: u64) -> SimConfig {
    SimConfig {
        chunk_size: 64 * 1024,
        seed,
        memtable_entries: 50,
        ..SimConfig::default()
    }
}

/// A stopped node with several chunks, index tables and a scavenge or two behind it.
pub fn settled_node(db: &Path, seed: u64, steps: usize) -> Node {
    let mut node = Node::create(
        db,
        SimConfig {
            scavenge: true,
            ..sim_config(seed)
        },
    )
    .unwrap();
    node.append(1500).unwrap();
    for _ in 0..steps {
        node.step().unwrap();
    }
    node.settle().unwrap();
    node
}

fn key_set(files: &BTreeMap<String, Vec<u8>>) -> BTreeSet<String> {
    files.keys().cloned().collect()
}

/// A static database backs up and restores byte-identical, except `truncate.chk` (= chaser).
pub async fn static_round_trip(loc: &dyn Locations) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 11, 200);
    let target = loc.fresh();
    let report = backup(target.clone(), &backup_options(&db)).await.unwrap();
    assert!(report.completed);
    let source = database_files(&db);
    assert_eq!(
        report.uploaded_keys,
        key_set(&source).into_iter().collect::<Vec<_>>(),
        "a first backup uploads every database file and nothing else"
    );
    let (restored, checked) = restore_and_check(target, dir.path(), "restored").await;
    assert!(checked.is_ok(), "{}: {:?}", loc.name(), checked.violations);
    let back = database_files(&restored);
    assert_eq!(key_set(&back), key_set(&source), "same files");
    for (name, bytes) in &source {
        assert!(back[name] == *bytes, "{name} differs after restore");
    }
    let chaser = std::fs::read(restored.join("chaser.chk")).unwrap();
    assert_eq!(
        std::fs::read(restored.join("truncate.chk")).unwrap(),
        chaser
    );
}

/// After mutations, a differential uploads exactly the files that changed or appeared and
/// deletes exactly those that went away; each result restores byte-identical.
pub async fn differential_uploads_only_changes(loc: &dyn Locations) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut node = settled_node(&db, 23, 100);
    let target = loc.fresh();
    backup(target.clone(), &backup_options(&db)).await.unwrap();

    let again = backup(target.clone(), &backup_options(&db)).await.unwrap();
    assert_eq!(
        again.uploaded.files, 0,
        "nothing changed: {:?}",
        again.uploaded_keys
    );
    assert_eq!(again.deleted.files, 0);

    for round in 0..6 {
        let before = database_files(&db);
        match round {
            0 => node.append(5).unwrap(),
            1 => node.append(400).unwrap(),
            _ => {
                for _ in 0..60 {
                    node.step().unwrap();
                }
            }
        }
        node.settle().unwrap();
        let after = database_files(&db);
        let changed: Vec<String> = after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        let gone: Vec<String> = before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .cloned()
            .collect();
        let report = backup(target.clone(), &backup_options(&db)).await.unwrap();
        assert_eq!(report.uploaded_keys, changed, "round {round}: uploads");
        let deleted: Vec<String> = report
            .deleted_keys
            .iter()
            .filter(|k| !k.ends_with(".old"))
            .cloned()
            .collect();
        assert_eq!(deleted, gone, "round {round}: deletions");
        assert!(
            report.uploaded.files < after.len() as u64,
            "round {round}: a differential, not a full copy"
        );
        let stored = backup_contents(target.as_ref()).await;
        assert!(!stored.keys().any(|k| k.ends_with(".old")), "no .old left");
        let expected: BTreeMap<String, Vec<u8>> = after;
        assert_eq!(
            stored.keys().cloned().collect::<BTreeSet<_>>(),
            key_set(&expected),
            "round {round}: the backup mirrors the database"
        );
        for (k, v) in &expected {
            assert!(
                stored[k] == v[..],
                "round {round}: {k} differs in the backup"
            );
        }
    }
    let (_, checked) = restore_and_check(target, dir.path(), "restored").await;
    assert!(checked.is_ok(), "{:?}", checked.violations);
}

/// What the live rounds saw.
#[derive(Debug, Default)]
pub struct LiveSummary {
    pub rounds: u64,
    pub backups: u64,
    pub aborted_by_scavenge: u64,
    pub live_steps: u64,
}

/// Backups taken while the simulator mutates the node; each restore must pass the checker.
/// `delay_us` slows every storage operation by up to that much (0 for real servers).
pub async fn live_rounds(
    loc: &dyn Locations,
    rounds: u64,
    first_seed: u64,
    delay_us: u64,
) -> LiveSummary {
    let mut summary = LiveSummary::default();
    for round in 0..rounds {
        let seed = first_seed + round;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let index = (round % 3 == 2).then(|| dir.path().join("elsewhere-index"));
        let cfg = SimConfig {
            scavenge: round % 2 == 1,
            index_dir: index.clone(),
            ..sim_config(seed)
        };
        let mut node = Node::create(&db, cfg).unwrap();
        node.append(200 + (seed % 7) as usize * 150).unwrap();
        let target: Arc<dyn Target> = Arc::new(Slow {
            inner: loc.fresh(),
            max_delay_us: delay_us,
        });
        let mut opts = backup_options(&db);
        opts.index = index.clone();
        backup(target.clone(), &opts)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: first backup: {e}"));
        summary.backups += 1;
        let live = run_live(node);
        for _ in 0..2 {
            match backup(target.clone(), &opts).await {
                Ok(_) => summary.backups += 1,
                Err(EngineError::SourceChanging(_)) => summary.aborted_by_scavenge += 1,
                Err(e) => panic!("seed {seed}: backup of a live node failed: {e}"),
            }
        }
        summary.live_steps += live.steps();
        live.stop().unwrap();
        let (_, checked) = restore_and_check(target.clone(), dir.path(), "restored").await;
        assert!(
            checked.is_ok(),
            "{} seed {seed}: restored database is inconsistent: {:?}",
            loc.name(),
            checked.violations
        );
        summary.rounds += 1;
    }
    summary
}

/// For one realistic differential run, fails remote operation k for every k: the backup must
/// restore and pass the checker, and a rerun must complete and equal a fresh full backup.
/// Returns how many crash points were tried.
pub async fn crash_points(loc: &dyn Locations) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let before = dir.path().join("db-before");
    let mut node = settled_node(&db, 42, 120);
    copy_dir(&db, &before);
    node.append(300).unwrap();
    for _ in 0..80 {
        node.step().unwrap();
    }
    node.settle().unwrap();

    let reference = loc.fresh();
    backup(reference.clone(), &backup_options(&db))
        .await
        .unwrap();
    let expected = backup_contents(reference.as_ref()).await;

    let mut k = 0;
    loop {
        let base = loc.fresh();
        backup(base.clone(), &backup_options(&before))
            .await
            .unwrap();
        let faulty = Arc::new(FaultyTarget::new(base.clone(), FaultPlan::CrashAt(k)));
        let outcome = backup(faulty.clone(), &backup_options(&db)).await;
        let (_, checked) =
            restore_and_check(base.clone(), dir.path(), &format!("restored-{k}")).await;
        assert!(
            checked.is_ok(),
            "{}: crash at operation {k} ({:?}) left an inconsistent backup: {:?}",
            loc.name(),
            faulty.log().get(k as usize),
            checked.violations
        );
        std::fs::remove_dir_all(dir.path().join(format!("restored-{k}"))).unwrap();
        backup(base.clone(), &backup_options(&db))
            .await
            .unwrap_or_else(|e| panic!("rerun after crash at {k}: {e}"));
        let got = backup_contents(base.as_ref()).await;
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "crash at {k}: rerun differs from a fresh full backup"
        );
        assert!(
            got == expected,
            "crash at {k}: rerun content differs from a full backup"
        );
        if outcome.is_ok() {
            return k;
        }
        k += 1;
    }
}

/// `verify` passes on a good backup and fails on a missing or damaged file.
pub async fn verify_finds_damage(loc: &dyn Locations) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 7, 60);
    let target = loc.fresh();
    backup(target.clone(), &backup_options(&db)).await.unwrap();
    let deep = VerifyOptions {
        read_data: true,
        ..VerifyOptions::default()
    };
    let ok = verify(target.clone(), &deep).await.unwrap();
    assert!(ok.is_ok(), "{:?}", ok.problems);

    let stored = backup_contents(target.as_ref()).await;
    let chunk = stored
        .keys()
        .find(|k| k.starts_with("chunk-"))
        .unwrap()
        .clone();
    let mut damaged = stored[&chunk].to_vec();
    damaged[200] ^= 0xff;
    target
        .put(&chunk, esbackup_engine::Upload::bytes(damaged))
        .await
        .unwrap();
    let shallow = verify(target.clone(), &VerifyOptions::default())
        .await
        .unwrap();
    assert!(shallow.is_ok(), "same size: a listing cannot tell");
    let found = verify(target.clone(), &deep).await.unwrap();
    assert!(
        found.problems.iter().any(|p| p.contains(&chunk)),
        "{:?}",
        found.problems
    );

    target.delete("chaser.chk").await.unwrap();
    let missing = verify(target.clone(), &VerifyOptions::default())
        .await
        .unwrap();
    assert!(missing
        .problems
        .iter()
        .any(|p| p.contains("chaser.chk is missing")));
}
