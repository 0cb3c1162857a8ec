//! The lock that keeps two runs off one backup location.
//!
//! Each run writes its own object `.esbackup/locks/<run-id>.json` (create-if-absent where the
//! store supports it) and then lists the folder: if any other live lock is there, it removes its
//! own and gives up. This stays correct on stores that ignore conditional writes (Garage), since
//! it needs only read-after-write consistent listing; when two runs race, both back off.
//!
//! When two runs write theirs at the same moment, both see the other, step back and try again
//! after a random pause, so one of them soon gets through; a lock object seen on two attempts
//! in a row is held, not contended.
//!
//! A lock is taken over when it is dead: written in this machine's process space (same boot,
//! same PID namespace) by a process that is gone, or by a run of this process that has ended;
//! or its heartbeat is older than the stale timeout (other hosts, other containers); or the
//! operator says `--break-lock`.
//!
//! A run that finds the lock held waits for it up to [`LockOptions::wait`] (cron jobs overlap:
//! a `forget` waits for the backup that is running, and the reverse), polling the lock folder
//! with growing pauses, then says who holds it.
//!
//! # What each command reads under the lock
//!
//! `backup` and `forget` (and a backup's retention step) exclude each other, and a second of
//! either. Everything they decide on is read after the lock is held: `backup` lists the points,
//! reads the newest one (or stores an esbackup 0.1 state as a point first), numbers its point
//! after the newest, aborts what killed runs left (incomplete uploads, staging files) and
//! probes the root; `forget` lists and reads every point, then lists every object. Before
//! each deletion phase `forget` confirms that it still holds the lock and lists the points
//! again: a point it did not read (a run whose lock it took over) stops the prune. It never
//! deletes an object the store says was written after its lock object. The read-only commands
//! (`list`, `status`, `verify`, `restore`) take no lock; what they read is immutable once
//! named by a point, and a point forgotten meanwhile is reported as such, not as damage.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use backon::BackoffBuilder;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, ErrorKind, Result};
use crate::layout;
use crate::retry::equal_jitter;
use crate::target::{get_bytes, Target, TargetErrorKind, Upload};

/// What a lock object says of its holder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LockInfo {
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    pub command: String,
    pub started: DateTime<Utc>,
    pub heartbeat: DateTime<Utc>,
    /// Boot id and PID namespace of the holder: only within the same one can its PID be checked.
    #[serde(default)]
    pub scope: String,
    /// A random id of the holder's process (PIDs repeat across containers and restarts).
    #[serde(default)]
    pub instance: String,
}

#[derive(Clone, Debug)]
pub struct LockOptions {
    /// A lock from another host whose heartbeat is older than this is stale.
    pub stale_after: Duration,
    pub heartbeat_every: Duration,
    /// Take over any lock.
    pub break_lock: bool,
    /// How long to wait for a live holder to finish before giving up (zero: give up at once).
    pub wait: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            stale_after: Duration::from_secs(15 * 60),
            heartbeat_every: Duration::from_secs(60),
            break_lock: false,
            wait: Duration::ZERO,
        }
    }
}

/// The longest pause between two looks at a held lock (they grow from 250-500 ms).
const MAX_WAIT_PAUSE: Duration = Duration::from_secs(5);

/// The random pauses of a run that stepped back from a contended lock: 400-800 ms, then
/// doubling, one per attempt after the first.
fn contention_pauses() -> impl Iterator<Item = Duration> {
    equal_jitter(Duration::from_millis(800), Duration::from_secs(60))
        .with_max_times(CONTENDED_ATTEMPTS as usize - 1)
        .build()
}

/// A held lock; call [`Lock::release`] when done (dropping it stops the heartbeat only).
pub struct Lock {
    target: Arc<dyn Target>,
    key: String,
    run_id: String,
    heartbeat: tokio::task::JoinHandle<()>,
    /// How long the run waited for another run's lock.
    waited: Duration,
}

fn active_runs() -> &'static Mutex<HashSet<String>> {
    static RUNS: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    RUNS.get_or_init(Default::default)
}

/// This machine's host name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Where PIDs mean the same process as ours: boot id and PID namespace (empty off Linux).
fn process_scope() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if boot.trim().is_empty() || ns.is_empty() {
        return String::new();
    }
    format!("{}/{ns}", boot.trim())
}

/// A random id for this process, fixed for its lifetime.
fn instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().to_string())
}

/// Attempts when another run writes its lock at the same moment as ours.
const CONTENDED_ATTEMPTS: u32 = 6;

