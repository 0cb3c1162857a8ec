//! `copy` scenarios, run on every backend like the rest of the suite (`scenarios`): a copied
//! history restores point for point, incrementally and with retention of its own, and a copy
//! killed at any operation leaves the destination's points whole.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use esbackup_engine::testing::{FaultPlan, FaultyTarget};
use esbackup_engine::{
    copy, forget, list, verify, CopyOptions, CopyReport, ErrorKind, Target, VerifyOptions, Which,
};

use crate::scenarios::{backup_recording, mutate, settled, Locations, Settled};
use crate::support::{assert_restores_to, prune_keeping_last, verify_read_data};

/// The database files of each point, by point id.
pub type Copies = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// Copies `from` to `to` with the default selection (every newer point).
pub async fn copy_all(from: &Arc<dyn Target>, to: &Arc<dyn Target>) -> CopyReport {
    copy(from.clone(), to.clone(), &CopyOptions::default())
        .await
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", from.describe(), to.describe()))
}

/// Asserts that every point of `target` restores to its files in `copies`, that
/// `verify --read-data` finds nothing, and that the root mirror is the newest point's.
pub async fn assert_every_point_restores(
    target: &Arc<dyn Target>,
    copies: &Copies,
    scratch: &Path,
    what: &str,
) {
    let ids: Vec<String> = list(target.clone())
        .await
        .unwrap()
        .points()
        .map(|p| p.id.clone())
        .collect();
    assert!(!ids.is_empty(), "{what}: no points");
    for (i, id) in ids.iter().enumerate() {
        let name = format!(
            "{}-{i:02}",
            what.replace(|c: char| !c.is_alphanumeric(), "-")
        );
        let restored = assert_restores_to(
            target.clone(),
            Which::Id(id.clone()),
            scratch,
            &name,
            &copies[id],
            &format!("{what}: point {id}"),
        )
        .await;
        std::fs::remove_dir_all(&restored).unwrap();
    }
    let verified = verify_read_data(target.clone()).await;
    assert!(verified.is_ok(), "{what}: {:?}", verified.problems());
    assert!(
        verified.mirror.is_empty(),
        "{what}: root mirror {:?}",
        verified.mirror
    );
}

/// Backs up `target` once per run of `runs`, the node changing before each.
pub async fn backup_runs(
    node: &mut esdb_sim::Node,
    target: &Arc<dyn Target>,
    db: &Path,
    runs: std::ops::Range<usize>,
) -> Copies {
    let mut made = Copies::new();
    for run in runs {
        mutate(node, run);
        let (id, files) = backup_recording(target, db).await;
        made.insert(id, files);
    }
    made
}

/// A history of points copied to a second location on the same backend: whole, incremental
/// (a second copy sends no object), with retention of its own on each side.
pub async fn copy_keeps_history(loc: &dyn Locations) {
    let name = loc.name();
    let Settled { dir, db, mut node } = settled(55, 40);
    let source = loc.fresh();
    let mut copies = Copies::new();
    copies.extend(backup_runs(&mut node, &source, &db, 1..5).await);
    let destination = loc.fresh();
    let first = copy_all(&source, &destination).await;
    assert_eq!(first.copied.len(), 4, "{name}: every point copied");
    assert!(
        first.objects_sent > 0 && first.bytes_sent > 0,
        "{name}: {first:?}"
    );
    let again = copy_all(&source, &destination).await;
    assert!(again.copied.is_empty(), "{name}: nothing new: {again:?}");
    assert_eq!(
        (again.objects_sent, again.present.len()),
        (0, 1),
        "{name}: {again:?}"
    );
    copies.extend(backup_runs(&mut node, &source, &db, 5..7).await);
    let more = copy_all(&source, &destination).await;
    assert_eq!(more.copied.len(), 2, "{name}: the two new points");
    assert!(
        more.objects_kept > 0,
        "{name}: what earlier points stored is not sent again"
    );
    assert_every_point_restores(&destination, &copies, dir.path(), &format!("{name} copy")).await;
    // Retention of its own: the destination keeps 2, the source all 6, and a later copy does
    // not bring back what the destination forgot.
    forget(
        destination.clone(),
        &prune_keeping_last(2, Default::default()),
    )
    .await
    .unwrap();
    let after = copy_all(&source, &destination).await;
    assert!(
        after.copied.is_empty(),
        "{name}: forgotten points stay forgotten: {after:?}"
    );
    let counted = |t: &Arc<dyn Target>| {
        let t = t.clone();
        async move { list(t).await.unwrap().points().count() }
    };
    assert_eq!(
        (counted(&source).await, counted(&destination).await),
        (6, 2),
        "{name}"
    );
    let ok = verify(source.clone(), &VerifyOptions::default())
        .await
        .unwrap();
    assert!(
        ok.is_ok(),
        "{name}: the source is untouched by the destination's prune"
    );
    assert_every_point_restores(&destination, &copies, dir.path(), &format!("{name} kept")).await;
}

