//! The scenario suite against every backend: the in-memory target (engine logic, fastest, with
//! hundreds of live rounds), the folder target, and real S3 (Garage, or MinIO with
//! ESBACKUP_MINIO_IMAGE), Azurite and fake-gcs-server, each started by the test itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use esbackup_backends::{open_target, TargetOptions};
use esbackup_engine::conformance::Kit;
use esbackup_engine::testing::{FaultPlan, Faulty, Intercept, MemoryTarget};
use esbackup_engine::Target;
use esbackup_tests::cloud::{
    azure_options, backend_rounds, gcs_options, s3_options, scenario_suite, whole_suite, KitRun,
    ServerLocations,
};
use esbackup_tests::copying;
use esbackup_tests::scenarios::{self, Encoded, Locations};
use esbackup_tests::servers::{AzuriteServer, GcsServer, ObjectServer, S3Server};

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

impl Folder {
    fn fresh_path(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        self.root
            .path()
            .join(format!("backup-{n}"))
            .display()
            .to_string()
    }

    /// A fresh folder for the conformance kit: a local folder of plain files.
    fn kit_run(&self) -> KitRun {
        let kit = Kit::new().requires_put_if_absent().local();
        KitRun::open(self.fresh_path(), TargetOptions::default(), kit)
    }
}

impl Locations for Folder {
    fn name(&self) -> String {
        "folder".into()
    }
    fn fresh(&self) -> Arc<dyn Target> {
        open_target(&self.fresh_path(), &TargetOptions::default()).unwrap()
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
    async fn a_copied_history_restores_point_for_point_with_retention_of_its_own() {
        copying::copy_keeps_history(&Memory).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_copy_killed_at_any_operation_leaves_whole_points_and_a_rerun_completes_it() {
        let points = copying::copy_crash_points(&Memory).await;
        println!("copy crash points (memory): {points}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_forget_crashed_at_any_operation_keeps_the_kept_points_restorable() {
        let points = scenarios::forget_crash_points(&Memory).await;
        println!("forget crash points (memory): {points}");
        assert!(points > 5);
    }
}

/// The scenario suite on compressed and encrypted locations ([`Encoded`]).
mod encoded {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_scenario_suite_passes_on_encoded_memory_locations() {
        scenario_suite(
            &Encoded(Memory),
            rounds("ESBACKUP_LIVE_ROUNDS_BACKENDS", 30),
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_scenario_suite_passes_on_encoded_folders() {
        scenario_suite(
            &Encoded(Folder::new()),
            rounds("ESBACKUP_LIVE_ROUNDS_BACKENDS", 30),
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_copy_into_an_encoded_location_killed_at_any_operation_leaves_whole_points() {
        let points = copying::copy_crash_points(&Encoded(Memory)).await;
        println!("copy crash points (encoded memory): {points}");
    }
}

mod folder {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_scenario_suite_passes_on_the_folder_target() {
        let folder = Folder::new();
        let kit = folder.kit_run();
        whole_suite(&folder, kit, rounds("ESBACKUP_LIVE_ROUNDS_BACKENDS", 30)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_conformance_kit_passes_on_an_encoded_folder() {
        let folder = Folder::new();
        // The codec's files hold encoded bytes: no local files for kernel copies.
        let kit = Kit::new().requires_put_if_absent();
        let run = KitRun::open_encoded(folder.fresh_path(), TargetOptions::default(), kit);
        run.run("folder (zstd:3, encrypted)").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_copy_into_a_folder_killed_at_any_operation_leaves_whole_points() {
        let points = copying::copy_crash_points(&Folder::new()).await;
        println!("copy crash points (folder): {points}");
    }

    /// The test wrappers must keep every promise of the target they wrap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_conformance_kit_passes_on_the_folder_target_through_the_test_wrappers() {
        let folder = Folder::new();
        let KitRun { target, kit } = folder.kit_run();
        // Intercept (and Faulty, built on it) name no local file on purpose: every read goes
        // through `get`, where their hooks see it.
        let kit = kit.skip("local_file_returns_the_keys_bytes");
        let wrapped: [(&str, Arc<dyn Target>); 2] = [
            (
                "intercept",
                Arc::new(Intercept::before(target.clone(), |_| {})),
            ),
            ("faulty", Arc::new(Faulty::new(target, FaultPlan::None))),
        ];
        for (name, target) in wrapped {
            KitRun {
                target,
                kit: kit.clone(),
            }
            .run(name)
            .await;
        }
    }
}

/// The whole suite on `server`, opened with `options`; `kit` is what the store must pass.
/// Then the kit and the scenario suite again on compressed and encrypted locations there.
async fn whole_suite_on(server: Box<dyn ObjectServer>, options: TargetOptions, kit: Kit) {
    let locations = ServerLocations::new(server, options);
    let encoded_kit = locations.encoded_kit_run(kit.clone());
    let kit = locations.kit_run(kit);
    whole_suite(&locations, kit, backend_rounds()).await;
    let encoded = Encoded(locations);
    encoded_kit.run(&encoded.name()).await;
    scenario_suite(&encoded, backend_rounds()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scenario_suite_passes_on_s3() {
    let server = S3Server::start().await;
    let options = s3_options(&server);
    whole_suite_on(Box::new(server), options, Kit::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scenario_suite_passes_on_azure() {
    let server = AzuriteServer::start().await;
    let options = azure_options(&server);
    whole_suite_on(
        Box::new(server),
        options,
        Kit::new().requires_put_if_absent(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scenario_suite_passes_on_gcs() {
    let server = GcsServer::start().await;
    let options = gcs_options(&server);
    // The fixture leaves GCS create-if-absent off (storage.conditional_put): Unsupported.
    whole_suite_on(Box::new(server), options, Kit::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_chain_folder_s3_azure_gcs_restores_byte_identical_with_the_source_deleted() {
    let s3 = S3Server::start().await;
    let azure = AzuriteServer::start().await;
    let gcs = GcsServer::start().await;
    let folder = Folder::new();
    let open = |url: String, options: TargetOptions| {
        open_target(&url, &options).unwrap_or_else(|e| panic!("open {url}: {e}"))
    };
    let hops = [
        folder.fresh(),
        open(s3.url("chain"), s3_options(&s3)),
        open(azure.url("chain"), azure_options(&azure)),
        open(gcs.url("chain"), gcs_options(&gcs)),
    ];
    copying::copy_chain(&hops).await;
    // Again through compressed and encrypted locations, each with a key of its own, and a
    // plain folder at the end.
    let encoded = |t: Arc<dyn Target>| Encoded(Fixed(t)).fresh();
    let hops = [
        encoded(folder.fresh()),
        encoded(open(s3.url("chain-encoded"), s3_options(&s3))),
        encoded(open(azure.url("chain-encoded"), azure_options(&azure))),
        encoded(open(gcs.url("chain-encoded"), gcs_options(&gcs))),
        folder.fresh(),
    ];
    copying::copy_chain(&hops).await;
}

/// One given location.
struct Fixed(Arc<dyn Target>);

impl Locations for Fixed {
    fn name(&self) -> String {
        self.0.describe()
    }
    fn fresh(&self) -> Arc<dyn Target> {
        self.0.clone()
    }
}
