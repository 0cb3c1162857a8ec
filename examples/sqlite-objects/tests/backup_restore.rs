//! A simulated database backed up into SQLite twice (the second run differential) and
//! restored byte-identical, through the engine's public API only.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use esbackup_engine::{backup, restore, BackupOptions, RestoreOptions, Target};
use esdb_sim::{Node, SimConfig};
use sqlite_objects::SqliteTarget;

/// Every file under `root` (relative path → bytes), without the files a restore rewrites
/// (`truncate.chk`) or a backup leaves out by default (`*.tmp`, the secondary index
/// `kurrent.ddb*`).
fn database_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                dirs.push(path);
            } else if !(name.ends_with(".tmp")
                || name.ends_with("truncate.chk")
                || name.starts_with("kurrent.ddb"))
            {
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_backed_up_into_sqlite_restores_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let config = SimConfig {
        chunk_size: 64 * 1024,
        seed: 17,
        memtable_entries: 50,
        ..SimConfig::default()
    };
    let mut node = Node::create(&db, config).unwrap();
    node.append(1500).unwrap();
    node.settle().unwrap();
    let target: Arc<dyn Target> =
        Arc::new(SqliteTarget::open(dir.path().join("backup.sqlite")).unwrap());
    let first = backup(target.clone(), &BackupOptions::new(&db))
        .await
        .unwrap();
    assert!(first.point.is_some());

    node.append(400).unwrap();
    node.settle().unwrap();
    let second = backup(target.clone(), &BackupOptions::new(&db))
        .await
        .unwrap();
    assert!(
        second.unchanged.files > 0,
        "the second backup shares files with the first"
    );

    let restored = dir.path().join("restored");
    restore(target, &RestoreOptions::new(&restored))
        .await
        .unwrap();
    let (got, want) = (database_files(&restored), database_files(&db));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &want {
        assert!(got[name] == *bytes, "{name} differs");
    }
}