/// A copy killed at every operation `k` of the destination leaves it with whole points only
/// (each restores equal to its source), and a rerun completes it. Returns the operations tried.
pub async fn copy_crash_points(loc: &dyn Locations) -> u64 {
    let Settled { dir, db, mut node } = settled(66, 40);
    let source = loc.fresh();
    let copies = backup_runs(&mut node, &source, &db, 1..4).await;
    let mut k = 0;
    loop {
        let base = loc.fresh();
        let faulty: Arc<dyn Target> =
            Arc::new(FaultyTarget::new(base.clone(), FaultPlan::CrashAt(k)));
        let outcome = copy(source.clone(), faulty, &CopyOptions::default()).await;
        let held = match list(base.clone()).await {
            Ok(listing) => listing,
            Err(e) if e.kind() == ErrorKind::NoBackup => esbackup_engine::Listing {
                entries: vec![],
                warnings: vec![],
            },
            Err(e) => panic!("crash at {k}: {e}"),
        };
        assert_eq!(held.damaged().count(), 0, "crash at {k}: a damaged point");
        for p in held.points() {
            let name = format!("crash-{k}-{}", p.seq);
            let which = Which::Id(p.id.clone());
            let restored = assert_restores_to(
                base.clone(),
                which,
                dir.path(),
                &name,
                &copies[&p.id],
                &name,
            )
            .await;
            std::fs::remove_dir_all(restored).unwrap();
        }
        let rerun = copy_all(&source, &base).await;
        assert_eq!(
            held.points().count() + rerun.copied.len(),
            3,
            "crash at {k}: rerun completes"
        );
        if outcome.is_ok() {
            assert!(
                k > 10,
                "a copy of three points has more than {k} operations"
            );
            assert_every_point_restores(&base, &copies, dir.path(), &format!("crash {k} rerun"))
                .await;
            return k;
        }
        k += 1;
    }
}

/// Three points backed up into `hops[0]`, copied hop by hop to the last; then every hop but
/// the last is emptied, and every point restores from the last byte-identical to its source.
pub async fn copy_chain(hops: &[Arc<dyn Target>]) {
    let Settled { dir, db, mut node } = settled(44, 40);
    let copies = backup_runs(&mut node, &hops[0], &db, 1..4).await;
    for pair in hops.windows(2) {
        let report = copy_all(&pair[0], &pair[1]).await;
        assert_eq!(
            report.copied.len(),
            3,
            "{} -> {}",
            pair[0].describe(),
            pair[1].describe()
        );
    }
    let (last, before) = hops.split_last().unwrap();
    for hop in before {
        for o in hop.list("").await.unwrap() {
            hop.delete(&o.key).await.unwrap();
        }
        assert!(hop.list("").await.unwrap().is_empty());
    }
    assert_every_point_restores(
        last,
        &copies,
        dir.path(),
        &format!("end of the chain {}", last.describe()),
    )
    .await;
}