/// Each attempt writes a new object: one that another run judged dead and is deleting must
/// never be the one a live attempt relies on.
fn lock_key(run_id: &str, attempt: u32) -> String {
    format!("{}{run_id}.{attempt}.json", layout::LOCKS_DIR)
}

/// Why a lock held by someone else may be taken over, or `None` when it is live.
fn dead_reason(info: &LockInfo, opts: &LockOptions, now: DateTime<Utc>) -> Option<String> {
    if opts.break_lock {
        return Some("--break-lock".into());
    }
    let scope = process_scope();
    if !scope.is_empty() && info.scope == scope && info.host == host_name() {
        if info.instance == instance_id() {
            return (!active_runs().lock().unwrap().contains(&info.run_id))
                .then(|| "its run in this process has ended".into());
        }
        if info.pid == std::process::id() || !process_alive(info.pid) {
            return Some(format!("its process {} is gone", info.pid));
        }
        return None;
    }
    let age = now.signed_duration_since(info.heartbeat);
    (age.to_std().unwrap_or_default() > opts.stale_after)
        .then(|| format!("its heartbeat is {}s old", age.num_seconds()))
}

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists() || !cfg!(target_os = "linux")
}

/// Lists the lock objects of other runs.
async fn others(target: &dyn Target, own: &str) -> Result<Vec<(String, Option<LockInfo>)>> {
    let mut out = Vec::new();
    let listed = target
        .list(layout::LOCKS_DIR)
        .await
        .map_err(|e| EngineError::storage(layout::LOCKS_DIR, e))?;
    for obj in listed {
        if obj.key == own {
            continue;
        }
        let info = match get_bytes(target, &obj.key).await {
            Ok(b) => serde_json::from_slice(&b).ok(),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(EngineError::storage(&obj.key, e)),
        };
        out.push((obj.key, info));
    }
    Ok(out)
}

impl Lock {
    /// Takes the lock for `command` (backup, forget), or says who holds it.
    ///
    /// Writes this run's own lock object, then lists the others: dead ones are removed; with a
    /// live one present this run steps back (removes its own) and tries again after a random
    /// pause, a few times; then it waits for the holder up to `opts.wait`, looking again with
    /// growing pauses, before it reports the holder.
    pub async fn acquire(
        target: Arc<dyn Target>,
        run_id: &str,
        command: &str,
        opts: &LockOptions,
    ) -> Result<Lock> {
        let started = std::time::Instant::now();
        let mut attempt = 1;
        let mut told: Option<String> = None;
        let mut last_rival: Option<(String, DateTime<Utc>)> = None;
        let mut contention = contention_pauses();
        loop {
            let own = lock_key(run_id, attempt);
            let now = Utc::now();
            let info = LockInfo {
                run_id: run_id.into(),
                host: host_name(),
                pid: std::process::id(),
                command: command.into(),
                started: now,
                heartbeat: now,
                scope: process_scope(),
                instance: instance_id().into(),
            };
            active_runs().lock().unwrap().insert(run_id.into());
            match write_and_check(target.as_ref(), &own, &info, opts).await {
                Ok(None) => {
                    let heartbeat = tokio::spawn(heartbeat(
                        target.clone(),
                        own.clone(),
                        info,
                        opts.heartbeat_every,
                    ));
                    return Ok(Lock {
                        target,
                        key: own,
                        run_id: run_id.into(),
                        heartbeat,
                        waited: started.elapsed(),
                    });
                }
                outcome => {
                    active_runs().lock().unwrap().remove(run_id);
                    let rival = outcome?.expect("a rival when not acquired");
                    attempt += 1;
                    // A rival that wrote its lock at the same moment retries with a new one; a
                    // lock seen twice is held.
                    let seen = (rival.run_id.clone(), rival.started);
                    let holding = last_rival.as_ref() == Some(&seen);
                    last_rival = Some(seen);
                    if attempt <= CONTENDED_ATTEMPTS && !holding {
                        // Both sides may have stepped back: try again after a random pause.
                        if let Some(pause) = contention.next() {
                            tokio::time::sleep(pause).await;
                            continue;
                        }
                    }
                    let waited = started.elapsed();
                    if waited >= opts.wait {
                        return Err(held(&rival, target.as_ref(), waited));
                    }
                    if told.as_deref() != Some(rival.run_id.as_str()) {
                        tracing::warn!(
                            "{} is locked by {}: waiting up to {}s for it to finish",
                            target.describe(),
                            holder(&rival),
                            (opts.wait - waited).as_secs()
                        );
                        told = Some(rival.run_id.clone());
                    }
                    let left = opts.wait - waited;
                    wait_until_free(target.as_ref(), run_id, opts, left).await?;
                }
            }
        }
    }

