//! A location written by esbackup 0.1 (one manifest, the database mirrored at the root, the
//! growing chunk stored whole) is read as one restore point, and the first backup of this
//! version turns it into a location with points without storing it all again.

use std::sync::Arc;

use esbackup_engine::format::chunk::{ChunkInfo, ChunkName};
use esbackup_engine::testing::MemoryTarget;
use esbackup_engine::{backup, list, status, Target, Which};
use esbackup_tests::scenarios::mutate;
use esbackup_tests::support::{assert_restores_to, backup_options, database_files};
use md5::{Digest, Md5};

use crate::common::{settled, Settled};

/// Writes `db` into `store` the way esbackup 0.1 left a completed run.
fn write_v01_location(store: &MemoryTarget, db: &std::path::Path, run_id: &str) {
    let mut files = serde_json::Map::new();
    for (key, bytes) in database_files(db) {
        let chunk = ChunkName::parse(&key).map(|_| {
            let info = ChunkInfo::read(&db.join(&key)).unwrap();
            serde_json::json!({
                "id": info.header.chunk_id.to_string(),
                "end": info.header.end,
                "completed": info.is_completed(),
            })
        });
        let mut entry = serde_json::json!({
            "size": bytes.len(),
            "md5": hex::encode(Md5::digest(&bytes)),
        });
        if let Some(c) = chunk {
            entry["chunk"] = c;
        }
        files.insert(key.clone(), entry);
        store.insert(&key, bytes);
    }
    let cp =
        |name: &str| i64::from_le_bytes(std::fs::read(db.join(name)).unwrap().try_into().unwrap());
    let now = chrono::Utc::now();
    let manifest = serde_json::json!({
        "format": 1, "tool_version": "esbackup 0.1.0", "run_id": run_id, "state": "completed",
        "full": false, "started": now, "finished": now, "host": "old-host",
        "source_db": db.display().to_string(), "source_index": db.join("index").display().to_string(),
        "chunk_size": 65536,
        "checkpoints": {"writer": cp("writer.chk"), "chaser": cp("chaser.chk"), "epoch": cp("epoch.chk"), "proposal": -1},
        "last_completed": {"run_id": run_id, "finished": now, "checkpoints": {"writer": cp("writer.chk"), "chaser": cp("chaser.chk"), "epoch": cp("epoch.chk"), "proposal": -1}},
        "notes": [], "files": files,
    });
    store.insert(
        ".esbackup/manifest.json",
        serde_json::to_vec_pretty(&manifest).unwrap(),
    );
}

/// The ids of the points `list` finds, oldest first.
async fn listed_ids(target: &Arc<dyn Target>) -> Vec<String> {
    let listing = list(target.clone()).await.unwrap();
    listing.points().map(|p| p.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v01_location_restores_and_its_first_new_run_keeps_its_state_as_a_point() {
    let Settled { dir, db, mut node } = settled(61, 60);
    let old = database_files(&db);
    let store = MemoryTarget::new();
    write_v01_location(&store, &db, "20261121T224728Z-0a1b2c3d");
    let target: Arc<dyn Target> = Arc::new(store.clone());

    assert_eq!(listed_ids(&target).await.len(), 1);
    assert!(status(target.clone()).await.unwrap().legacy);
    let (scratch, latest) = (dir.path(), Which::Latest);
    assert_restores_to(target.clone(), latest, scratch, "v01", &old, "0.1 state").await;

    mutate(&mut node, 1);
    let report = backup(target.clone(), &backup_options(&db)).await.unwrap();
    let total: u64 = database_files(&db).values().map(|v| v.len() as u64).sum();
    assert!(
        report.stored.bytes < total / 2,
        "not a full re-upload: stored {} of {total}",
        report.stored.bytes
    );
    let points = listed_ids(&target).await;
    assert_eq!(points.len(), 2, "the 0.1 state and the new run");
    assert_eq!(points[0], "20261121T224728Z-0a1b2c3d");
    assert!(!status(target.clone()).await.unwrap().legacy);
    let first = Which::Id(points[0].clone());
    let what = "0.1 point after the upgrade";
    assert_restores_to(target.clone(), first, scratch, "old-point", &old, what).await;
    let now = database_files(&db);
    assert_restores_to(
        target,
        Which::Latest,
        scratch,
        "new-point",
        &now,
        "new point",
    )
    .await;
}
