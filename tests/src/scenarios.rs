//! The engine's scenario suite, run unchanged against every backend: each backend module of the
//! test suite gives a [`Locations`] and calls these.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use esbackup_engine::testing::{FaultPlan, FaultyTarget, Intercept, Op};
use esbackup_engine::{
    backup, forget, list, status, verify, ErrorKind, LockOptions, Target, VerifyOptions, Which,
};
use esdb_sim::{run_live, Node, SimConfig};

use crate::support::{
    assert_restores_to, assert_same_files, backup_contents, backup_options, copy_dir,
    database_files, latest_point, points, prune_keeping_last, restore_point_and_check,
    stored_objects, verify_read_data,
};

/// Hands out empty backup locations on one backend.
pub trait Locations: Send + Sync {
    fn name(&self) -> String;
    /// A new, empty backup location.
    fn fresh(&self) -> Arc<dyn Target>;
}

/// The locations of `inner`, compressed (zstd level 3) and encrypted with a fresh data key
/// each, as `esbackup init --encrypt --compression zstd` makes them.
pub struct Encoded<L>(pub L);

impl<L: Locations> Locations for Encoded<L> {
    fn name(&self) -> String {
        format!("{} (zstd:3, encrypted)", self.0.name())
    }
    fn fresh(&self) -> Arc<dyn Target> {
        encoded(self.0.fresh(), encoded_scheme())
    }
}

/// How [`Encoded`] locations encode: zstd:3, encrypted under a fresh random key.
pub fn encoded_scheme() -> esbackup_engine::codec::Scheme {
    esbackup_engine::codec::Scheme {
        level: Some(3),
        key: Some(esbackup_engine::codec::DataKey::random()),
    }
}

