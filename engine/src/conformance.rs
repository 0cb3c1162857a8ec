//! A conformance suite for [`Target`] implementations: run [`run_conformance`] against your own
//! backend (in a test, against a scratch location) to check it keeps every promise the engine
//! relies on.
//!
//! ```no_run
//! # async fn example(my_target: &dyn esbackup_engine::Target) {
//! let report = esbackup_engine::conformance::run_conformance(my_target).await.unwrap();
//! println!("{report}");
//! # }
//! ```
//!
//! Everything is written below a fresh `conformance-<uuid>/` prefix, and deleted at the end (also
//! after a failure), so a shared bucket can be used. The suite stops at the first broken promise
//! and names it.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use crate::hashing::md5;
use bytes::Bytes;
use futures::TryStreamExt;

#[cfg(test)]
use crate::target::TargetError;
use crate::target::{ObjectInfo, Target, TargetErrorKind, Upload};

/// Sizes the suite uses.
#[derive(Clone, Debug)]
pub struct ConformanceOptions {
    /// Size of the large object, written from a local file. Pick it above your target's
    /// multipart threshold so that path is exercised (default 18 MiB + 12 345 bytes).
    pub large_size: usize,
    /// Size of the objects replaced while readers read them (default 1 MiB).
    pub overwrite_size: usize,
    /// Rounds of the concurrent overwrite check (default 4).
    pub overwrite_rounds: usize,
}

impl Default for ConformanceOptions {
    fn default() -> Self {
        ConformanceOptions {
            large_size: (18 << 20) + 12_345,
            overwrite_size: 1 << 20,
            overwrite_rounds: 4,
        }
    }
}

/// What a successful run found.
#[derive(Clone, Debug, Default)]
pub struct ConformanceReport {
    /// The target's own description.
    pub target: String,
    /// Names of the checks that passed, in order.
    pub passed: Vec<String>,
    /// Whether `put_if_absent` is supported (false: it said `Unsupported`, which is allowed).
    pub put_if_absent_supported: bool,
}

impl fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} checks passed ({}); put_if_absent {}",
            self.target,
            self.passed.len(),
            self.passed.join(", "),
            if self.put_if_absent_supported {
                "supported"
            } else {
                "unsupported"
            }
        )
    }
}

/// Runs every check with default sizes. `Err` names the first broken promise.
pub async fn run_conformance(target: &dyn Target) -> Result<ConformanceReport, String> {
    run_conformance_with(target, &ConformanceOptions::default()).await
}

/// Runs every check with the given sizes.
pub async fn run_conformance_with(
    target: &dyn Target,
    options: &ConformanceOptions,
) -> Result<ConformanceReport, String> {
    let mut suite = Suite {
        target,
        options,
        root: format!("conformance-{}/", uuid::Uuid::new_v4().simple()),
        report: ConformanceReport {
            target: target.describe(),
            ..Default::default()
        },
        temp_files: Vec::new(),
    };
    let outcome = suite.run_all().await;
    let cleanup = suite.cleanup().await;
    outcome?;
    cleanup?;
    Ok(suite.report)
}

struct Suite<'a> {
    target: &'a dyn Target,
    options: &'a ConformanceOptions,
    root: String,
    report: ConformanceReport,
    temp_files: Vec<PathBuf>,
}

/// Fails a check with a message.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

