//! Helpers shared by the tests: folder copies and comparisons, stored objects, restores checked
//! the way the server opens a database, and the newest restore point.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use esbackup_engine::{
    get_bytes, list, restore, verify, BackupOptions, ForgetOptions, KeepPolicy, LockOptions, Point,
    RestoreOptions, Target, VerifyOptions, VerifyReport, Which,
};
use esdb_sim::{check, CheckOptions, CheckReport};

/// Copies a folder tree (files keep their permissions).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        let ty = entry.file_type().unwrap();
        if ty.is_dir() {
            copy_dir(&entry.path(), &dest);
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Every regular file under `root` by relative path, with its bytes.
pub fn files_under(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            } else if entry.file_type().unwrap().is_file() {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The database files a backup is expected to carry: everything but temp files, `truncate.chk`
/// and the secondary index.
pub fn database_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    files_under(root)
        .into_iter()
        .filter(|(k, _)| {
            let name = k.rsplit('/').next().unwrap();
            !(name.ends_with(".tmp") || name == "truncate.chk" || name.starts_with("kurrent.ddb"))
        })
        .collect()
}

/// Asserts two databases hold the same files with the same bytes (`what` names the case).
pub fn assert_same_files(
    got: &BTreeMap<String, Vec<u8>>,
    want: &BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    let (g, w): (Vec<&String>, Vec<&String>) = (got.keys().collect(), want.keys().collect());
    assert_eq!(g, w, "{what}: not the same files");
    for (name, bytes) in want {
        assert!(got[name] == *bytes, "{what}: {name} differs");
    }
}

/// Every stored object, with its bytes.
pub async fn stored_objects(target: &dyn Target) -> BTreeMap<String, Bytes> {
    let mut out = BTreeMap::new();
    for obj in target.list("").await.unwrap() {
        out.insert(obj.key.clone(), get_bytes(target, &obj.key).await.unwrap());
    }
    out
}

/// Every stored object outside `.esbackup/` (the root mirror), with its bytes.
pub async fn backup_contents(target: &dyn Target) -> BTreeMap<String, Bytes> {
    stored_objects(target)
        .await
        .into_iter()
        .filter(|(k, _)| !k.starts_with(".esbackup/"))
        .collect()
}

/// The restore points of a location, oldest first.
pub async fn points(target: &Arc<dyn Target>) -> Vec<Point> {
    let mut out = Vec::new();
    for summary in list(target.clone()).await.unwrap().points() {
        out.push(Point::load(target.as_ref(), &summary.id).await.unwrap());
    }
    out
}

/// The newest restore point.
pub async fn latest_point(target: &Arc<dyn Target>) -> Point {
    points(target).await.pop().expect("a restore point")
}

/// Runs the checker on a restored database, as the server would open it.
pub fn check_restored(db: &Path, index: &Path) -> CheckReport {
    check(
        db,
        index,
        &CheckOptions {
            archive: false,
            expect_truncate_equals_chaser: true,
        },
    )
}

/// Restores point `which` into a new folder under `scratch` and runs the checker on it.
pub async fn restore_point_and_check(
    target: Arc<dyn Target>,
    which: Which,
    scratch: &Path,
    name: &str,
) -> (PathBuf, CheckReport) {
    let dest = scratch.join(name);
    let mut opts = RestoreOptions::new(&dest);
    opts.point = which;
    let report = restore(target, &opts)
        .await
        .unwrap_or_else(|e| panic!("restore {name}: {e}"));
    assert_eq!(report.truncate, report.chaser);
    let checked = check_restored(&dest, &dest.join("index"));
    (dest, checked)
}

/// Restores point `which` into a new folder `scratch/name` and asserts that the checker accepts
/// it and that it holds exactly the database files `want` (`what` names the case). Returns the
/// restored folder.
pub async fn assert_restores_to(
    target: Arc<dyn Target>,
    which: Which,
    scratch: &Path,
    name: &str,
    want: &BTreeMap<String, Vec<u8>>,
    what: &str,
) -> PathBuf {
    let (restored, checked) = restore_point_and_check(target, which, scratch, name).await;
    assert!(checked.is_ok(), "{what}: {:?}", checked.violations);
    assert_same_files(&database_files(&restored), want, what);
    restored
}

/// Restores the newest point into a new folder under `scratch` and runs the checker on it.
pub async fn restore_and_check(
    target: Arc<dyn Target>,
    scratch: &Path,
    name: &str,
) -> (PathBuf, CheckReport) {
    restore_point_and_check(target, Which::Latest, scratch, name).await
}

/// Backup options for tests: short waits.
pub fn backup_options(db: &Path) -> BackupOptions {
    let mut opts = BackupOptions::new(db);
    opts.indexmap_wait = std::time::Duration::from_secs(5);
    opts
}

/// `forget --keep-last n --prune`, waiting up to `lock_wait` for the lock.
pub fn prune_keeping_last(n: u32, lock_wait: std::time::Duration) -> ForgetOptions {
    ForgetOptions {
        policy: KeepPolicy {
            last: n,
            ..KeepPolicy::default()
        },
        prune: true,
        dry_run: false,
        lock: LockOptions {
            wait: lock_wait,
            ..LockOptions::default()
        },
        stop: Default::default(),
    }
}

/// Verifies every point of `target`, reading every object back.
pub async fn verify_read_data(target: Arc<dyn Target>) -> VerifyReport {
    verify(
        target,
        &VerifyOptions {
            read_data: true,
            ..VerifyOptions::default()
        },
    )
    .await
    .unwrap()
}
