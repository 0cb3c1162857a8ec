//! Helpers shared by the scenario suite: folder copies and comparisons, backup contents.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use esbackup_engine::target::get_bytes;
use esbackup_engine::Target;
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

/// The database files a backup is expected to carry: everything but temp files, `truncate.chk`,
/// the `.forceverify` marker and the secondary index.
pub fn database_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    files_under(root)
        .into_iter()
        .filter(|(k, _)| {
            let name = k.rsplit('/').next().unwrap();
            !(name.ends_with(".tmp")
                || name == "truncate.chk"
                || name == ".forceverify"
                || name.starts_with("kurrent.ddb"))
        })
        .collect()
}

/// Every object of a backup outside `.esbackup/`, with its bytes.
pub async fn backup_contents(target: &dyn Target) -> BTreeMap<String, Bytes> {
    let mut out = BTreeMap::new();
    for obj in target.list("").await.unwrap() {
        if obj.key.starts_with(".esbackup/") {
            continue;
        }
        out.insert(obj.key.clone(), get_bytes(target, &obj.key).await.unwrap());
    }
    out
}

/// Restores `target` into a new folder under `scratch` and runs the checker on it.
pub async fn restore_and_check(
    target: Arc<dyn Target>,
    scratch: &Path,
    name: &str,
) -> (PathBuf, CheckReport) {
    let dest = scratch.join(name);
    let mut opts = esbackup_engine::RestoreOptions::new(&dest);
    opts.retry = fast_retry();
    let report = esbackup_engine::restore(target, &opts)
        .await
        .unwrap_or_else(|e| panic!("restore {name}: {e}"));
    assert_eq!(report.truncate, report.chaser);
    let checked = check(
        &dest,
        &dest.join("index"),
        &CheckOptions {
            archive: false,
            expect_truncate_equals_chaser: true,
        },
    );
    (dest, checked)
}

/// Retries fast in tests (targets under test fail on purpose).
pub fn fast_retry() -> esbackup_engine::retry::RetryPolicy {
    esbackup_engine::retry::RetryPolicy {
        attempts: 3,
        base_delay: std::time::Duration::from_millis(1),
        max_delay: std::time::Duration::from_millis(5),
    }
}

/// Backup options for tests: fast retries, short waits.
pub fn backup_options(db: &Path) -> esbackup_engine::BackupOptions {
    let mut opts = esbackup_engine::BackupOptions::new(db);
    opts.retry = fast_retry();
    opts.indexmap_wait = std::time::Duration::from_secs(5);
    opts
}

/// Adds a small random delay to every operation, as a real store has, so that a live node
/// changes a good deal during each backup.
#[derive(Debug)]
pub struct Slow<T> {
    pub inner: T,
    pub max_delay_us: u64,
}

impl<T: Target> Slow<T> {
    async fn pause(&self) {
        let us = rand::random::<u64>() % self.max_delay_us.max(1);
        tokio::time::sleep(std::time::Duration::from_micros(us)).await;
    }
}

#[async_trait::async_trait]
impl<T: Target> Target for Slow<T> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<esbackup_engine::ObjectInfo>, esbackup_engine::TargetError> {
        self.pause().await;
        self.inner.list(prefix).await
    }
    async fn head(
        &self,
        key: &str,
    ) -> Result<esbackup_engine::ObjectInfo, esbackup_engine::TargetError> {
        self.pause().await;
        self.inner.head(key).await
    }
    async fn put(
        &self,
        key: &str,
        body: esbackup_engine::Upload,
    ) -> Result<(), esbackup_engine::TargetError> {
        self.pause().await;
        self.inner.put(key, body).await
    }
    async fn put_if_absent(
        &self,
        key: &str,
        data: Bytes,
    ) -> Result<(), esbackup_engine::TargetError> {
        self.pause().await;
        self.inner.put_if_absent(key, data).await
    }
    async fn get(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<esbackup_engine::target::ByteStream, esbackup_engine::TargetError> {
        self.pause().await;
        self.inner.get(key, range).await
    }
    async fn copy(&self, from: &str, to: &str) -> Result<(), esbackup_engine::TargetError> {
        self.pause().await;
        self.inner.copy(from, to).await
    }
    async fn delete(&self, key: &str) -> Result<(), esbackup_engine::TargetError> {
        self.pause().await;
        self.inner.delete(key).await
    }
}

/// A memory target that runs `hook` with the key before every `put`: to change the source or the
/// store at a chosen moment of a run (a scavenge deleting a file, another host breaking the lock).
pub struct OnPut {
    pub inner: esbackup_engine::testing::MemoryTarget,
    pub hook: Box<dyn Fn(&str) + Send + Sync>,
}

impl std::fmt::Debug for OnPut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnPut")
    }
}

#[async_trait::async_trait]
impl Target for OnPut {
    fn describe(&self) -> String {
        "memory (hooked)".into()
    }
    async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<esbackup_engine::ObjectInfo>, esbackup_engine::TargetError> {
        self.inner.list(prefix).await
    }
    async fn head(
        &self,
        key: &str,
    ) -> Result<esbackup_engine::ObjectInfo, esbackup_engine::TargetError> {
        self.inner.head(key).await
    }
    async fn put(
        &self,
        key: &str,
        body: esbackup_engine::Upload,
    ) -> Result<(), esbackup_engine::TargetError> {
        (self.hook)(key);
        self.inner.put(key, body).await
    }
    async fn put_if_absent(
        &self,
        key: &str,
        data: Bytes,
    ) -> Result<(), esbackup_engine::TargetError> {
        self.inner.put_if_absent(key, data).await
    }
    async fn get(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<esbackup_engine::target::ByteStream, esbackup_engine::TargetError> {
        self.inner.get(key, range).await
    }
    async fn copy(&self, from: &str, to: &str) -> Result<(), esbackup_engine::TargetError> {
        self.inner.copy(from, to).await
    }
    async fn delete(&self, key: &str) -> Result<(), esbackup_engine::TargetError> {
        self.inner.delete(key).await
    }
}