/// `store` through the codec with `scheme`.
pub fn encoded(store: Arc<dyn Target>, scheme: esbackup_engine::codec::Scheme) -> Arc<dyn Target> {
    Arc::new(esbackup_engine::codec::CodecTarget::new(store, scheme))
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

/// A settled node in a temporary folder, at `dir/db`.
pub struct Settled {
    /// Holds the folder: it is removed when this is dropped.
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub node: Node,
}

/// [`settled_node`] from `seed` after `steps`, in a new temporary folder.
pub fn settled(seed: u64, steps: usize) -> Settled {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let node = settled_node(&db, seed, steps);
    Settled { dir, db, node }
}

/// Backs `db` up into `target`: the new point's id, and the database files it was taken of.
pub async fn backup_recording(
    target: &Arc<dyn Target>,
    db: &Path,
) -> (String, BTreeMap<String, Vec<u8>>) {
    let report = backup(target.clone(), &backup_options(db)).await.unwrap();
    (report.point.expect("a point"), database_files(db))
}

/// One change of a node between runs: appends (some completing chunks), or random steps
/// (index merges, scavenges that drop records and merge chunks, side-file flushes).
pub fn mutate(node: &mut Node, round: usize) {
    match round % 4 {
        0 => node.append(5).unwrap(),
        1 => node.append(400).unwrap(),
        _ => {
            for _ in 0..60 {
                node.step().unwrap();
            }
        }
    }
    node.settle().unwrap();
}

/// A static database backs up and restores byte-identical, except `truncate.chk` (= chaser).
pub async fn static_round_trip(loc: &dyn Locations) {
    let Settled { dir, db, .. } = settled(11, 200);
    let target = loc.fresh();
    let report = backup(target.clone(), &backup_options(&db)).await.unwrap();
    assert!(report.point.is_some());
    let source = database_files(&db);
    assert_eq!(
        report.stored_keys,
        source.keys().cloned().collect::<Vec<_>>(),
        "a first backup stores every database file and nothing else"
    );
    let (scratch, name) = (dir.path(), loc.name());
    let restored =
        assert_restores_to(target, Which::Latest, scratch, "restored", &source, &name).await;
    let chaser = std::fs::read(restored.join("chaser.chk")).unwrap();
    assert_eq!(
        std::fs::read(restored.join("truncate.chk")).unwrap(),
        chaser
    );
}

const NOTES: &str = "custom-notes.txt";
const VECTORS: &str = "index/kontext/vectors.bin";

/// `len` bytes that differ with `seed`.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// Files the engine does not know — an operator's `custom-notes.txt`, a plugin's files under
/// `index/kontext` — are part of the database: restored byte-exact; changed, stored again;
/// deleted, gone from the newest point and the root mirror but still in the older point; one
/// that changes while it is copied is left out of that point and reported by name.
pub async fn other_files_round_trip(loc: &dyn Locations) {
    let Settled { dir, db, .. } = settled(31, 60);
    let (notes, vectors) = (db.join(NOTES), db.join(VECTORS));
    std::fs::create_dir_all(vectors.parent().unwrap()).unwrap();
    std::fs::write(&notes, b"node 1: restored on 2026-11-30, see ticket 42\n").unwrap();
    std::fs::write(&vectors, pattern(300_000, 1)).unwrap();
    std::fs::write(vectors.with_file_name("segment.tmp"), b"a temp file").unwrap();
    let target = loc.fresh();
    let name = loc.name();

    let first = backup(target.clone(), &backup_options(&db)).await.unwrap();
    for key in [NOTES, VECTORS] {
        assert!(
            first.stored_keys.iter().any(|k| k == key),
            "{name}: {key} stored"
        );
    }
    assert!(
        !first.stored_keys.iter().any(|k| k.ends_with(".tmp")),
        "{name}: temp files are not stored: {:?}",
        first.stored_keys
    );
    assert!(first.skipped.is_empty(), "{name}: {:?}", first.skipped);
    let first_files = database_files(&db);
    // A restore of the newest point into `folder`: checked, and holding exactly `want`.
    let scratch = dir.path();
    let restores_latest_to = |folder: &'static str, want: BTreeMap<String, Vec<u8>>, what| {
        let (target, what) = (target.clone(), format!("{name}: {what}"));
        async move { assert_restores_to(target, Which::Latest, scratch, folder, &want, &what).await }
    };
    restores_latest_to("r-first", database_files(&db), "first point").await;

    // One changed, one deleted.
    std::fs::write(&vectors, pattern(310_000, 2)).unwrap();
    std::fs::remove_file(&notes).unwrap();
    let second = backup(target.clone(), &backup_options(&db)).await.unwrap();
    assert!(second.stored_keys.iter().any(|k| k == VECTORS), "{name}");
    assert_eq!(second.gone_keys, [NOTES], "{name}");
    let what = "after a change and a deletion";
    restores_latest_to("r-second", database_files(&db), what).await;
    let older = Which::Id(first.point.clone().unwrap());
    let (restored, _) = restore_point_and_check(target.clone(), older, dir.path(), "r-older").await;
    assert_same_files(
        &database_files(&restored),
        &first_files,
        &format!("{name}: the older point keeps the deleted file and the old version"),
    );
    // An encoded location keeps no root mirror.
    if !target.encodes() {
        let mirror = backup_contents(target.as_ref()).await;
        assert!(
            !mirror.contains_key(NOTES),
            "{name}: deleted from the root mirror"
        );
        assert_eq!(mirror[VECTORS], pattern(310_000, 2), "{name}: root mirror");
    }

    // Changed before the run (so it is copied) and again while it is copied: left out, by name.
    std::fs::write(&vectors, pattern(320_000, 3)).unwrap();
    let writing = vectors.clone();
    let data_prefix = format!("{}{VECTORS}/", esbackup_engine::layout::DATA_DIR);
    let hooked: Arc<dyn Target> = Arc::new(Intercept::before(target.clone(), move |op| {
        if matches!(op, Op::Put(k, _) if k.starts_with(&data_prefix)) {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&writing)
                .unwrap();
            f.write_all(b"appended while it is copied").unwrap();
        }
    }));
    let third = backup(hooked, &backup_options(&db)).await.unwrap();
    let skipped: Vec<&str> = third.skipped.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(skipped, [VECTORS], "{name}: reported by name");
    assert!(
        third.skipped[0].why.contains("changed"),
        "{:?}",
        third.skipped
    );
    assert!(!third.stored_keys.iter().any(|k| k == VECTORS), "{name}");
    let point = latest_point(&target).await;
    assert_eq!(Some(&point.id), third.point.as_ref());
    assert!(
        !point.files.contains_key(VECTORS),
        "{name}: left out of the point"
    );
    assert!(
        point.notes.iter().any(|n| n.contains(VECTORS)),
        "{name}: the point says so: {:?}",
        point.notes
    );
    let mirror = backup_contents(target.as_ref()).await;
    assert!(
        !mirror.contains_key(VECTORS),
        "{name}: the root mirror follows the point"
    );
    let mut expected = database_files(&db);
    expected.remove(VECTORS);
    let what = "the point without the file that changed";
    restores_latest_to("r-third", expected, what).await;

    // Quiet again: stored, and restored byte-exact.
    let fourth = backup(target.clone(), &backup_options(&db)).await.unwrap();
    assert!(fourth.skipped.is_empty(), "{name}: {:?}", fourth.skipped);
    assert!(fourth.stored_keys.iter().any(|k| k == VECTORS), "{name}");
    restores_latest_to("r-fourth", database_files(&db), "quiet again").await;
    let verified = verify_read_data(target).await;
    assert!(verified.is_ok(), "{name}: {:?}", verified.problems());
}

