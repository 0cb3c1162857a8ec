//! `copy` beside the other commands: a prune of its source, a second copy, a prune of its
//! destination. Whatever the interleaving, the destination holds whole points only (each
//! restores equal to its source), and each command either succeeds or says why it stopped.

use std::sync::Arc;
use std::time::Duration;

use esbackup_engine::testing::{Intercept, MemoryTarget};
use esbackup_engine::{copy, forget, list, CopyOptions, LockOptions, Target};
use esbackup_tests::copying::{assert_every_point_restores, backup_runs, copy_all, Copies};
use esbackup_tests::support::prune_keeping_last;

use crate::common::{settled, Settled};

/// A memory target whose every request takes a little while, so that two commands interleave.
fn slow(store: &MemoryTarget) -> Arc<dyn Target> {
    Arc::new(Intercept::slow(store.clone(), Duration::from_micros(400)))
}

fn waiting() -> LockOptions {
    LockOptions {
        wait: Duration::from_secs(60),
        ..LockOptions::default()
    }
}

/// A source of five points, and the files of each.
async fn source_of_five(seed: u64) -> (Settled, MemoryTarget, Copies) {
    let mut s = settled(seed, 40);
    let store = MemoryTarget::new();
    let copies = backup_runs(
        &mut s.node,
        &(Arc::new(store.clone()) as Arc<dyn Target>),
        &s.db,
        1..6,
    )
    .await;
    (s, store, copies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_beside_a_prune_of_its_source_writes_whole_points_and_names_those_forgotten() {
    for round in 0..4u64 {
        let (s, source, copies) = source_of_five(300 + round).await;
        let destination = MemoryTarget::new();
        let (from, to) = (slow(&source), slow(&destination));
        let opts = CopyOptions::default();
        let copying = copy(from.clone(), to.clone(), &opts);
        let pruning = async {
            tokio::time::sleep(Duration::from_millis([0, 40, 120, 400][round as usize])).await;
            forget(from.clone(), &prune_keeping_last(1, Duration::ZERO)).await
        };
        let (copied, pruned) = tokio::join!(copying, pruning);
        pruned.unwrap();
        let copied = copied.unwrap();
        println!(
            "round {round}: {} point(s) copied, {} forgotten at the source meanwhile",
            copied.copied.len(),
            copied.forgotten.len()
        );
        assert_eq!(
            copied.copied.len() + copied.forgotten.len(),
            5,
            "round {round}: {copied:?}"
        );
        let to: Arc<dyn Target> = Arc::new(destination);
        if list(to.clone()).await.is_ok_and(|l| l.points().count() > 0) {
            assert_every_point_restores(
                &to,
                &copies,
                s.dir.path(),
                &format!("prune round {round}"),
            )
            .await;
        }
        // A rerun copies what the source still has: its newest point.
        let rerun = copy_all(&(Arc::new(source) as Arc<dyn Target>), &to).await;
        assert!(rerun.copied.len() <= 1, "round {round}: {rerun:?}");
        assert_every_point_restores(
            &to,
            &copies,
            s.dir.path(),
            &format!("prune round {round} rerun"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_into_one_destination_take_turns() {
    let (s, source, copies) = source_of_five(310).await;
    let destination = MemoryTarget::new();
    let (from, to) = (slow(&source), slow(&destination));
    let opts = CopyOptions {
        lock: waiting(),
        ..CopyOptions::default()
    };
    let (a, b) = tokio::join!(
        copy(from.clone(), to.clone(), &opts),
        copy(from.clone(), to.clone(), &opts)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut copied = [a.copied, b.copied].concat();
    copied.sort();
    assert_eq!(copied.len(), 5, "each point copied once: {copied:?}");
    assert!(
        a.lock_waited_secs > 0.0 || b.lock_waited_secs > 0.0,
        "one waited for the other"
    );
    assert!(
        destination
            .snapshot()
            .keys()
            .all(|k| !k.starts_with(esbackup_engine::layout::LOCKS_DIR)),
        "no lock left"
    );
    assert_every_point_restores(
        &(Arc::new(destination) as Arc<dyn Target>),
        &copies,
        s.dir.path(),
        "two copies",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_of_the_destination_beside_a_copy_into_it_waits_and_keeps_what_it_must() {
    let (s, source, copies) = source_of_five(320).await;
    let destination = MemoryTarget::new();
    let (from, to) = (slow(&source), slow(&destination));
    // Two points there already; the copy brings three more while forget --keep-last 2 runs.
    let first_two = CopyOptions {
        points: esbackup_engine::Selection::Ids(
            list(from.clone())
                .await
                .unwrap()
                .points()
                .take(2)
                .map(|p| p.id.clone())
                .collect(),
        ),
        ..CopyOptions::default()
    };
    copy(from.clone(), to.clone(), &first_two).await.unwrap();
    let opts = CopyOptions {
        lock: waiting(),
        ..CopyOptions::default()
    };
    let prune = prune_keeping_last(2, Duration::from_secs(60));
    let (copied, pruned) = tokio::join!(
        copy(from.clone(), to.clone(), &opts),
        forget(to.clone(), &prune)
    );
    let (copied, pruned) = (copied.unwrap(), pruned.unwrap());
    assert_eq!(copied.copied.len(), 3, "{copied:?}");
    assert!(pruned.kept.len() == 2, "{pruned:?}");
    let left = list(to.clone()).await.unwrap().points().count();
    assert!((2..=5).contains(&left), "{left} points");
    assert_every_point_restores(&to, &copies, s.dir.path(), "prune beside copy").await;
}
