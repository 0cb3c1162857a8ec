//! The scenario suite on the filesystem target (object_store's local store, a plain mirror).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use esbackup_backends::{open_target, TargetOptions};
use esbackup_engine::Target;
use esbackup_tests::scenarios::{self, Locations};

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
        "filesystem".into()
    }
    fn fresh(&self) -> Arc<dyn Target> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let path = self.root.path().join(format!("backup-{n}"));
        open_target(&path.display().to_string(), &TargetOptions::default()).unwrap()
    }
}

fn rounds(default: u64) -> u64 {
    std::env::var("ESBACKUP_LIVE_ROUNDS_BACKENDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_database_round_trips_byte_identical() {
    scenarios::static_round_trip(&Folder::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_uploads_only_what_changed() {
    scenarios::differential_uploads_only_changes(&Folder::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_of_a_live_node_restore_consistently() {
    let n = rounds(30);
    let s = scenarios::live_rounds(&Folder::new(), n, 5000, 0).await;
    println!(
        "live rounds (filesystem): {} rounds passed, {} backups completed, {} aborted by a scavenge",
        s.rounds, s.backups, s.aborted_by_scavenge
    );
    assert_eq!(s.rounds, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_operation_leaves_a_restorable_backup() {
    let points = scenarios::crash_points(&Folder::new()).await;
    println!("crash points (filesystem): {points}");
    assert!(points > 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_missing_and_damaged_files() {
    scenarios::verify_finds_damage(&Folder::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_folder_is_a_plain_mirror_of_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    scenarios::settled_node(&db, 3, 40);
    let out = dir.path().join("backup");
    let target = open_target(&out.display().to_string(), &TargetOptions::default()).unwrap();
    esbackup_engine::backup(target, &esbackup_tests::support::backup_options(&db))
        .await
        .unwrap();
    // A plain copy of the folder, with truncate.chk := chaser.chk, is the database.
    let mut mirror = esbackup_tests::support::database_files(&out);
    mirror.retain(|k, _| !k.starts_with(".esbackup"));
    assert_eq!(mirror, esbackup_tests::support::database_files(&db));
}
