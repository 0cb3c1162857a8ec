//! Adversarial tests: crash safety and live-node consistency holes, found by review.
//!
//! Each test names the behaviour it pins down. Tests that fail show a bug (see the comment above
//! each); the others are regression tests for corners the scenario suite does not reach.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use esbackup_engine::format::chunk::{self, ChunkFooter, ChunkInfo};
use esbackup_engine::manifest::{Manifest, RunState};
use esbackup_engine::target::ByteStream;
use esbackup_engine::testing::{FaultPlan, FaultyTarget, MemoryTarget};
use esbackup_engine::{
    backup, restore, verify, BackupOptions, EngineError, ObjectInfo, RestoreOptions, Target,
    TargetError, Upload, VerifyOptions,
};
use esbackup_tests::scenarios::{settled_node, sim_config};
use esbackup_tests::support::{
    backup_contents, backup_options, copy_dir, fast_retry, restore_and_check,
};
use esdb_sim::{check, CheckOptions, Node, SimConfig};
use futures::StreamExt;
use md5::{Digest, Md5};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// What a hook is told: an operation is about to run, has run, or a put has read `offset`
/// bytes of its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Before,
    PutPiece(u64),
    PutDone,
}

type Hook = Box<dyn FnMut(&str, &str, Event) + Send>;

/// A memory target that streams every upload itself (in small pieces) and calls a hook around
/// operations, so a test can change the source at an exact moment of the copy.
#[derive(Clone)]
struct Hooked {
    inner: MemoryTarget,
    hook: Arc<Mutex<Option<Hook>>>,
    piece: usize,
}

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hooked")
    }
}

impl Hooked {
    fn new(inner: MemoryTarget, hook: Hook) -> Hooked {
        Hooked {
            inner,
            hook: Arc::new(Mutex::new(Some(hook))),
            piece: 512,
        }
    }

    fn call(&self, op: &str, key: &str, ev: Event) {
        if let Some(h) = self.hook.lock().unwrap().as_mut() {
            h(op, key, ev);
        }
    }
}

#[async_trait]
impl Target for Hooked {
    fn describe(&self) -> String {
        "hooked".into()
    }
    async fn list(&self, p: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        self.call("list", p, Event::Before);
        self.inner.list(p).await
    }
    async fn head(&self, k: &str) -> Result<ObjectInfo, TargetError> {
        self.call("head", k, Event::Before);
        self.inner.head(k).await
    }
    async fn put(&self, k: &str, body: Upload) -> Result<(), TargetError> {
        self.call("put", k, Event::Before);
        let mut stream = body.stream(self.piece);
        let mut all = Vec::new();
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| TargetError::Permanent(format!("reading {k}: {e}")))?;
            all.extend_from_slice(&piece);
            self.call("put", k, Event::PutPiece(all.len() as u64));
        }
        self.inner.put(k, Upload::bytes(all)).await?;
        self.call("put", k, Event::PutDone);
        Ok(())
    }
    async fn put_if_absent(&self, k: &str, d: Bytes) -> Result<(), TargetError> {
        self.call("put_if_absent", k, Event::Before);
        self.inner.put_if_absent(k, d).await
    }
    async fn get(&self, k: &str, r: Option<Range<u64>>) -> Result<ByteStream, TargetError> {
        self.call("get", k, Event::Before);
        self.inner.get(k, r).await
    }
    async fn copy(&self, f: &str, t: &str) -> Result<(), TargetError> {
        self.call("copy", t, Event::Before);
        self.inner.copy(f, t).await
    }
    async fn delete(&self, k: &str) -> Result<(), TargetError> {
        self.call("delete", k, Event::Before);
        self.inner.delete(k).await
    }
}

fn chunk_key(n: u32) -> String {
    format!("chunk-{n:06}.000000")
}

/// Number of the chunk holding `writer.chk`.
fn writer_chunk(node: &Node) -> u32 {
    (node.checkpoints().writer / node.chunk_size() as i64) as u32
}

/// Appends one event at a time until the current writer chunk is completed (footer written,
/// truncated). Returns its key and whether its completed file kept the preallocated length.
fn complete_active_chunk(node: &mut Node) -> (String, bool) {
    let n = writer_chunk(node);
    let path = node.db_dir().join(chunk_key(n));
    let active_len = chunk::active_file_len(node.chunk_size());
    loop {
        node.append(1).unwrap();
        let info = ChunkInfo::read(&path).unwrap();
        if info.is_completed() {
            return (chunk_key(n), info.file_len == active_len);
        }
    }
}

/// Appends until the writer is in a chunk after the current one.
fn advance_to_next_chunk(node: &mut Node) {
    let n = writer_chunk(node);
    while writer_chunk(node) == n {
        node.append(5).unwrap();
    }
    node.settle().unwrap();
}

/// A node config with the chunk size the server's own tests use (10,000 → 12,288-byte files):
/// a naturally full chunk keeps its preallocated length when it is completed.
fn small_chunks(seed: u64) -> SimConfig {
    SimConfig {
        chunk_size: 10_000,
        scavenge: false,
        ..sim_config(seed)
    }
}

/// The first seed for which `build` + completing the active chunk keeps the file's length
/// (`same`) or shortens it (`!same`).
fn seed_where_completion(same: bool, build: impl Fn(&Path, u64) -> Node) -> u64 {
    for seed in 0..200 {
        let dir = tempfile::tempdir().unwrap();
        let mut node = build(&dir.path().join("db"), seed);
        if complete_active_chunk(&mut node).1 == same {
            return seed;
        }
    }
    panic!("no seed where a completed chunk keeps its length = {same}");
}

fn seed_where_completion_keeps_length(build: impl Fn(&Path, u64) -> Node) -> u64 {
    seed_where_completion(true, build)
}

fn mem() -> (MemoryTarget, Arc<dyn Target>) {
    let m = MemoryTarget::new();
    (m.clone(), Arc::new(m))
}

fn manifest_of(mem: &MemoryTarget) -> Manifest {
    serde_json::from_slice(&mem.snapshot()[".esbackup/manifest.json"]).unwrap()
}

fn check_opts(archive: bool) -> CheckOptions {
    CheckOptions {
        archive,
        expect_truncate_equals_chaser: true,
    }
}

/// Restores into `scratch/name` and checks; returns the restore result and the check.
async fn try_restore(
    target: Arc<dyn Target>,
    scratch: &Path,
    name: &str,
    allow_incomplete: bool,
    archive: bool,
) -> Result<esdb_sim::CheckReport, EngineError> {
    let dest = scratch.join(name);
    let mut opts = RestoreOptions::new(&dest);
    opts.retry = fast_retry();
    opts.allow_incomplete = allow_incomplete;
    restore(target, &opts).await?;
    Ok(check(&dest, &dest.join("index"), &check_opts(archive)))
}

