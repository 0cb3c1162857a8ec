//! The scenario suite against every backend: the in-memory target (engine logic, fastest, with
//! hundreds of live rounds), the folder target, and real S3 (Garage, or MinIO with
//! ESBACKUP_MINIO_IMAGE), Azurite and fake-gcs-server, each started by the test itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use esbackup_backends::{open_target, TargetOptions};
use esbackup_engine::testing::MemoryTarget;
use esbackup_engine::Target;
use esbackup_tests::cloud::{
    azure_options, backend_rounds, gcs_options, s3_options, whole_suite, ServerLocations,
};
use esbackup_tests::scenarios::{self, Locations};
use esbackup_tests::servers::{AzuriteServer, GcsServer, S3Server};

struct Memory;

impl Locations for Memory {
    fn name(&self) -> String {
        "memory".into()
    }
    fn fresh(&self) -> Arc<dyn Target> {
        Arc::new(MemoryTarget::new())
    }
}

struct Folder {
    root: tempfile::TempDir,
    next: AtomicU64,
}

impl Folder {
    fn new() -> Folder {
        Folder {
            root: tempfile::tempdir().unwrap(),
            next: AtomicU64::new(0),
        }
    }
}

impl Locations for Folder {
    fn name(&self) -> String {
        "folder".into()
    }
    fn fresh(&self) -> Arc<dyn Target> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let path = self.root.path().join(format!("backup-{n}"));
        open_target(&path.display().to_string(), &TargetOptions::default()).unwrap()
    }
}

fn rounds(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

mod memory {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn static_database_round_trips_byte_identical() {
        scenarios::static_round_trip(&Memory).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_the_engine_does_not_know_are_backed_up_and_reported_when_they_change() {
        scenarios::other_files_round_trip(&Memory).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn differentials_store_only_what_changed() {
        scenarios::differential_stores_only_changes(&Memory).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_point_of_a_changing_database_restores_equal_to_its_source() {
        scenarios::history_restores_every_point(&Memory, 20).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn backups_of_a_live_node_restore_consistently() {
        let n = rounds("ESBACKUP_LIVE_ROUNDS", 200);
        let s = scenarios::live_rounds(&Memory, n, 1000, 1500).await;
        println!(
            "live rounds (memory): {} rounds passed, {} backups completed, {} aborted by a scavenge, {} points restored, {} node changes during backups",
            s.rounds, s.backups, s.aborted_by_scavenge, s.points_restored, s.live_steps
        );
        assert_eq!(s.rounds, n);
        assert!(
            s.backups >= n,
            "at least the first backup of each round completed"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_at_any_operation_leaves_every_point_restorable() {
        let points = scenarios::crash_points(&Memory).await;
        println!("crash points (memory): {points} operations each failed in turn, all restorable");
        assert!(
            points > 10,
            "a realistic run has many operations, got {points}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verify_and_restore_find_missing_and_damaged_objects() {
        scenarios::verify_finds_damage(&Memory).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forget_keep_last_three_prune_leaves_three_restorable_points() {
        let (before, after) = scenarios::forget_keeps_last_three(&Memory, 20).await;
        println!("forget --keep-last 3 --prune (memory): {before} -> {after} bytes stored");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_forget_crashed_at_any_operation_keeps_the_kept_points_restorable() {
        let points = scenarios::forget_crash_points(&Memory).await;
        println!("forget crash points (memory): {points}");
        assert!(points > 5);
    }
}

mod folder {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_scenario_suite_passes_on_the_folder_target() {
        let folder = Folder::new();
        whole_suite(&folder, rounds("ESBACKUP_LIVE_ROUNDS_BACKENDS", 30)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scenario_suite_passes_on_s3() {
    let server = S3Server::start().await;
    let options = s3_options(&server);
    whole_suite(
        &ServerLocations::new(Box::new(server), options),
        backend_rounds(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scenario_suite_passes_on_azure() {
    let server = AzuriteServer::start().await;
    let options = azure_options(&server);
    whole_suite(
        &ServerLocations::new(Box::new(server), options),
        backend_rounds(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scenario_suite_passes_on_gcs() {
    let server = GcsServer::start().await;
    let options = gcs_options(&server);
    whole_suite(
        &ServerLocations::new(Box::new(server), options),
        backend_rounds(),
    )
    .await;
}