/// After mutations, a run stores exactly the files that changed (a growing chunk: the bytes it
/// gained), names those that went away, and its point restores byte-identical.
pub async fn differential_stores_only_changes(loc: &dyn Locations) {
    let Settled { dir, db, mut node } = settled(23, 100);
    let target = loc.fresh();
    backup(target.clone(), &backup_options(&db)).await.unwrap();

    let again = backup(target.clone(), &backup_options(&db)).await.unwrap();
    assert_eq!(
        again.stored.files, 0,
        "nothing changed: {:?}",
        again.stored_keys
    );

    for round in 0..6 {
        let before = database_files(&db);
        mutate(&mut node, round);
        let after = database_files(&db);
        let changed: BTreeSet<String> = after
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
        let stored: BTreeSet<String> = report.stored_keys.iter().cloned().collect();
        assert!(
            changed.is_subset(&stored),
            "round {round}: changed {changed:?} not all stored ({stored:?})"
        );
        for extra in stored.difference(&changed) {
            // Side files and other files are compared by their metadata: one rewritten with the
            // same bytes (`.forceverify` removed and created again) is stored again.
            assert!(
                extra.contains("scavenging")
                    || extra.contains("stream-existence")
                    || extra.ends_with(".forceverify"),
                "round {round}: {extra} stored although unchanged"
            );
        }
        assert_eq!(report.gone_keys, gone, "round {round}: files gone");
        assert!(
            report.stored.files < after.len() as u64,
            "round {round}: a differential, not a full copy"
        );
        let (name, what) = (format!("restored-{round}"), format!("round {round}"));
        assert_restores_to(
            target.clone(),
            Which::Latest,
            dir.path(),
            &name,
            &after,
            &what,
        )
        .await;
    }
}

/// History: `runs` runs with the node changing between them (appends, chunk completions, index
/// merges, scavenges that drop records and merge chunks); after each the source is copied as it
/// was. Every point then restores equal to its copy, and the checker accepts it.
pub async fn history_restores_every_point(loc: &dyn Locations, runs: usize) {
    let Settled { dir, db, mut node } = settled(77, 50);
    let target = loc.fresh();
    let mut copies = BTreeMap::new();
    for run in 0..runs {
        if run > 0 {
            mutate(&mut node, run);
        }
        let (id, files) = backup_recording(&target, &db).await;
        copies.insert(id, files);
    }
    let stored = points(&target).await;
    assert_eq!(stored.len(), runs, "{}: one point per run", loc.name());
    for (i, p) in stored.iter().enumerate() {
        let (name, what) = (
            format!("restored-{i:02}"),
            format!("{} point {i}", loc.name()),
        );
        let (which, want) = (Which::Id(p.id.clone()), &copies[&p.id]);
        let restored =
            assert_restores_to(target.clone(), which, dir.path(), &name, want, &what).await;
        std::fs::remove_dir_all(&restored).unwrap();
    }
}

/// What the live rounds saw.
#[derive(Debug, Default)]
pub struct LiveSummary {
    pub rounds: u64,
    pub backups: u64,
    pub aborted_by_scavenge: u64,
    pub live_steps: u64,
    pub points_restored: u64,
}