fn completed_footer(bytes: &[u8]) -> Option<ChunkFooter> {
    let tail: &[u8; 128] = bytes
        .get(bytes.len().checked_sub(128)?..)?
        .try_into()
        .ok()?;
    let f = ChunkFooter::decode(tail);
    f.is_completed().then_some(f)
}

fn trailing_md5_ok(bytes: &[u8]) -> bool {
    let (body, md5) = bytes.split_at(bytes.len() - 16);
    Md5::digest(body).as_slice() == md5
}

// ---------------------------------------------------------------------------------------------
// Bug: chunk completion is detected only by a change of file length
// ---------------------------------------------------------------------------------------------

fn build_one_active_chunk(db: &Path, seed: u64) -> Node {
    let mut node = Node::create(db, small_chunks(seed)).unwrap();
    node.append(60).unwrap();
    node.settle().unwrap();
    node
}

/// The active chunk is completed by the node just after esbackup copied it (its length does not
/// change: a naturally full chunk). The manifest then says "completed" for an object that is the
/// active version, every later differential keeps it, and the restored database has a
/// non-completed chunk below the writer chunk, which the server refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_completed_right_after_its_copy_is_not_recorded_as_completed() {
    let seed = seed_where_completion_keeps_length(build_one_active_chunk);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let node = Arc::new(Mutex::new(build_one_active_chunk(&db, seed)));
    let key = chunk_key(writer_chunk(&node.lock().unwrap()));
    let (memt, _) = mem();
    let (n2, k2) = (node.clone(), key.clone());
    let mut fired = false;
    let hooked = Hooked::new(
        memt.clone(),
        Box::new(move |op, k, ev| {
            if op == "put" && k == k2 && ev == Event::PutDone && !fired {
                fired = true;
                assert!(complete_active_chunk(&mut n2.lock().unwrap()).1);
            }
        }),
    );
    let mut opts = backup_options(&db);
    opts.concurrency = 1;
    backup(Arc::new(hooked), &opts).await.unwrap();

    let entry = manifest_of(&memt).files[&key].clone();
    let stored = memt.snapshot()[&key].clone();
    assert_eq!(
        entry.chunk.as_ref().unwrap().completed,
        completed_footer(&stored).is_some(),
        "the manifest says completed={} for {key}, but the stored object is {}",
        entry.chunk.as_ref().unwrap().completed,
        if completed_footer(&stored).is_some() {
            "completed"
        } else {
            "the active version"
        }
    );

    // What it leads to: the next differential keeps the stale copy; the restore is refused.
    advance_to_next_chunk(&mut node.lock().unwrap());
    let t: Arc<dyn Target> = Arc::new(memt.clone());
    backup(t.clone(), &backup_options(&db)).await.unwrap();
    let checked = try_restore(t, dir.path(), "restored", false, false)
        .await
        .unwrap();
    assert!(checked.is_ok(), "{:?}", checked.violations);
}

/// The node appends the last records and completes the chunk while esbackup is reading it,
/// after the read passed the end of the data (the length does not change). The stored object
/// has the new footer but not the new records: it fails its own MD5, yet the run completes and
/// the restore then refuses the backup as damaged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_completed_during_its_copy_is_copied_again() {
    let seed = seed_where_completion_keeps_length(build_one_active_chunk);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let node = build_one_active_chunk(&db, seed);
    let n = writer_chunk(&node);
    let key = chunk_key(n);
    let data_end = 128 + (node.checkpoints().writer - n as i64 * node.chunk_size() as i64) as u64;
    let node = Arc::new(Mutex::new(node));
    let (memt, _) = mem();
    let (n2, k2) = (node.clone(), key.clone());
    let mut fired = false;
    let hooked = Hooked::new(
        memt.clone(),
        Box::new(move |op, k, ev| {
            if let (true, Event::PutPiece(at)) = (op == "put" && k == k2 && !fired, ev) {
                if at > data_end + 1024 {
                    fired = true;
                    assert!(complete_active_chunk(&mut n2.lock().unwrap()).1);
                }
            }
        }),
    );
    let mut opts = backup_options(&db);
    opts.concurrency = 1;
    let report = backup(Arc::new(hooked), &opts).await.unwrap();
    assert!(report.completed);
    let stored = memt.snapshot()[&key].clone();
    if completed_footer(&stored).is_some() {
        assert!(
            trailing_md5_ok(&stored),
            "{key} is stored with a completed footer whose MD5 does not match its bytes"
        );
    }
    let checked = try_restore(Arc::new(memt), dir.path(), "restored", false, false)
        .await
        .unwrap_or_else(|e| panic!("a backup reported completed does not restore: {e}"));
    assert!(checked.is_ok(), "{:?}", checked.violations);
}

// ---------------------------------------------------------------------------------------------
// Bug: a killed run leaves chunks the manifest does not describe; the next run trusts them by
// name, size and chunk id only
// ---------------------------------------------------------------------------------------------

fn build_new_active_chunk(db: &Path, seed: u64) -> Node {
    let mut node = build_one_active_chunk(db, seed);
    advance_to_next_chunk(&mut node);
    node
}

/// Operation log of a backup of `db` into a copy of `base` (nothing fails).
async fn dry_log(base: &MemoryTarget, opts: &BackupOptions) -> Vec<String> {
    let probe = Arc::new(FaultyTarget::new(base.deep_clone(), FaultPlan::None));
    backup(probe.clone(), opts).await.unwrap();
    probe.log()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_left_by_a_killed_run_is_copied_again_once_completed() {
    let seed = seed_where_completion_keeps_length(build_new_active_chunk);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut node = build_one_active_chunk(&db, seed);
    let (memt, t) = mem();
    let mut opts = backup_options(&db);
    opts.concurrency = 1;
    backup(t.clone(), &opts).await.unwrap();
    advance_to_next_chunk(&mut node);
    let key = chunk_key(writer_chunk(&node));

    // The process dies right after it stored the new active chunk: no manifest update.
    let log = dry_log(&memt, &opts).await;
    let k = log.iter().position(|l| *l == format!("put {key}")).unwrap() as u64 + 1;
    let killed = Arc::new(FaultyTarget::new(memt.clone(), FaultPlan::CrashAt(k)));
    assert!(backup(killed, &opts).await.is_err());
    assert!(memt.snapshot().contains_key(&key));
    assert!(!manifest_of(&memt).files.contains_key(&key));

    // The node completes that chunk (same length) and moves on; the next run completes.
    let (_, same_len) = complete_active_chunk(&mut node);
    assert!(same_len);
    node.settle().unwrap();
    let report = backup(t.clone(), &backup_options(&db)).await.unwrap();
    assert!(report.completed);
    let stored = memt.snapshot()[&key].clone();
    assert!(
        completed_footer(&stored).is_some(),
        "{key} is completed on the source but the backup kept the active copy the killed run left"
    );
    let checked = try_restore(t, dir.path(), "restored", false, false)
        .await
        .unwrap_or_else(|e| panic!("restore: {e}"));
    assert!(checked.is_ok(), "{:?}", checked.violations);
}

// ---------------------------------------------------------------------------------------------
// Bug: the "another database" guard only compares completed chunks
// ---------------------------------------------------------------------------------------------

/// Two young databases (only their first, active chunk): the second is silently written over
/// the backup of the first, although the README says a backup of another database is refused.
#[tokio::test]
async fn another_young_database_is_not_mixed_into_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    for (db, seed) in [(&one, 1), (&two, 2)] {
        let mut n = Node::create(db, sim_config(seed)).unwrap();
        n.append(30).unwrap();
        n.settle().unwrap();
    }
    let (memt, t) = mem();
    backup(t.clone(), &backup_options(&one)).await.unwrap();
    let before = backup_contents(t.as_ref()).await;
    let result = backup(t.clone(), &backup_options(&two)).await;
    assert!(
        matches!(result, Err(EngineError::BadInput(_))),
        "a backup of another database was accepted: {:?}",
        result.map(|r| r.uploaded_keys)
    );
    assert_eq!(backup_contents(t.as_ref()).await, before);
    drop(memt);
}

