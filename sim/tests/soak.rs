//! A long randomized run over many seeds and configurations (ignored by default; run with
//! `cargo test -p esdb-sim --test soak -- --ignored`).

mod common;

use esbackup_engine::format::chunk::ChunkName;
use esdb_sim::{check, CheckOptions, Node, SimConfig};

use common::*;

fn config(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        chunk_size: [16 * 1024, 64 * 1024, 100_000][seed as usize % 3],
        memtable_entries: [1, 7, 50][seed as usize / 3 % 3],
        archive: seed.is_multiple_of(5),
        legacy_v3_headers: seed.is_multiple_of(7),
        stream_existence: seed % 4 != 1,
        scavenging_db: seed % 4 != 2,
        secondary_index: seed % 4 != 3,
        ..SimConfig::default()
    }
}

#[test]
#[ignore = "soak run: scripts/soak.sh runs it (40 seeds, about 15 s)"]
fn many_seeds_crash_snapshots_and_settled_restores() {
    for seed in 0..40 {
        let dir = scratch();
        let cfg = config(seed);
        let opts = CheckOptions {
            archive: cfg.archive,
            expect_truncate_equals_chaser: true,
        };
        let plain = CheckOptions {
            archive: cfg.archive,
            ..CheckOptions::default()
        };
        let mut node = Node::create(&dir.path().join("db"), cfg.clone()).unwrap();
        for round in 0..4 {
            for _ in 0..400 {
                node.step().unwrap();
            }
            // A snapshot between steps is a crashed node; restoring it must work unless the
            // next chunk already exists (the truncator refuses that, as the server does).
            let cps = node.checkpoints();
            let next = (cps.writer / cfg.chunk_size as i64) as u32 + 1;
            let next_exists = chunk_names(node.db_dir())
                .iter()
                .any(|n| ChunkName::parse(n).is_some_and(|c| c.start == next));
            let (restored, index) =
                restore(node.db_dir(), &dir.path().join(format!("snap{round}")));
            let report = check(&restored, &index, &opts);
            let unexplained: Vec<_> = report
                .violations
                .iter()
                .filter(|v| !(next_exists && v.contains("excessive chunk files")))
                .collect();
            assert!(
                unexplained.is_empty(),
                "seed {seed} round {round}: {unexplained:#?}"
            );

            // The crashed node itself restarts (no truncation) and keeps going.
            let crashed = dir.path().join(format!("crash{round}"));
            copy_tree(node.db_dir(), &crashed);
            let mut restarted = Node::open(&crashed, cfg.clone()).unwrap();
            for _ in 0..50 {
                restarted.step().unwrap();
            }
            restarted.settle().unwrap();
            let report = check(&crashed, &crashed.join("index"), &plain);
            assert!(
                report.is_ok(),
                "seed {seed} round {round} restarted: {:#?}",
                report.violations
            );
        }
        node.settle().unwrap();
        let (restored, index) = restore(node.db_dir(), &dir.path().join("final"));
        let report = check(&restored, &index, &opts);
        assert!(report.is_ok(), "seed {seed}: {:#?}", report.violations);
        drop(node);
        let mut reopened = Node::open(&restored, cfg.clone()).unwrap();
        for _ in 0..200 {
            reopened.step().unwrap();
        }
        reopened.settle().unwrap();
        let report = check(&restored, &index, &plain);
        assert!(
            report.is_ok(),
            "seed {seed} reopened: {:#?}",
            report.violations
        );
    }
}