/// Backups taken while the simulator mutates the node; every point of the round must restore
/// and pass the checker. `delay_us` slows every storage operation by up to that much.
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
        let target: Arc<dyn Target> = Arc::new(Intercept::slow(
            loc.fresh(),
            std::time::Duration::from_micros(delay_us),
        ));
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
                Err(e) if e.kind() == ErrorKind::SourceChanging => summary.aborted_by_scavenge += 1,
                Err(e) => panic!("seed {seed}: backup of a live node failed: {e}"),
            }
        }
        summary.live_steps += live.steps();
        live.stop().unwrap();
        for (i, p) in list(target.clone()).await.unwrap().points().enumerate() {
            let name = format!("restored-{i}");
            let (restored, checked) =
                restore_point_and_check(target.clone(), Which::Id(p.id.clone()), dir.path(), &name)
                    .await;
            assert!(
                checked.is_ok(),
                "{} seed {seed} point {i}: restored database is inconsistent: {:?}",
                loc.name(),
                checked.violations
            );
            std::fs::remove_dir_all(restored).unwrap();
            summary.points_restored += 1;
        }
        summary.rounds += 1;
    }
    summary
}

/// For one realistic run, fails remote operation k for every k: the earlier point must still
/// restore equal to the source it was taken of, and a rerun must store a point that restores
/// equal to the source now. Returns how many crash points were tried.
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
    let (old, new) = (database_files(&before), database_files(&db));

    let mut k = 0;
    loop {
        let base = loc.fresh();
        backup(base.clone(), &backup_options(&before))
            .await
            .unwrap();
        let faulty = Arc::new(FaultyTarget::new(base.clone(), FaultPlan::CrashAt(k)));
        let outcome = backup(faulty.clone(), &backup_options(&db)).await;
        let crashed_at = faulty.log().get(k as usize).cloned();
        let all = points(&base).await;
        let first = all.first().expect("the earlier point");
        let name = format!("before-{k}");
        let what = format!(
            "{}: crash at operation {k} ({crashed_at:?}): earlier point",
            loc.name()
        );
        let first = Which::Id(first.id.clone());
        let restored =
            assert_restores_to(base.clone(), first, dir.path(), &name, &old, &what).await;
        std::fs::remove_dir_all(&restored).unwrap();
        let verified = verify(base.clone(), &VerifyOptions::default())
            .await
            .unwrap();
        assert!(verified.is_ok(), "crash at {k}: {:?}", verified.problems());

        backup(base.clone(), &backup_options(&db))
            .await
            .unwrap_or_else(|e| panic!("rerun after crash at {k}: {e}"));
        let (name, what) = (format!("after-{k}"), format!("rerun after crash at {k}"));
        let restored =
            assert_restores_to(base.clone(), Which::Latest, dir.path(), &name, &new, &what).await;
        std::fs::remove_dir_all(&restored).unwrap();
        if outcome.is_ok() {
            return k;
        }
        k += 1;
    }
}