// ---------------------------------------------------------------------------------------------
// Bug: an interrupted --full run over another database restores as a mix of both
// ---------------------------------------------------------------------------------------------

fn chunk_ids(db: &Path) -> BTreeSet<String> {
    std::fs::read_dir(db)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name()?.to_str()?.to_string();
            chunk::ChunkName::parse(&name)?;
            Some(ChunkInfo::read(&p).ok()?.header.chunk_id.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_full_backup_over_another_database_never_restores_a_mix() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    settled_node(&one, 1, 40);
    settled_node(&two, 2, 40);
    let (ids1, ids2) = (chunk_ids(&one), chunk_ids(&two));
    let base = MemoryTarget::new();
    backup(Arc::new(base.clone()), &backup_options(&one))
        .await
        .unwrap();
    let mut full = backup_options(&two);
    full.full = true;
    full.concurrency = 1;
    let mut mixed = Vec::new();
    for k in 0.. {
        let t = base.deep_clone();
        let faulty = Arc::new(FaultyTarget::new(t.clone(), FaultPlan::CrashAt(k)));
        let outcome = backup(faulty, &full).await;
        let name = format!("r{k}");
        if let Ok(report) = try_restore(Arc::new(t), dir.path(), &name, false, false).await {
            let got = chunk_ids(&dir.path().join(&name));
            let from1 = got.intersection(&ids1).count();
            let from2 = got.intersection(&ids2).count();
            if from1 > 0 && from2 > 0 {
                mixed.push((k, from1, from2, report.is_ok()));
            }
        }
        if outcome.is_ok() {
            break;
        }
    }
    assert!(
        mixed.is_empty(),
        "crash points whose backup restores (without --allow-incomplete) to chunks of both databases (k, #db1, #db2, checker ok): {mixed:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Bug: a live lock of another process with the same host name and pid is taken over
// ---------------------------------------------------------------------------------------------

/// Two containers on one host (Kubernetes hostNetwork pods, `--uts=host`, or an explicit shared
/// `hostname:`) each run esbackup as pid 1. One holds the lock with a fresh heartbeat; the other
/// sees "same host, same pid, run not active in this process" and deletes the live lock.
#[tokio::test]
async fn a_fresh_lock_of_another_process_with_our_host_and_pid_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 4, 10);
    let (memt, t) = mem();
    let now = chrono::Utc::now();
    let other = serde_json::json!({
        "run_id": "20990101T000000Z-othercontainer", "host": esbackup_engine::lock::host_name(),
        "pid": std::process::id(), "command": "backup", "started": now, "heartbeat": now
    });
    memt.insert(
        ".esbackup/locks/20990101T000000Z-othercontainer.json",
        serde_json::to_vec(&other).unwrap(),
    );
    let result = backup(t, &backup_options(&db)).await;
    assert!(
        matches!(result, Err(EngineError::LockHeld(_))),
        "a lock with a fresh heartbeat was taken over: {:?}",
        result.map(|r| r.run_id)
    );
}

// ---------------------------------------------------------------------------------------------
// Transient faults and mid-stream faults
// ---------------------------------------------------------------------------------------------

fn patient_retry() -> esbackup_engine::retry::RetryPolicy {
    esbackup_engine::retry::RetryPolicy {
        attempts: 15,
        base_delay: Duration::from_micros(200),
        max_delay: Duration::from_millis(2),
    }
}

/// Random transient faults on every kind of operation: backups, a differential and the restore
/// all complete thanks to the retries, and the result is consistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_transient_faults_are_retried_through_backup_and_restore() {
    for seed in 1..=3u64 {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let mut node = settled_node(&db, 100 + seed, 60);
        let store = MemoryTarget::new();
        let faulty: Arc<dyn Target> = Arc::new(FaultyTarget::new(
            store.clone(),
            FaultPlan::Random { seed, rate: 0.3 },
        ));
        let mut opts = backup_options(&db);
        opts.retry = patient_retry();
        backup(faulty.clone(), &opts).await.unwrap();
        node.append(300).unwrap();
        for _ in 0..40 {
            node.step().unwrap();
        }
        node.settle().unwrap();
        let report = backup(faulty.clone(), &opts).await.unwrap();
        assert!(report.completed);
        assert!(store.list(".esbackup/locks/").await.unwrap().is_empty());
        let dest = dir.path().join("restored");
        let mut ropts = RestoreOptions::new(&dest);
        ropts.retry = patient_retry();
        restore(faulty.clone(), &ropts).await.unwrap();
        let checked = check(&dest, &dest.join("index"), &check_opts(false));
        assert!(checked.is_ok(), "seed {seed}: {:?}", checked.violations);
        let v = verify(
            faulty,
            &VerifyOptions {
                read_data: true,
                retry: patient_retry(),
                ..VerifyOptions::default()
            },
        )
        .await
        .unwrap();
        assert!(v.is_ok(), "seed {seed}: {:?}", v.problems);
    }
}

/// A target whose downloads break once per key after the first piece with a transient error
/// (a connection reset in the middle of a body), as a custom backend may report it.
#[derive(Debug)]
struct BrokenBodies {
    inner: MemoryTarget,
    broken: Mutex<BTreeSet<String>>,
}