    /// How long this run waited for another run before it got the lock.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// When the store wrote this run's lock object, by the store's clock (if it says): an
    /// object the store dates after it was written after this run took the lock.
    pub async fn stored_at(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(self
            .target
            .list(layout::LOCKS_DIR)
            .await
            .map_err(|e| EngineError::storage(layout::LOCKS_DIR, e))?
            .into_iter()
            .find(|o| o.key == self.key)
            .and_then(|o| o.modified))
    }

    /// Fails when this run's lock object is gone: another run took the lock over (stale
    /// timeout or `--break-lock`), and this run must write nothing more.
    /// The key of this run's lock object.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub async fn confirm_held(&self) -> Result<()> {
        let held = self
            .target
            .list(layout::LOCKS_DIR)
            .await
            .map_err(|e| EngineError::storage(layout::LOCKS_DIR, e))?
            .iter()
            .any(|o| o.key == self.key);
        if held {
            return Ok(());
        }
        Err(EngineError::new(
            ErrorKind::LockHeld,
            format!(
                "this run's lock {} was removed by another run (stale timeout or --break-lock) while it ran: it stopped without writing a restore point; run it again",
                self.key
            ),
        ))
    }

    /// Removes the lock object.
    pub async fn release(self) -> Result<()> {
        self.heartbeat.abort();
        active_runs().lock().unwrap().remove(&self.run_id);
        self.target
            .delete(&self.key)
            .await
            .map_err(|e| EngineError::storage(&self.key, e))?;
        Ok(())
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.heartbeat.abort();
        active_runs().lock().unwrap().remove(&self.run_id);
    }
}

async fn heartbeat(target: Arc<dyn Target>, key: String, mut info: LockInfo, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        // Gone means another run took it over (stale timeout, --break-lock): never re-create
        // it; the run notices before it completes.
        if target.head(&key).await.is_err_and(|e| e.is_not_found()) {
            tracing::error!("the lock {key} was removed by another run");
            return;
        }
        info.heartbeat = Utc::now();
        let body = Bytes::from(serde_json::to_vec_pretty(&info).expect("lock serialises"));
        if let Err(e) = target.put(&key, Upload::bytes(body)).await {
            tracing::warn!("could not refresh the lock {key}: {e}");
        }
    }
}

/// Writes our lock object, then lists the others: removes dead ones; `Some(rival)` (ours
/// removed again) when a live one is there.
async fn write_and_check(
    target: &dyn Target,
    own: &str,
    info: &LockInfo,
    opts: &LockOptions,
) -> Result<Option<LockInfo>> {
    let body = Bytes::from(serde_json::to_vec_pretty(info).expect("lock serialises"));
    let storage = |e| EngineError::storage(own, e);
    match target.put_if_absent(own, body.clone()).await {
        Ok(()) => {}
        Err(e) if e.kind() == TargetErrorKind::Unsupported => {
            target
                .put(own, Upload::bytes(body))
                .await
                .map_err(storage)?;
        }
        Err(e) => return Err(storage(e)),
    }
    let rival = match live_rival(target, own, opts).await {
        Ok(r) => r,
        Err(e) => {
            let _ = target.delete(own).await;
            return Err(e);
        }
    };
    if rival.is_some() {
        target.delete(own).await.map_err(storage)?;
    }
    Ok(rival)
}

/// Removes the dead lock objects of other runs and returns a live one, if any.
async fn live_rival(
    target: &dyn Target,
    own: &str,
    opts: &LockOptions,
) -> Result<Option<LockInfo>> {
    let now = Utc::now();
    for (key, info) in others(target, own).await? {
        let Some(info) = info else {
            return Err(EngineError::new(
                ErrorKind::LockHeld,
                format!(
                    "{} holds an unreadable lock object {key}: remove it or run with --break-lock",
                    target.describe()
                ),
            ));
        };
        match dead_reason(&info, opts, now) {
            Some(why) => {
                tracing::warn!(
                    "taking over the lock of run {} on {} ({why})",
                    info.run_id,
                    info.host
                );
                target
                    .delete(&key)
                    .await
                    .map_err(|e| EngineError::storage(&key, e))?;
            }
            None => return Ok(Some(info)),
        }
    }
    Ok(None)
}

