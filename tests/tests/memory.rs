//! The scenario suite on the in-memory target (engine logic, fastest), including the full
//! crash-point sweep and hundreds of live rounds.

use std::sync::Arc;

use esbackup_engine::testing::MemoryTarget;
use esbackup_engine::Target;
use esbackup_tests::scenarios::{self, Locations};

struct Memory;

impl Locations for Memory {
    fn name(&self) -> String {
        "memory".into()
    }
    fn fresh(&self) -> Arc<dyn Target> {
        Arc::new(MemoryTarget::new())
    }
}

fn rounds(default: u64) -> u64 {
    std::env::var("ESBACKUP_LIVE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_database_round_trips_byte_identical() {
    scenarios::static_round_trip(&Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_uploads_only_what_changed() {
    scenarios::differential_uploads_only_changes(&Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_of_a_live_node_restore_consistently() {
    let n = rounds(200);
    let s = scenarios::live_rounds(&Memory, n, 1000, 1500).await;
    println!(
        "live rounds (memory): {} rounds passed, {} backups completed, {} aborted by a scavenge, {} node changes during backups",
        s.rounds, s.backups, s.aborted_by_scavenge, s.live_steps
    );
    assert_eq!(s.rounds, n);
    assert!(
        s.backups >= n,
        "at least the first backup of each round completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_operation_leaves_a_restorable_backup() {
    let points = scenarios::crash_points(&Memory).await;
    println!("crash points (memory): {points} operations each failed in turn, all restorable");
    assert!(
        points > 20,
        "a realistic run has many operations, got {points}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_missing_and_damaged_files() {
    scenarios::verify_finds_damage(&Memory).await;
}