/// `verify` passes on good points and names a missing or damaged object; `restore` of a point
/// with a missing object fails before touching the destination.
pub async fn verify_finds_damage(loc: &dyn Locations) {
    let Settled { dir, db, .. } = settled(7, 60);
    let target = loc.fresh();
    backup(target.clone(), &backup_options(&db)).await.unwrap();
    let deep = VerifyOptions {
        read_data: true,
        ..VerifyOptions::default()
    };
    let ok = verify(target.clone(), &deep).await.unwrap();
    assert!(ok.is_ok(), "{:?}", ok.problems());

    let stored = stored_objects(target.as_ref()).await;
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
    // Same size: a listing cannot tell (an encoded location stores other bytes at another
    // size, which it can).
    assert!(
        shallow.is_ok() || target.encodes(),
        "same size: a listing cannot tell"
    );
    let found = verify(target.clone(), &deep).await.unwrap();
    assert!(
        found.problems().iter().any(|p| p.contains(&chunk)),
        "{:?}",
        found.problems()
    );
    let restore_err = esbackup_engine::restore(
        target.clone(),
        &esbackup_engine::RestoreOptions::new(dir.path().join("r-damaged")),
    )
    .await
    .unwrap_err();
    assert_eq!(restore_err.kind(), ErrorKind::Damaged, "{restore_err}");
    assert!(
        !dir.path().join("r-damaged").join(&chunk).exists(),
        "a failed restore leaves nothing that looks like a database"
    );

    target.delete(&chunk).await.unwrap();
    let missing = verify(target.clone(), &VerifyOptions::default())
        .await
        .unwrap();
    assert!(
        missing
            .problems()
            .iter()
            .any(|p| p.contains(&chunk) && p.contains("missing")),
        "{:?}",
        missing.problems()
    );
    let err = esbackup_engine::restore(
        target,
        &esbackup_engine::RestoreOptions::new(dir.path().join("r-missing")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Damaged);
    assert!(err.to_string().contains(&chunk), "{err}");
}

/// `forget --keep-last 3 --prune` after `runs` points leaves exactly 3 points, each restoring
/// equal to its copy, and reclaims the rest. Returns (stored bytes before, after).
pub async fn forget_keeps_last_three(loc: &dyn Locations, runs: usize) -> (u64, u64) {
    let Settled { dir, db, mut node } = settled(88, 40);
    let target = loc.fresh();
    let mut copies = BTreeMap::new();
    for run in 0..runs {
        mutate(&mut node, run + 1);
        let (id, files) = backup_recording(&target, &db).await;
        copies.insert(id, files);
    }
    let opts = prune_keeping_last(3, LockOptions::default().wait);
    let report = forget(target.clone(), &opts).await.unwrap();
    assert_eq!(report.kept.len(), 3);
    assert_eq!(report.forgotten.len(), runs - 3);
    assert!(report.stored_bytes_after < report.stored_bytes_before);
    let left = points(&target).await;
    assert_eq!(left.len(), 3, "{}: exactly 3 points left", loc.name());
    let s = status(target.clone()).await.unwrap();
    assert_eq!(s.points, 3);
    assert_eq!(
        s.stored_bytes, report.stored_bytes_after,
        "reported bytes are what is stored"
    );
    for (i, p) in left.iter().enumerate() {
        let (name, what) = (
            format!("kept-{i}"),
            format!("{} kept point {i}", loc.name()),
        );
        let (which, want) = (Which::Id(p.id.clone()), &copies[&p.id]);
        assert_restores_to(target.clone(), which, dir.path(), &name, want, &what).await;
    }
    let verified = verify_read_data(target).await;
    assert!(verified.is_ok(), "{:?}", verified.problems());
    (report.stored_bytes_before, report.stored_bytes_after)
}

/// `forget --prune` killed at every remote operation k leaves every point the policy keeps
/// restorable, and a rerun finishes the job. Returns how many crash points were tried.
pub async fn forget_crash_points(loc: &dyn Locations) -> u64 {
    let Settled { dir, db, mut node } = settled(99, 40);
    let template = loc.fresh();
    for run in 0..5 {
        mutate(&mut node, run + 1);
        backup(template.clone(), &backup_options(&db))
            .await
            .unwrap();
    }
    let objects = stored_objects(template.as_ref()).await;
    let opts = prune_keeping_last(2, LockOptions::default().wait);
    let mut k = 0;
    loop {
        let base = loc.fresh();
        for (key, bytes) in &objects {
            if !key.starts_with(esbackup_engine::layout::LOCKS_DIR) {
                base.put(key, esbackup_engine::Upload::bytes(bytes.clone()))
                    .await
                    .unwrap();
            }
        }
        let kept: Vec<String> = list(base.clone())
            .await
            .unwrap()
            .points()
            .rev()
            .take(2)
            .map(|p| p.id.clone())
            .collect();
        let faulty: Arc<dyn Target> =
            Arc::new(FaultyTarget::new(base.clone(), FaultPlan::CrashAt(k)));
        let outcome = forget(faulty, &opts).await;
        for id in &kept {
            let (restored, checked) = restore_point_and_check(
                base.clone(),
                Which::Id(id.clone()),
                dir.path(),
                &format!("crash-{k}-{id}"),
            )
            .await;
            assert!(
                checked.is_ok(),
                "forget crash at {k}: {:?}",
                checked.violations
            );
            std::fs::remove_dir_all(restored).unwrap();
        }
        forget(base.clone(), &opts)
            .await
            .unwrap_or_else(|e| panic!("forget rerun after crash at {k}: {e}"));
        assert_eq!(points(&base).await.len(), 2);
        if outcome.is_ok() {
            return k;
        }
        k += 1;
    }
}