impl Suite<'_> {
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.root)
    }

    async fn run_all(&mut self) -> Result<(), String> {
        named("describe", self.describe().await)?;
        named("empty_object", self.empty_object().await)?;
        named("small_object", self.small_object().await)?;
        named("large_object_from_file", self.large_object().await)?;
        named("missing_objects", self.missing().await)?;
        named("overwrite", self.overwrite().await)?;
        named("overwrite_is_atomic", self.overwrite_atomic().await)?;
        named("list", self.list().await)?;
        named("put_if_absent", self.put_if_absent().await)?;
        named("copy", self.copy().await)?;
        named("delete", self.delete().await)?;
        Ok(())
    }

    async fn describe(&mut self) -> Result<(), String> {
        ensure!(
            !self.target.describe().trim().is_empty(),
            "describe() returned an empty string"
        );
        self.pass("describe");
        Ok(())
    }

    async fn empty_object(&mut self) -> Result<(), String> {
        let key = self.key("empty");
        self.put_file(&key, &[]).await?;
        self.expect_object(&key, &[]).await?;
        self.pass("empty_object");
        Ok(())
    }

    async fn small_object(&mut self) -> Result<(), String> {
        let key = self.key("small.txt");
        let data = b"hello, conformance".to_vec();
        self.put_file(&key, &data).await?;
        self.expect_object(&key, &data).await?;
        let mem = self.key("small-from-memory");
        let upload = Upload::bytes(data.clone());
        self.target
            .put(&mem, upload)
            .await
            .map_err(|e| format!("put {mem}: {e}"))?;
        self.expect_object(&mem, &data).await?;
        self.expect_range(&key, 7..18, &data).await?;
        self.expect_range(&key, 0..1, &data).await?;
        self.pass("small_object");
        Ok(())
    }

    async fn large_object(&mut self) -> Result<(), String> {
        let key = self.key("chunk-000000.000000");
        let data = pattern(self.options.large_size, 1);
        self.put_file(&key, &data).await?;
        self.expect_object(&key, &data).await?;
        let len = data.len() as u64;
        let mid = len / 2;
        let five_mib = 5u64 << 20;
        let ranges = [
            0..1,
            mid.saturating_sub(100)..mid + 100,
            len.saturating_sub(10)..len,
            five_mib - 1..five_mib + 3,
        ];
        for range in ranges {
            if range.start < range.end && range.end <= len {
                self.expect_range(&key, range, &data).await?;
            }
        }
        self.pass("large_object_from_file");
        Ok(())
    }

    async fn missing(&mut self) -> Result<(), String> {
        let key = self.key("never-written");
        match self.target.head(&key).await {
            Err(e) if e.is_not_found() => {}
            other => {
                return Err(format!(
                    "head of a missing key: expected NotFound, got {other:?}"
                ))
            }
        }
        // NotFound may come from `get` itself or from the first item of its stream.
        match self.target.get(&key, None).await {
            Err(e) if e.is_not_found() => {}
            Ok(stream) => match stream.try_collect::<Vec<Bytes>>().await {
                Err(e) if e.is_not_found() => {}
                other => {
                    return Err(format!(
                        "get of a missing key: expected NotFound, got {:?}",
                        other.map(|v| v.concat().len())
                    ))
                }
            },
            Err(e) => {
                return Err(format!(
                    "get of a missing key: expected NotFound, got {e:?}"
                ))
            }
        }
        match self.target.get(&key, Some(0..1)).await {
            Err(e) if e.is_not_found() => {}
            Ok(stream) => match stream.try_collect::<Vec<Bytes>>().await {
                Err(e) if e.is_not_found() => {}
                other => {
                    return Err(format!(
                        "ranged get of a missing key: expected NotFound, got {:?}",
                        other.map(|v| v.concat().len())
                    ))
                }
            },
            Err(e) => {
                return Err(format!(
                    "ranged get of a missing key: expected NotFound, got {e:?}"
                ))
            }
        }
        self.pass("missing_objects");
        Ok(())
    }

    async fn overwrite(&mut self) -> Result<(), String> {
        let key = self.key("index/indexmap");
        let first = pattern(3000, 2);
        let second = pattern(1234, 3);
        self.put_file(&key, &first).await?;
        self.put_file(&key, &second).await?;
        self.expect_object(&key, &second).await?;
        // Longer again: no leftover tail, no stale size.
        self.put_file(&key, &first).await?;
        self.expect_object(&key, &first).await?;
        self.pass("overwrite");
        Ok(())
    }

    async fn overwrite_atomic(&mut self) -> Result<(), String> {
        let key = self.key("atomic");
        let size = self.options.overwrite_size;
        let a = Bytes::from(pattern(size, 4));
        let b = Bytes::from(pattern(size + size / 3 + 1, 5));
        self.target
            .put(&key, Upload::bytes(a.clone()))
            .await
            .map_err(|e| format!("put {key}: {e}"))?;
        let target = self.target;
        let rounds = self.options.overwrite_rounds;
        let writer = async {
            for round in 0..rounds {
                let body = if round % 2 == 0 { &b } else { &a };
                target
                    .put(&key, Upload::bytes(body.clone()))
                    .await
                    .map_err(|e| format!("put {key} (round {round}): {e}"))?;
            }
            Ok::<_, String>(())
        };
        let reader = async {
            for _ in 0..rounds * 2 {
                let got = read_all(target, &key, None).await?;
                ensure!(
                    got == a || got == b,
                    "a reader saw {} bytes that are neither the old nor the new object \
                     while it was being replaced",
                    got.len()
                );
                tokio::task::yield_now().await;
            }
            Ok(())
        };
        let (w, r) = futures::join!(writer, reader);
        w?;
        r?;
        let last = if rounds % 2 == 1 { &b } else { &a };
        self.expect_object(&key, last).await?;
        self.pass("overwrite_is_atomic");
        Ok(())
    }

    async fn list(&mut self) -> Result<(), String> {
        let names = [
            ("list/a", 1usize),
            ("list/b.txt", 2),
            ("list/nested/deep/c", 3),
            ("list/chunk-000001.000000", 4),
            ("list/chunk-000001.000000.old", 5),
            ("list/.hidden", 6),
            ("lister/x", 7),
        ];
        for (name, size) in names {
            let key = self.key(name);
            self.target
                .put(&key, Upload::bytes(pattern(size, size as u8)))
                .await
                .map_err(|e| format!("put {key}: {e}"))?;
        }
        let expect = |filter: &dyn Fn(&str) -> bool| -> Vec<ObjectInfo> {
            let mut v: Vec<ObjectInfo> = names
                .iter()
                .filter(|(n, _)| filter(n))
                .map(|(n, s)| ObjectInfo::new(self.key(n), *s as u64))
                .collect();
            v.sort_by(|x, y| x.key.cmp(&y.key));
            v
        };
        self.expect_list("list/", expect(&|n| n.starts_with("list/")))
            .await?;
        self.expect_list("list", expect(&|n| n.starts_with("list")))
            .await?;
        self.expect_list(
            "list/chunk-000001.000000",
            expect(&|n| n.starts_with("list/chunk-")),
        )
        .await?;
        self.expect_list("list/nested/", expect(&|n| n.contains("nested")))
            .await?;
        self.expect_list("list/ch", expect(&|n| n.starts_with("list/chunk-")))
            .await?;
        self.expect_list("list/nothing-here/", Vec::new()).await?;
        self.expect_list("no-such-folder/", Vec::new()).await?;
        self.pass("list");
        Ok(())
    }

    async fn put_if_absent(&mut self) -> Result<(), String> {
        let key = self.key(".esbackup/lock");
        let first = Bytes::from_static(b"first owner");
        match self.target.put_if_absent(&key, first.clone()).await {
            Ok(()) => {}
            Err(e) if e.kind() == TargetErrorKind::Unsupported => {
                match self.target.head(&key).await {
                    Err(e) if e.is_not_found() => {}
                    other => {
                        return Err(format!(
                            "put_if_absent said Unsupported but the object exists: {other:?}"
                        ))
                    }
                }
                self.report.put_if_absent_supported = false;
                self.pass("put_if_absent (unsupported)");
                return Ok(());
            }
            Err(e) => return Err(format!("put_if_absent of a new key: {e:?}")),
        }
        match self
            .target
            .put_if_absent(&key, Bytes::from_static(b"second owner"))
            .await
        {
            Err(e) if e.kind() == TargetErrorKind::AlreadyExists => {}
            other => {
                return Err(format!(
                    "put_if_absent of an existing key: expected AlreadyExists, got {other:?}"
                ))
            }
        }
        self.expect_object(&key, &first).await?;
        self.target
            .delete(&key)
            .await
            .map_err(|e| format!("delete {key}: {e}"))?;
        self.target
            .put_if_absent(&key, Bytes::from_static(b"again"))
            .await
            .map_err(|e| format!("put_if_absent after delete: {e:?}"))?;
        self.expect_object(&key, b"again").await?;
        self.report.put_if_absent_supported = true;
        self.pass("put_if_absent");
        Ok(())
    }

    async fn copy(&mut self) -> Result<(), String> {
        let src = self.key("copy/src");
        let dst = self.key("copy/dir/dst.old");
        let data = pattern(70_000, 8);
        self.put_file(&src, &data).await?;
        self.target
            .copy(&src, &dst)
            .await
            .map_err(|e| format!("copy {src} -> {dst}: {e}"))?;
        self.expect_object(&dst, &data).await?;
        self.expect_object(&src, &data).await?;
        // Copy replaces an existing destination.
        let other = pattern(10, 9);
        self.put_file(&src, &other).await?;
        self.target
            .copy(&src, &dst)
            .await
            .map_err(|e| format!("copy over an existing {dst}: {e}"))?;
        self.expect_object(&dst, &other).await?;
        match self.target.copy(&self.key("copy/missing"), &dst).await {
            Err(e) if e.is_not_found() => {}
            other => {
                return Err(format!(
                    "copy of a missing source: expected NotFound, got {other:?}"
                ))
            }
        }
        self.expect_object(&dst, &other).await?;
        self.pass("copy");
        Ok(())
    }

    async fn delete(&mut self) -> Result<(), String> {
        let key = self.key("delete/me");
        self.put_file(&key, b"bye").await?;
        self.target
            .delete(&key)
            .await
            .map_err(|e| format!("delete {key}: {e}"))?;
        match self.target.head(&key).await {
            Err(e) if e.is_not_found() => {}
            other => {
                return Err(format!(
                    "head after delete: expected NotFound, got {other:?}"
                ))
            }
        }
        self.target
            .delete(&key)
            .await
            .map_err(|e| format!("deleting an already deleted key must succeed: {e}"))?;
        let never = self.key("delete/never-existed");
        self.target
            .delete(&never)
            .await
            .map_err(|e| format!("deleting a missing key must succeed: {e}"))?;
        let listed = self
            .target
            .list(&self.key("delete/"))
            .await
            .map_err(|e| format!("list after delete: {e}"))?;
        ensure!(
            listed.is_empty(),
            "list still shows deleted objects: {listed:?}"
        );
        self.pass("delete");
        Ok(())
    }

    /// Deletes everything the suite wrote, and its temporary files.
    async fn cleanup(&mut self) -> Result<(), String> {
        for path in self.temp_files.drain(..) {
            let _ = std::fs::remove_file(path);
        }
        let left = self
            .target
            .list(&self.root)
            .await
            .map_err(|e| format!("cleanup: list {}: {e}", self.root))?;
        for object in left {
            self.target
                .delete(&object.key)
                .await
                .map_err(|e| format!("cleanup: delete {}: {e}", object.key))?;
        }
        Ok(())
    }

    fn pass(&mut self, name: &str) {
        self.report.passed.push(name.to_string());
    }

    /// Puts `data` from a local file, and checks the upload's hash was recorded: the target must
    /// read bodies through [`Upload::stream`].
    async fn put_file(&mut self, key: &str, data: &[u8]) -> Result<(), String> {
        let path = std::env::temp_dir().join(format!(
            "esbackup-conformance-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&path, data).map_err(|e| format!("writing {}: {e}", path.display()))?;
        self.temp_files.push(path.clone());
        let upload = Upload::file(&path, data.len() as u64);
        let stored = self
            .target
            .put(key, upload)
            .await
            .map_err(|e| format!("put {key} ({} bytes): {e}", data.len()))?;
        let expected = md5(data);
        ensure!(
            stored.md5 == expected && stored.size == data.len() as u64,
            "put {key} returned {} bytes with MD5 {}, expected {} bytes with MD5 {} (it must read \
             the whole body through the upload's readers and return Upload::stored)",
            stored.size,
            hex::encode(stored.md5),
            data.len(),
            hex::encode(expected)
        );
        let _ = std::fs::remove_file(&path);
        Ok(())
    }

    /// Checks `get`, `head` and a listing of `key` against `data`.
    async fn expect_object(&self, key: &str, data: &[u8]) -> Result<(), String> {
        let got = read_all(self.target, key, None).await?;
        ensure!(
            got.len() == data.len() && got[..] == data[..],
            "get {key}: expected {} bytes (md5 {}), got {} bytes (md5 {})",
            data.len(),
            hex::encode(md5(data)),
            got.len(),
            hex::encode(md5(&got))
        );
        let info = self
            .target
            .head(key)
            .await
            .map_err(|e| format!("head {key}: {e}"))?;
        ensure!(
            info.key == key && info.size == data.len() as u64,
            "head {key}: expected key {key:?} and size {}, got {info:?}",
            data.len()
        );
        let listed = self
            .target
            .list(key)
            .await
            .map_err(|e| format!("list {key}: {e}"))?;
        ensure!(
            listed
                .iter()
                .any(|o| o.key == key && o.size == data.len() as u64),
            "list {key}: expected {key:?} with size {}, got {listed:?}",
            data.len()
        );
        Ok(())
    }

    async fn expect_range(&self, key: &str, range: Range<u64>, data: &[u8]) -> Result<(), String> {
        let got = read_all(self.target, key, Some(range.clone())).await?;
        let want = &data[range.start as usize..range.end as usize];
        ensure!(
            got[..] == want[..],
            "get {key} range {range:?}: expected {} bytes, got {} (or different bytes)",
            want.len(),
            got.len()
        );
        Ok(())
    }

    async fn expect_list(&self, name: &str, mut expected: Vec<ObjectInfo>) -> Result<(), String> {
        let prefix = self.key(name);
        let mut got = self
            .target
            .list(&prefix)
            .await
            .map_err(|e| format!("list {prefix}: {e}"))?;
        got.sort_by(|x, y| x.key.cmp(&y.key));
        expected.sort_by(|x, y| x.key.cmp(&y.key));
        let pairs = |v: &[ObjectInfo]| -> Vec<(String, u64)> {
            v.iter().map(|o| (o.key.clone(), o.size)).collect()
        };
        ensure!(
            pairs(&got) == pairs(&expected),
            "list {prefix:?}: expected {:?}, got {:?}",
            keys(&expected),
            got.iter()
                .map(|o| format!("{} ({} bytes)", o.key, o.size))
                .collect::<Vec<_>>()
        );
        Ok(())
    }
}

fn named(name: &str, outcome: Result<(), String>) -> Result<(), String> {
    outcome.map_err(|e| format!("conformance check `{name}` failed: {e}"))
}

fn keys(objects: &[ObjectInfo]) -> Vec<String> {
    objects
        .iter()
        .map(|o| format!("{} ({} bytes)", o.key, o.size))
        .collect()
}

async fn read_all(
    target: &dyn Target,
    key: &str,
    range: Option<Range<u64>>,
) -> Result<Bytes, String> {
    let stream = target
        .get(key, range.clone())
        .await
        .map_err(|e| format!("get {key} {range:?}: {e}"))?;
    let parts: Vec<Bytes> = stream
        .try_collect()
        .await
        .map_err(|e| format!("reading {key} {range:?}: {e}"))?;
    Ok(parts.concat().into())
}

/// Deterministic bytes that differ at every offset of interest (not all zeros).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(seed);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryTarget;

    #[tokio::test]
    async fn memory_target_conforms_and_is_left_clean() {
        let target = MemoryTarget::new();
        target.insert("keep/me", Bytes::from_static(b"x"));
        let report = run_conformance(&target).await.unwrap();
        assert!(report.put_if_absent_supported);
        assert!(report.passed.len() >= 11, "{report}");
        let left: Vec<String> = target.snapshot().into_keys().collect();
        assert_eq!(left, vec!["keep/me".to_string()]);
    }

    /// A target that breaks one promise: deleting a missing key fails.
    #[derive(Debug)]
    struct StrictDelete(MemoryTarget);

    #[async_trait::async_trait]
    impl Target for StrictDelete {
        fn describe(&self) -> String {
            "strict-delete".into()
        }
        async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
            self.0.list(prefix).await
        }
        async fn head(&self, key: &str) -> Result<ObjectInfo, TargetError> {
            self.0.head(key).await
        }
        async fn put(&self, key: &str, body: Upload) -> Result<crate::Stored, TargetError> {
            self.0.put(key, body).await
        }
        async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
            self.0.put_if_absent(key, data).await
        }
        async fn get(
            &self,
            key: &str,
            range: Option<Range<u64>>,
        ) -> Result<crate::target::ByteStream, TargetError> {
            self.0.get(key, range).await
        }
        async fn copy(&self, from: &str, to: &str) -> Result<(), TargetError> {
            self.0.copy(from, to).await
        }
        async fn delete(&self, key: &str) -> Result<(), TargetError> {
            self.0.head(key).await?;
            self.0.delete(key).await
        }
        async fn sync(&self) -> Result<(), TargetError> {
            self.0.sync().await
        }
        fn local_root(&self) -> Option<std::path::PathBuf> {
            None
        }
        fn local_file(&self, _key: &str) -> Option<std::path::PathBuf> {
            None
        }
        async fn abort_stale_uploads(
            &self,
            older_than: std::time::Duration,
        ) -> Result<u64, TargetError> {
            self.0.abort_stale_uploads(older_than).await
        }
        async fn incomplete_uploads(&self) -> Result<u64, TargetError> {
            self.0.incomplete_uploads().await
        }
    }

    #[tokio::test]
    async fn a_broken_promise_is_named() {
        let target = StrictDelete(MemoryTarget::new());
        let err = run_conformance(&target).await.unwrap_err();
        assert!(err.contains("`delete`"), "{err}");
        assert!(err.contains("already deleted"), "{err}");
    }
}