#[async_trait]
impl Target for BrokenBodies {
    fn describe(&self) -> String {
        "broken-bodies".into()
    }
    async fn list(&self, p: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        self.inner.list(p).await
    }
    async fn head(&self, k: &str) -> Result<ObjectInfo, TargetError> {
        self.inner.head(k).await
    }
    async fn put(&self, k: &str, b: Upload) -> Result<(), TargetError> {
        self.inner.put(k, b).await
    }
    async fn put_if_absent(&self, k: &str, d: Bytes) -> Result<(), TargetError> {
        self.inner.put_if_absent(k, d).await
    }
    async fn get(&self, k: &str, r: Option<Range<u64>>) -> Result<ByteStream, TargetError> {
        let data: Vec<Bytes> = self
            .inner
            .get(k, r)
            .await?
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let data: Bytes = data.concat().into();
        let first_time = k.starts_with("chunk-") && self.broken.lock().unwrap().insert(k.into());
        if first_time && data.len() > 1024 {
            let head = data.slice(..1024);
            let err = TargetError::Transient(format!("{k}: connection reset by peer"));
            return Ok(futures::stream::iter(vec![Ok(head), Err(err)]).boxed());
        }
        Ok(futures::stream::iter(vec![Ok(data)]).boxed())
    }
    async fn copy(&self, f: &str, t: &str) -> Result<(), TargetError> {
        self.inner.copy(f, t).await
    }
    async fn delete(&self, k: &str) -> Result<(), TargetError> {
        self.inner.delete(k).await
    }
}

/// A transient error in the middle of a download is not retried: `RetryTarget` retries only the
/// call that opens the stream, so one connection reset fails the whole restore (exit 7).
#[tokio::test]
async fn a_transient_error_in_the_middle_of_a_download_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 8, 20);
    let store = MemoryTarget::new();
    backup(Arc::new(store.clone()), &backup_options(&db))
        .await
        .unwrap();
    let target = Arc::new(BrokenBodies {
        inner: store,
        broken: Mutex::default(),
    });
    let dest = dir.path().join("restored");
    let mut opts = RestoreOptions::new(&dest);
    opts.retry = patient_retry();
    let result = restore(target, &opts).await;
    assert!(
        result.is_ok(),
        "one transient mid-body error failed the restore: {:?}",
        result.err().map(|e| (e.exit_code(), e.to_string()))
    );
}

// ---------------------------------------------------------------------------------------------
// Lock races
// ---------------------------------------------------------------------------------------------

/// A memory target that logs the order of operations (shared by two racing runs).
#[derive(Debug, Clone)]
struct Logged {
    inner: MemoryTarget,
    log: Arc<Mutex<Vec<(String, String)>>>,
}

impl Logged {
    fn note(&self, op: &str, key: &str) {
        self.log.lock().unwrap().push((op.into(), key.into()));
    }
}

#[async_trait]
impl Target for Logged {
    fn describe(&self) -> String {
        "logged".into()
    }
    async fn list(&self, p: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        tokio::task::yield_now().await;
        self.inner.list(p).await
    }
    async fn head(&self, k: &str) -> Result<ObjectInfo, TargetError> {
        self.inner.head(k).await
    }
    async fn put(&self, k: &str, b: Upload) -> Result<(), TargetError> {
        tokio::task::yield_now().await;
        let r = self.inner.put(k, b).await;
        self.note("put", k);
        r
    }
    async fn put_if_absent(&self, k: &str, d: Bytes) -> Result<(), TargetError> {
        tokio::task::yield_now().await;
        let r = self.inner.put_if_absent(k, d).await;
        self.note("put_if_absent", k);
        r
    }
    async fn get(&self, k: &str, r: Option<Range<u64>>) -> Result<ByteStream, TargetError> {
        tokio::task::yield_now().await;
        self.inner.get(k, r).await
    }
    async fn copy(&self, f: &str, t: &str) -> Result<(), TargetError> {
        let r = self.inner.copy(f, t).await;
        self.note("copy", t);
        r
    }
    async fn delete(&self, k: &str) -> Result<(), TargetError> {
        tokio::task::yield_now().await;
        let r = self.inner.delete(k).await;
        self.note("delete", k);
        r
    }
}

/// Runs two backups of the same node at once on one location, `rounds` times. Checks the safety
/// part (every failure is LockHeld with exit 4, no data write while the locks of two completing
/// runs exist, no lock left) and returns how many rounds ended with no completed run.
async fn race(seed: u64, rounds: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut node = settled_node(&db, seed, 40);
    let store = MemoryTarget::new();
    let logged = Logged {
        inner: store.clone(),
        log: Arc::default(),
    };
    let t: Arc<dyn Target> = Arc::new(esbackup_tests::support::Slow {
        inner: logged.clone(),
        max_delay_us: 300,
    });
    let mut rounds_without_backup = 0;
    let mut any_completed = false;
    for round in 0..rounds {
        node.append(50).unwrap();
        node.settle().unwrap();
        logged.log.lock().unwrap().clear();
        let (oa, ob) = (backup_options(&db), backup_options(&db));
        let (a, b) = tokio::join!(backup(t.clone(), &oa), backup(t.clone(), &ob));
        let mut ok_ids = Vec::new();
        for r in [a, b] {
            match r {
                Ok(rep) => ok_ids.push(rep.run_id),
                Err(e) => assert!(
                    matches!(e, EngineError::LockHeld(_)) && e.exit_code() == 4,
                    "round {round}: {e}"
                ),
            }
        }
        any_completed |= !ok_ids.is_empty();
        rounds_without_backup += usize::from(ok_ids.is_empty());
        let log = logged.log.lock().unwrap().clone();
        // A contender's lock object exists for a moment before it backs off; what counts is the
        // object of the attempt that got the lock: each completing run's last lock written.
        let winning: Vec<String> = ok_ids
            .iter()
            .filter_map(|id| {
                log.iter()
                    .rev()
                    .find(|(op, k)| {
                        k.starts_with(".esbackup/locks/")
                            && k.contains(id.as_str())
                            && op != "delete"
                    })
                    .map(|(_, k)| k.clone())
            })
            .collect();
        let mut held: BTreeSet<String> = BTreeSet::new();
        for (op, key) in &log {
            if key.starts_with(".esbackup/locks/") {
                match op.as_str() {
                    "delete" => {
                        held.remove(key);
                    }
                    "put" | "put_if_absent" => {
                        held.insert(key.clone());
                    }
                    _ => {}
                }
                continue;
            }
            let writers: Vec<&String> = held.iter().filter(|k| winning.contains(k)).collect();
            assert!(
                writers.len() <= 1,
                "round {round}: {op} {key} while the locks of two completing runs exist: {writers:?}"
            );
        }
        assert!(store.list(".esbackup/locks/").await.unwrap().is_empty());
    }
    if any_completed {
        let (_, checked) = restore_and_check(t, dir.path(), "restored").await;
        assert!(checked.is_ok(), "{:?}", checked.violations);
    }
    rounds_without_backup
}

/// Two backups started at once on one location never both hold the lock; a loser fails with
/// LockHeld (exit 4); no lock object is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backups_racing_on_one_location_never_both_hold_the_lock() {
    race(33, 4).await;
}