/// Looks at the lock folder with growing, jittered pauses (listing only) until no live lock of
/// another run is there, or `left` has passed; dead locks found meanwhile are removed.
async fn wait_until_free(
    target: &dyn Target,
    run_id: &str,
    opts: &LockOptions,
    left: Duration,
) -> Result<()> {
    let until = std::time::Instant::now() + left;
    let mut pauses = equal_jitter(Duration::from_millis(500), MAX_WAIT_PAUSE).build();
    loop {
        let now = std::time::Instant::now();
        if now >= until {
            return Ok(());
        }
        let pause = pauses.next().unwrap_or(MAX_WAIT_PAUSE);
        tokio::time::sleep(pause.min(until - now)).await;
        if live_rival(target, &lock_key(run_id, 0), opts)
            .await?
            .is_none()
        {
            return Ok(());
        }
    }
}

/// `backup run X (host h pid 1, started …)`.
fn holder(info: &LockInfo) -> String {
    format!(
        "{} run {} (host {} pid {}, started {})",
        info.command,
        info.run_id,
        info.host,
        info.pid,
        info.started.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

fn held(info: &LockInfo, target: &dyn Target, waited: Duration) -> EngineError {
    let waited = match waited.as_secs() {
        0 => String::new(),
        s => format!(" (waited {s}s; --lock-wait sets how long)"),
    };
    EngineError::new(
        ErrorKind::LockHeld,
        format!(
            "{} is locked by {}{waited}: wait for it, or if it is dead run again with --break-lock",
            target.describe(),
            holder(info),
        ),
    )
}

/// A lock object as `status` shows it: who holds it, and whether it looks dead.
#[derive(Clone, Debug, Serialize)]
pub struct LockState {
    #[serde(flatten)]
    pub info: LockInfo,
    /// Why the lock would be taken over by the next run (its process is gone, its heartbeat is
    /// stale), or `None` while its run looks alive.
    pub dead: Option<String>,
}

/// Every lock object at the location, for `status`, `verify` and `restore`.
pub async fn list_locks(target: &dyn Target) -> Result<Vec<LockState>> {
    let now = Utc::now();
    let opts = LockOptions::default();
    Ok(others(target, "")
        .await?
        .into_iter()
        .filter_map(|(_, i)| i)
        .map(|info| LockState {
            dead: dead_reason(&info, &opts, now),
            info,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryTarget;

    #[tokio::test]
    async fn second_run_is_refused_then_admitted_after_release() {
        let t: Arc<dyn Target> = Arc::new(MemoryTarget::new());
        let opts = LockOptions::default();
        let a = Lock::acquire(t.clone(), "run-a", "backup", &opts)
            .await
            .unwrap();
        let err = Lock::acquire(t.clone(), "run-b", "backup", &opts)
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::LockHeld);
        assert!(err.to_string().contains("run-a"), "{err}");
        a.release().await.unwrap();
        Lock::acquire(t.clone(), "run-b", "backup", &opts)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn lock_of_an_ended_run_or_dead_host_is_taken_over() {
        let mem = MemoryTarget::new();
        let t: Arc<dyn Target> = Arc::new(mem.clone());
        let opts = LockOptions::default();
        // A run of this process that ended without releasing (as after a crash).
        drop(
            Lock::acquire(t.clone(), "ended-a", "backup", &opts)
                .await
                .unwrap(),
        );
        let b = Lock::acquire(t.clone(), "ended-b", "backup", &opts)
            .await
            .unwrap();
        b.release().await.unwrap();

        // Another host, stale heartbeat.
        let old = Utc::now() - chrono::Duration::hours(2);
        let foreign = LockInfo {
            run_id: "run-x".into(),
            host: "elsewhere".into(),
            pid: 1,
            command: "backup".into(),
            started: old,
            heartbeat: old,
            scope: "another-machine".into(),
            instance: "another-process".into(),
        };
        mem.insert(&lock_key("run-x", 1), serde_json::to_vec(&foreign).unwrap());
        let c = Lock::acquire(t.clone(), "ended-c", "backup", &opts)
            .await
            .unwrap();
        c.release().await.unwrap();

        // Another host, fresh heartbeat: held unless broken.
        let fresh = LockInfo {
            heartbeat: Utc::now(),
            ..foreign
        };
        mem.insert(&lock_key("run-x", 1), serde_json::to_vec(&fresh).unwrap());
        assert!(Lock::acquire(t.clone(), "ended-d", "backup", &opts)
            .await
            .is_err());
        let breaking = LockOptions {
            break_lock: true,
            ..opts
        };
        Lock::acquire(t.clone(), "ended-d", "backup", &breaking)
            .await
            .unwrap();
    }
}
