//! What a run costs on a database with default-size (256 MiB) chunks: the growing chunk is
//! stored as the bytes appended since the previous run, never whole, and an idle run sends
//! only its own metadata. (The benchmark `bench/cost.sh` measures the same against Garage.)

use std::sync::Arc;

use esbackup_engine::{backup, Target, Which};
use esbackup_tests::support::{assert_restores_to, backup_options, database_files};
use esdb_sim::{Node, SimConfig};

const KIB: u64 = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_sends_about_what_was_appended_and_an_idle_run_almost_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut node = Node::create(
        &db,
        SimConfig {
            chunk_size: 256 << 20,
            seed: 5,
            memtable_entries: 1_000_000,
            scavenge: false,
            ..SimConfig::default()
        },
    )
    .unwrap();
    node.append(3000).unwrap();
    node.settle().unwrap();
    let (_, target): (_, Arc<dyn Target>) = crate::common::mem();
    let first = backup(target.clone(), &backup_options(&db)).await.unwrap();
    assert!(
        first.uploaded.bytes < (node.checkpoints().writer as u64) * 11 / 10 + 256 * KIB,
        "the first run sends the data, not the preallocated 256 MiB: {}",
        first.uploaded.bytes
    );
    let mut appended_total = 0;
    let mut sent_total = 0;
    for run in 0..5 {
        let before = node.checkpoints().writer;
        node.append(3000).unwrap();
        node.settle().unwrap();
        let appended = (node.checkpoints().writer - before) as u64;
        let report = backup(target.clone(), &backup_options(&db)).await.unwrap();
        println!(
            "run {run}: appended {appended} bytes, sent {} bytes in {} requests",
            report.uploaded.bytes, report.uploaded.requests
        );
        assert!(
            report.uploaded.bytes <= appended * 11 / 10 + 64 * KIB,
            "run {run}: sent {} for {appended} appended",
            report.uploaded.bytes
        );
        appended_total += appended;
        sent_total += report.uploaded.bytes;
    }
    assert!(sent_total <= appended_total * 11 / 10 + 5 * 64 * KIB);
    let idle = backup(target.clone(), &backup_options(&db)).await.unwrap();
    assert_eq!(idle.stored.files, 0);
    assert!(
        idle.uploaded.bytes <= 64 * KIB,
        "idle run sent {}",
        idle.uploaded.bytes
    );
    // 9, plus one `head` per root copy of an inline or in-place file (4 checkpoints,
    // `indexmap`, the 2 stream-existence files): the check that the root mirror is whole;
    // plus one `get` per page of the previous point's file table; plus the `get` of the
    // location's settings (`.esbackup/config`: is it compressed or encrypted?).
    let pages = esbackup_tests::support::latest_point(&target)
        .await
        .pages
        .len() as u64;
    assert!(
        idle.uploaded.requests <= 17 + pages,
        "idle run made {} requests ({pages} pages)",
        idle.uploaded.requests
    );
    let now = database_files(&db);
    assert_restores_to(
        target,
        Which::Latest,
        dir.path(),
        "r",
        &now,
        "appended chunk",
    )
    .await;
}