/// Liveness: of two runs started at once, both give up (each sees the other's fresh lock and
/// backs off, with no tie-break and no retry), so two schedulers firing together never get a
/// backup at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backups_started_together_do_not_both_give_up() {
    let empty = race(34, 6).await;
    assert_eq!(
        empty, 0,
        "in {empty} of 6 rounds both racing runs gave up (LockHeld) and no backup was taken"
    );
}

// ---------------------------------------------------------------------------------------------
// Index phase
// ---------------------------------------------------------------------------------------------

/// An `indexmap` rewritten while every table is copied (a node merging heavily during a
/// `--full` run): the run stops with SourceChanging (exit 6) after its bounded rounds, never
/// hangs, and leaves the backup restorable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexmap_that_keeps_changing_ends_with_source_changing() {
    use esbackup_engine::format::indexmap::IndexMap;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 51, 40);
    let (memt, t) = mem();
    backup(t.clone(), &backup_options(&db)).await.unwrap();
    let index = db.join("index");
    let original = IndexMap::parse(&std::fs::read(index.join("indexmap")).unwrap()).unwrap();
    let mut i = 0i64;
    let rewrites = Arc::new(Mutex::new(0u32));
    let rw = rewrites.clone();
    let idx = index.clone();
    let tables = original.tables.len() as u32;
    let hooked = Hooked::new(
        memt.clone(),
        Box::new(move |op, k, ev| {
            if op == "put" && ev == Event::Before && k.starts_with("index/") && !k.contains('.') {
                i += 1;
                let mut m = original.clone();
                m.prepare_checkpoint = original.prepare_checkpoint - i;
                let tmp = idx.join(format!("indexmap.{i}.indexmap.tmp"));
                std::fs::write(&tmp, m.encode()).unwrap();
                std::fs::rename(&tmp, idx.join("indexmap")).unwrap();
                *rw.lock().unwrap() += 1;
            }
        }),
    );
    let mut opts = backup_options(&db);
    opts.full = true;
    opts.index_rounds = 7;
    let started = Instant::now();
    let err = backup(Arc::new(hooked), &opts)
        .await
        .expect_err("the index never stood still");
    assert!(matches!(err, EngineError::SourceChanging(_)), "{err}");
    assert_eq!(err.exit_code(), 6);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        *rewrites.lock().unwrap(),
        7 * tables,
        "one pass over the tables per round"
    );
    let (_, checked) = restore_and_check(t, dir.path(), "restored").await;
    assert!(checked.is_ok(), "{:?}", checked.violations);
}

/// `indexmap` missing for longer than the wait (tables present): SourceChanging after about the
/// wait, and nothing of the backup changes.
#[tokio::test]
async fn an_indexmap_missing_longer_than_the_wait_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 52, 30);
    let (memt, t) = mem();
    backup(t.clone(), &backup_options(&db)).await.unwrap();
    let before = backup_contents(t.as_ref()).await;
    std::fs::remove_file(db.join("index").join("indexmap")).unwrap();
    let mut opts = backup_options(&db);
    opts.indexmap_wait = Duration::from_millis(300);
    let started = Instant::now();
    let err = backup(t.clone(), &opts).await.unwrap_err();
    assert!(matches!(err, EngineError::SourceChanging(_)), "{err}");
    assert_eq!(err.exit_code(), 6);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(backup_contents(t.as_ref()).await, before);
    assert!(manifest_of(&memt).last_completed.is_some());
    let (_, checked) = restore_and_check(t, dir.path(), "restored").await;
    assert!(checked.is_ok(), "{:?}", checked.violations);
}

/// A PTable named by `indexmap` that is corrupt on the source (not a table being written: it
/// never changes). The run spins through every index round and then blames a node "merging
/// index tables heavily", advising to try again later, which can never succeed. It should name
/// the bad table.
#[tokio::test]
async fn a_corrupt_table_on_the_source_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 53, 30);
    let index = db.join("index");
    let map = esbackup_engine::format::indexmap::IndexMap::parse(
        &std::fs::read(index.join("indexmap")).unwrap(),
    )
    .unwrap();
    let table = map.tables[0].file.clone();
    let path = index.join(&table);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[200] ^= 0xff;
    let mut perm = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&path, perm).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let (_, t) = mem();
    let err = backup(t, &backup_options(&db)).await.unwrap_err();
    assert!(
        err.to_string().contains(&table),
        "exit {}: {err}",
        err.exit_code()
    );
}

// ---------------------------------------------------------------------------------------------
// Chunks changing under the copy (length changes: detected)
// ---------------------------------------------------------------------------------------------

/// The active chunk (64 KiB chunks: its length changes on completion) is completed between the
/// listing and its copy, and another one during its copy: both are stored completed and whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_completed_between_listing_and_copy_or_during_it_are_stored_whole() {
    let build = |db: &Path, seed: u64| settled_node(db, seed, 30);
    let seed = seed_where_completion(false, build);
    for during in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let node = build(&db, seed);
        let key = chunk_key(writer_chunk(&node));
        let node = Arc::new(Mutex::new(node));
        let (memt, _) = mem();
        let (n2, k2) = (node.clone(), key.clone());
        let mut fired = false;
        let hooked = Hooked::new(
            memt.clone(),
            Box::new(move |op, k, ev| {
                let now = match ev {
                    Event::Before => !during && op == "put" && k.starts_with("chunk-"),
                    Event::PutPiece(at) => during && k == k2 && at >= 8192,
                    Event::PutDone => false,
                };
                if now && !fired {
                    fired = true;
                    let (_, same) = complete_active_chunk(&mut n2.lock().unwrap());
                    assert!(!same, "this test wants a completion that shortens the file");
                }
            }),
        );
        let mut opts = backup_options(&db);
        opts.concurrency = 1;
        backup(Arc::new(hooked), &opts).await.unwrap();
        let stored = memt.snapshot()[&key].clone();
        assert!(completed_footer(&stored).is_some(), "during={during}");
        assert!(trailing_md5_ok(&stored), "during={during}");
        assert!(
            manifest_of(&memt).files[&key]
                .chunk
                .as_ref()
                .unwrap()
                .completed
        );
        let checked = try_restore(Arc::new(memt), dir.path(), "r", false, false)
            .await
            .unwrap();
        assert!(checked.is_ok(), "during={during}: {:?}", checked.violations);
    }
}

// ---------------------------------------------------------------------------------------------
// Crash-point sweeps
// ---------------------------------------------------------------------------------------------

/// Fails exactly operation `k` (permanently) and lets every other one through: the run fails
/// but still writes its "failed" manifest, unlike a crash.
#[derive(Debug)]
struct FailOne<T> {
    inner: T,
    k: u64,
    n: std::sync::atomic::AtomicU64,
    failed: Mutex<Option<String>>,
}

impl<T> FailOne<T> {
    fn new(inner: T, k: u64) -> Self {
        FailOne {
            inner,
            k,
            n: Default::default(),
            failed: Mutex::default(),
        }
    }
    fn check(&self, what: String) -> Result<(), TargetError> {
        if self.n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == self.k {
            *self.failed.lock().unwrap() = Some(what.clone());
            return Err(TargetError::Permanent(format!(
                "injected failure of {what}"
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl<T: Target> Target for FailOne<T> {
    fn describe(&self) -> String {
        "fail-one".into()
    }
    async fn list(&self, p: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        self.check(format!("list {p}"))?;
        self.inner.list(p).await
    }
    async fn head(&self, k: &str) -> Result<ObjectInfo, TargetError> {
        self.check(format!("head {k}"))?;
        self.inner.head(k).await
    }
    async fn put(&self, k: &str, b: Upload) -> Result<(), TargetError> {
        self.check(format!("put {k}"))?;
        self.inner.put(k, b).await
    }
    async fn put_if_absent(&self, k: &str, d: Bytes) -> Result<(), TargetError> {
        self.check(format!("put_if_absent {k}"))?;
        self.inner.put_if_absent(k, d).await
    }
    async fn get(&self, k: &str, r: Option<Range<u64>>) -> Result<ByteStream, TargetError> {
        self.check(format!("get {k}"))?;
        self.inner.get(k, r).await
    }
    async fn copy(&self, f: &str, t: &str) -> Result<(), TargetError> {
        self.check(format!("copy {f} -> {t}"))?;
        self.inner.copy(f, t).await
    }
    async fn delete(&self, k: &str) -> Result<(), TargetError> {
        self.check(format!("delete {k}"))?;
        self.inner.delete(k).await
    }
}

/// How a sweep's node is built and changed.
#[derive(Clone, Debug)]
struct Sweep {
    seed: u64,
    /// Events and random steps before the base backup.
    events: usize,
    steps: usize,
    /// Events and random steps between the base backup and the interrupted one.
    more_events: usize,
    more_steps: usize,
    chunk_size: u32,
    archive: bool,
    /// Fail one operation (the run writes a "failed" manifest) instead of crashing.
    fail_one: bool,
}

impl Sweep {
    fn config(&self) -> SimConfig {
        SimConfig {
            chunk_size: self.chunk_size,
            archive: self.archive,
            scavenge: true,
            ..sim_config(self.seed)
        }
    }
}

/// Builds the sweep's node: the state of the base backup (copied to `db-before`) and the state
/// the interrupted run copies (`db`).
fn sweep_dirs(s: &Sweep, dir: &Path) -> (PathBuf, PathBuf) {
    let db = dir.join("db");
    let before = dir.join("db-before");
    let mut node = Node::create(&db, s.config()).unwrap();
    node.append(s.events).unwrap();
    for _ in 0..s.steps {
        node.step().unwrap();
    }
    node.settle().unwrap();
    copy_dir(&db, &before);
    node.append(s.more_events).unwrap();
    for _ in 0..s.more_steps {
        node.step().unwrap();
    }
    node.settle().unwrap();
    (db, before)
}

/// For every operation k of a differential run: interrupt it at k, restore what it left (must
/// pass the checker), verify it (must report a problem unless the manifest says completed),
/// rerun (must complete and equal a fresh backup). Returns the number of points and every
/// problem found.
async fn sweep(s: Sweep) -> (u64, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let (db, before) = sweep_dirs(&s, dir.path());
    let mut opts_before = backup_options(&before);
    opts_before.concurrency = 2;
    let base = MemoryTarget::new();
    backup(Arc::new(base.clone()), &opts_before).await.unwrap();
    let reference = MemoryTarget::new();
    backup(Arc::new(reference.clone()), &backup_options(&db))
        .await
        .unwrap();
    let expected = backup_contents(&reference).await;
    let mut opts = backup_options(&db);
    opts.concurrency = 2;
    let mut problems = Vec::new();

    for k in 0.. {
        let t = base.deep_clone();
        let (outcome, what) = if s.fail_one {
            let f = Arc::new(FailOne::new(t.clone(), k));
            let o = backup(f.clone(), &opts).await;
            let what = f.failed.lock().unwrap().clone();
            (o, what)
        } else {
            let f = Arc::new(FaultyTarget::new(t.clone(), FaultPlan::CrashAt(k)));
            let o = backup(f.clone(), &opts).await;
            (o, f.log().get(k as usize).cloned())
        };
        let at = format!("seed {} k {k} ({})", s.seed, what.unwrap_or_default());
        let name = format!("r{k}");
        match try_restore(Arc::new(t.clone()), dir.path(), &name, false, s.archive).await {
            Ok(checked) if !checked.is_ok() => {
                problems.push(format!("{at}: restored: {:?}", checked.violations))
            }
            Ok(_) => {}
            Err(e) => problems.push(format!("{at}: restore failed: {e}")),
        }
        let _ = std::fs::remove_dir_all(dir.path().join(&name));
        let state = manifest_of(&t).state;
        let v = verify(Arc::new(t.clone()), &VerifyOptions::default())
            .await
            .unwrap();
        if v.is_ok() != (state == RunState::Completed) {
            problems.push(format!("{at}: manifest {state:?}, verify {:?}", v.problems));
        }
        match backup(Arc::new(t.clone()), &opts).await {
            Ok(_) => {
                let got = backup_contents(&t).await;
                if got != expected {
                    problems.push(format!("{at}: the rerun differs from a fresh backup"));
                }
            }
            Err(e) => problems.push(format!("{at}: rerun failed: {e}")),
        }
        if outcome.is_ok() {
            return (k, problems);
        }
    }
    unreachable!()
}

fn base_sweep(seed: u64) -> Sweep {
    Sweep {
        seed,
        events: 500 + 150 * seed as usize,
        steps: 60 + 20 * seed as usize,
        more_events: 100 + 60 * seed as usize,
        more_steps: 40 + 25 * seed as usize,
        chunk_size: 64 * 1024,
        archive: false,
        fail_one: false,
    }
}

/// The crash sweep of `scenarios::crash_points`, over five seeds with different mixes of
/// appends, scavenges, merges and index merges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_any_operation_over_several_seeds_and_mutation_mixes() {
    let mut total = 0;
    let mut problems = Vec::new();
    for seed in 1..=5 {
        let (points, found) = sweep(base_sweep(seed)).await;
        println!(
            "crash sweep seed {seed}: {points} crash points, {} problems",
            found.len()
        );
        assert!(points > 15, "seed {seed}: only {points} operations");
        total += points;
        problems.extend(found);
    }
    println!("crash sweeps: {total} crash points in all");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A single failed operation (the run writes its "failed" manifest, merging what the previous
/// one said): every failure point restores, verifies as incomplete, and reruns cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_failed_operation_anywhere_leaves_a_restorable_backup() {
    for seed in [2, 4] {
        let (points, problems) = sweep(Sweep {
            fail_one: true,
            ..base_sweep(seed)
        })
        .await;
        println!("single-failure sweep seed {seed}: {points} points");
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}

/// Archive mode: the oldest chunks leave the node (the db starts at chunk N > 0), no merges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_sweep_on_an_archive_mode_node() {
    let s = Sweep {
        archive: true,
        events: 1200,
        steps: 250,
        more_events: 300,
        more_steps: 150,
        ..base_sweep(3)
    };
    let (points, problems) = sweep(s).await;
    println!("archive-mode crash sweep: {points} points");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Small chunks (10,000 bytes, as the server's tests use): many chunks, completed chunks that
/// keep their preallocated length, merges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_sweep_with_small_chunks() {
    let s = Sweep {
        chunk_size: 10_000,
        events: 400,
        steps: 80,
        more_events: 120,
        more_steps: 60,
        ..base_sweep(7)
    };
    let (points, problems) = sweep(s).await;
    println!("small-chunk crash sweep: {points} points");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A crash at every point of the FIRST backup: without a completed run the restore refuses
/// (exit 8); with --allow-incomplete it either refuses or gives a consistent database; the
/// rerun completes and equals a fresh backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_the_first_backup_then_a_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    settled_node(&db, 71, 80);
    let reference = MemoryTarget::new();
    backup(Arc::new(reference.clone()), &backup_options(&db))
        .await
        .unwrap();
    let expected = backup_contents(&reference).await;
    let mut points = 0;
    for k in 0.. {
        let t = MemoryTarget::new();
        let f = Arc::new(FaultyTarget::new(t.clone(), FaultPlan::CrashAt(k)));
        let outcome = backup(f.clone(), &backup_options(&db)).await;
        if outcome.is_err() {
            let err = try_restore(Arc::new(t.clone()), dir.path(), "strict", false, false)
                .await
                .expect_err("restore of a location without a completed run");
            assert_eq!(err.exit_code(), 8, "{err}");
            if let Ok(checked) = try_restore(
                Arc::new(t.clone()),
                dir.path(),
                &format!("a{k}"),
                true,
                false,
            )
            .await
            {
                assert!(
                    checked.is_ok(),
                    "crash at {k} ({:?}): --allow-incomplete restored an inconsistent database: {:?}",
                    f.log().get(k as usize),
                    checked.violations
                );
            }
            let _ = std::fs::remove_dir_all(dir.path().join("strict"));
            let _ = std::fs::remove_dir_all(dir.path().join(format!("a{k}")));
        }
        backup(Arc::new(t.clone()), &backup_options(&db))
            .await
            .unwrap_or_else(|e| panic!("rerun after a first-run crash at {k}: {e}"));
        assert!(
            backup_contents(&t).await == expected,
            "crash at {k}: rerun differs"
        );
        points += 1;
        if outcome.is_ok() {
            break;
        }
    }
    println!("first-backup crash sweep: {points} points");
}

// ---------------------------------------------------------------------------------------------
// Bug: a scavenged version of the chunk holding the stored chaser is written before the new
// checkpoints
// ---------------------------------------------------------------------------------------------

/// The previous backup's chaser lies in chunk S (then the active chunk). Since then S was
/// completed, chased and scavenged (`chunk-S.000001`). The differential stores the scavenged
/// version first (a "new immutable file") and dies before the new checkpoints. The restore then
/// has the old chaser inside a scavenged chunk: truncation deletes from the chunk's start,
/// dropping events the previous completed backup held, and the old indexmap is now ahead of the
/// chaser, so the server throws the index away and rebuilds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_storing_a_scavenged_chaser_chunk_loses_nothing_of_the_previous_backup() {
    let dir = tempfile::tempdir().unwrap();
    let (db, before) = sweep_dirs(&base_sweep(1), dir.path());
    let base = MemoryTarget::new();
    backup(Arc::new(base.clone()), &backup_options(&before))
        .await
        .unwrap();
    let prev = manifest_of(&base).checkpoints;
    let cs = manifest_of(&base).chunk_size.unwrap() as i64;
    let s = (prev.chaser / cs) as u32;
    let mut opts = backup_options(&db);
    opts.concurrency = 1;
    let log = dry_log(&base, &opts).await;
    let p = log
        .iter()
        .position(|l| {
            l.strip_prefix("put ")
                .and_then(chunk::ChunkName::parse)
                .is_some_and(|n| n.start == s && n.version > 0)
        })
        .expect("a new version of the chunk holding the stored chaser");
    let killed = Arc::new(FaultyTarget::new(
        base.clone(),
        FaultPlan::CrashAt(p as u64 + 1),
    ));
    assert!(backup(killed, &opts).await.is_err());
    let checked = try_restore(Arc::new(base), dir.path(), "restored", false, false)
        .await
        .unwrap();
    assert!(
        checked.chaser >= prev.chaser,
        "the restore ends the log at {} although the previous completed backup held it up to chaser {} ({} bytes of chased events lost)",
        checked.chaser,
        prev.chaser,
        prev.chaser - checked.chaser
    );
    assert!(checked.is_ok(), "{:?}", checked.violations);
}

// ---------------------------------------------------------------------------------------------
// Bug: a failed final manifest write is only logged; the run reports success
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_run_whose_final_manifest_was_not_stored_does_not_report_success() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut node = settled_node(&db, 81, 30);
    let (memt, t) = mem();
    backup(t.clone(), &backup_options(&db)).await.unwrap();
    node.append(200).unwrap();
    node.settle().unwrap();
    let mut opts = backup_options(&db);
    opts.concurrency = 1;
    let log = dry_log(&memt, &opts).await;
    let last = log
        .iter()
        .rposition(|l| l == "put .esbackup/manifest.json")
        .unwrap() as u64;
    let target = Arc::new(FailOne::new(memt.clone(), last));
    let result = backup(target, &opts).await;
    let state = manifest_of(&memt).state;
    assert!(
        result.is_err() || state == RunState::Completed,
        "backup returned Ok (exit 0, report.completed = {:?}) but the stored manifest says {state:?}; `verify` now fails with exit 5",
        result.as_ref().map(|r| r.completed).ok()
    );
    let v = verify(t, &VerifyOptions::default()).await.unwrap();
    assert_eq!(v.is_ok(), result.is_ok(), "{:?}", v.problems);
}

// ---------------------------------------------------------------------------------------------
// Restore into a used folder, external index
// ---------------------------------------------------------------------------------------------

/// `--force` into folders that hold another database with an external index: every stale
/// database file (chunks beyond the new writer, `.old` copies, PTables and bloom filters the new
/// indexmap does not name, stream-existence and scavenging folders) goes; foreign files stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_restore_with_an_external_index_replaces_every_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let (db, index) = (dir.path().join("db"), dir.path().join("idx"));
    let mut node = Node::create(
        &db,
        SimConfig {
            index_dir: Some(index.clone()),
            ..sim_config(91)
        },
    )
    .unwrap();
    node.append(900).unwrap();
    for _ in 0..60 {
        node.step().unwrap();
    }
    node.settle().unwrap();
    let (_, t) = mem();
    let mut opts = backup_options(&db);
    opts.index = Some(index.clone());
    backup(t.clone(), &opts).await.unwrap();

    // The destination: a bigger, different database with its own external index.
    let (rdb, ridx) = (dir.path().join("rdb"), dir.path().join("ridx"));
    let mut other = Node::create(
        &rdb,
        SimConfig {
            index_dir: Some(ridx.clone()),
            ..sim_config(92)
        },
    )
    .unwrap();
    other.append(3000).unwrap();
    other.settle().unwrap();
    drop(other);
    std::fs::write(rdb.join("chunk-000001.000000.old"), b"stale").unwrap();
    std::fs::write(rdb.join("operator-notes.txt"), b"keep").unwrap();
    std::fs::write(ridx.join("README"), b"keep").unwrap();
    let stale_tables: Vec<String> = std::fs::read_dir(&ridx)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| esbackup_engine::format::guid::is_guid_name(n))
        .collect();
    assert!(!stale_tables.is_empty());

    let mut ropts = RestoreOptions::new(&rdb);
    ropts.index = Some(ridx.clone());
    ropts.retry = fast_retry();
    let err = restore(t.clone(), &ropts).await.unwrap_err();
    assert_eq!(err.exit_code(), 9);
    ropts.force = true;
    restore(t.clone(), &ropts).await.unwrap();
    let checked = check(&rdb, &ridx, &check_opts(false));
    assert!(checked.is_ok(), "{:?}", checked.violations);
    for table in &stale_tables {
        assert!(!ridx.join(table).exists(), "stale table {table} left");
    }
    assert!(!rdb.join("chunk-000001.000000.old").exists());
    let mut src_chunks: Vec<String> = std::fs::read_dir(&db)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| chunk::ChunkName::parse(n).is_some())
        .collect();
    let mut got_chunks: Vec<String> = std::fs::read_dir(&rdb)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| chunk::ChunkName::parse(n).is_some())
        .collect();
    src_chunks.sort();
    got_chunks.sort();
    assert_eq!(got_chunks, src_chunks);
    assert_eq!(
        std::fs::read(rdb.join("operator-notes.txt")).unwrap(),
        b"keep"
    );
    assert_eq!(std::fs::read(ridx.join("README")).unwrap(), b"keep");
    assert_eq!(
        std::fs::read(ridx.join("indexmap")).unwrap(),
        std::fs::read(index.join("indexmap")).unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// A source whose writer.chk is beyond its last chunk
// ---------------------------------------------------------------------------------------------

/// `writer.chk` points into a chunk the folder does not have (a chunk file lost): the server
/// refuses such a database. esbackup stores it and reports success, although `verify` rejects
/// the result at once and the restore gives a database the server refuses.
#[tokio::test]
async fn a_source_whose_writer_is_beyond_its_last_chunk_is_not_reported_as_backed_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let node = settled_node(&db, 95, 20);
    let w = node.checkpoints().writer + node.chunk_size() as i64 + 100;
    drop(node);
    esbackup_engine::format::checkpoint::write(&db.join("writer.chk"), w).unwrap();
    let (_, t) = mem();
    let result = backup(t.clone(), &backup_options(&db)).await;
    if let Ok(report) = &result {
        let v = verify(t.clone(), &VerifyOptions::default()).await.unwrap();
        assert!(
            v.is_ok(),
            "backup completed (exit 0, {} files) but verify rejects it: {:?}",
            report.uploaded.files,
            v.problems
        );
    } else {
        assert_eq!(result.unwrap_err().exit_code(), 3);
    }
}

// ---------------------------------------------------------------------------------------------
// Bug: prune deletes a chunk before its `.old` copy; a crash in between resurrects the chunk
// ---------------------------------------------------------------------------------------------

/// Archive mode. A run dies after `chunk-0.000000 → .old` (chunk 0 then active). Chunk 0 is later
/// completed and archived away from the node. The next run prunes `chunk-000000.000000` and dies
/// before pruning its `.old`: the restore puts the stale active copy back as chunk 0, a
/// non-completed chunk below the writer that the server refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_old_copy_never_comes_back_as_a_chunk_the_source_no_longer_has() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let cfg = SimConfig {
        archive: true,
        ..sim_config(97)
    };
    let mut node = Node::create(&db, cfg).unwrap();
    node.append(20).unwrap();
    node.settle().unwrap();
    let (memt, t) = mem();
    let mut opts = backup_options(&db);
    opts.concurrency = 1;
    backup(t.clone(), &opts).await.unwrap();

    // Run A dies right after the `.old` copy of the active chunk 0.
    node.append(10).unwrap();
    node.settle().unwrap();
    let log = dry_log(&memt, &opts).await;
    let p = log
        .iter()
        .position(|l| l.starts_with("copy chunk-000000.000000 -> chunk-000000.000000.old"))
        .expect("the .old copy");
    let a = Arc::new(FaultyTarget::new(
        memt.clone(),
        FaultPlan::CrashAt(p as u64 + 1),
    ));
    assert!(backup(a, &opts).await.is_err());
    assert!(memt.snapshot().contains_key("chunk-000000.000000.old"));

    // Chunk 0 is completed and archived away.
    for i in 0..5000 {
        node.step().unwrap();
        if i % 100 == 99 {
            node.settle().unwrap();
        }
        if !db.join("chunk-000000.000000").exists() && !db.join("chunk-000000.000001").exists() {
            break;
        }
    }
    node.settle().unwrap();
    assert!(!db.join("chunk-000000.000000").exists(), "chunk 0 archived");

    // Run B dies between pruning the `.old` copy (first) and pruning chunk 0 itself.
    let log = dry_log(&memt, &opts).await;
    let del = log
        .iter()
        .position(|l| l == "delete chunk-000000.000000")
        .expect("chunk 0 pruned");
    let del_old = log
        .iter()
        .position(|l| l == "delete chunk-000000.000000.old")
        .expect(".old pruned");
    assert!(del_old < del, ".old copies are pruned before chunks");
    let b = Arc::new(FaultyTarget::new(
        memt.clone(),
        FaultPlan::CrashAt(del as u64),
    ));
    assert!(backup(b, &opts).await.is_err());

    let checked = try_restore(t, dir.path(), "restored", false, true)
        .await
        .unwrap();
    assert!(
        !dir.path()
            .join("restored")
            .join("chunk-000000.000000")
            .exists(),
        "the stale .old copy of archived chunk 0 was restored as chunk 0; checker: {:?}",
        checked.violations
    );
    assert!(checked.is_ok(), "{:?}", checked.violations);
}
