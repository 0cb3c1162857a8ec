//! MD5 of several streams at once. One MD5 stream cannot go faster than a core hashes (each
//! 64-byte block needs the one before), but independent streams can share a core: `md5-many`
//! hashes 8 of them in the lanes of one AVX2 register, about 3.4 GB per CPU-second here against
//! 0.7 for one stream. A restore, a `verify --read-data` and a folder backup hash several files
//! at a time, so their bytes go to one hasher thread, which waits until several streams have
//! bytes waiting (or one's owner waits for it) and hashes them side by side, about as many bytes
//! of each.
//!
//! The thread belongs to an [`Md5Lanes`] pool, which the operation that hashes owns (one per
//! restore, verify or backup run): it starts with the pool's first stream and stops when the
//! pool and all its streams are dropped. A panic on it never takes the host process down: the
//! pool fails, and every stream of it returns that error (its operation fails, naming it).
//!
//! Inputs shorter than [`crate::hashing::SMALL`] never come here (see there).
//!
//! A stream hands over its bytes as [`Bytes`] (no copy) and may run [`CAP`] bytes ahead of the
//! hasher (or one update ahead, if that is larger); then [`LaneMd5::update`] blocks, so call it
//! from a blocking thread.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::{Buf, Bytes};
use md5_many::{Md5Many, Md5State};

/// Bytes a stream may have waiting (more only for a single larger update).
const CAP: usize = 4 << 20;
/// Most bytes taken from one stream per round (so that large pieces from several streams are
/// hashed side by side, not one after the other).
const ROUND: usize = 1 << 20;
/// Fewest bytes taken from one stream per round, when it has them.
const MIN_ROUND: usize = 64 << 10;
/// Lanes of the wide kernel (AVX2: 8 × 32 bits).
const LANES: usize = 8;

/// A pool of MD5 lanes: one hasher thread, started with the first stream, for the streams of
/// one operation. Clones share the pool.
#[derive(Clone)]
pub(crate) struct Md5Lanes {
    pool: Arc<Pool>,
}

struct Pool {
    hasher: Arc<Hasher>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Md5Lanes {
    pub fn new() -> Md5Lanes {
        Md5Lanes {
            pool: Arc::new(Pool {
                hasher: Arc::new(Hasher {
                    shared: Mutex::default(),
                    work: Condvar::new(),
                    hashed: Condvar::new(),
                }),
                thread: Mutex::new(None),
            }),
        }
    }

    /// A new stream of this pool; `None` when its thread cannot be started (then hash on the
    /// caller's thread).
    pub fn stream(&self) -> Option<LaneMd5> {
        if !self.pool.start() {
            return None;
        }
        let mut shared = self.pool.hasher.lock();
        let id = shared.next_id;
        shared.next_id += 1;
        shared.streams.insert(id, Stream::default());
        Some(LaneMd5 {
            id,
            pool: self.pool.clone(),
        })
    }

    /// Test hook: the hasher thread panics at its next round.
    #[cfg(test)]
    pub(crate) fn fail_next_round(&self) {
        self.pool.hasher.lock().fail_next_round = true;
    }
}

impl Pool {
    /// Starts the hasher thread if it is not running; false if it cannot be started.
    fn start(&self) -> bool {
        let mut thread = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if thread.is_some() {
            return true;
        }
        let hasher = self.hasher.clone();
        let spawned = std::thread::Builder::new()
            .name("esbackup-md5".into())
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| hasher.run());
                if let Err(panic) = std::panic::catch_unwind(run) {
                    hasher.fail(panic_message(panic.as_ref()));
                }
            });
        match spawned {
            Ok(handle) => *thread = Some(handle),
            Err(e) => tracing::warn!("cannot start the MD5 lane thread ({e}): hashing in place"),
        }
        thread.is_some()
    }
}

impl Drop for Pool {
    /// The last stream and the last handle are gone: the thread stops, and is waited for.
    fn drop(&mut self) {
        self.hasher.lock().closed = true;
        self.hasher.work.notify_all();
        let thread = self.thread.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(handle) = thread.take() {
            let _ = handle.join();
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// One stream's MD5, computed by its pool's hasher thread.
pub(crate) struct LaneMd5 {
    id: u64,
    pool: Arc<Pool>,
}

impl LaneMd5 {
    /// Adds `pieces`, in order, to the stream. Blocks until they fit in [`CAP`] with the bytes
    /// still waiting (or none are waiting): the hasher keeps them alive until then. Fails when
    /// the pool's thread has failed.
    pub fn update(&mut self, pieces: impl IntoIterator<Item = Bytes>) -> io::Result<()> {
        let pieces: Vec<Bytes> = pieces.into_iter().filter(|p| !p.is_empty()).collect();
        let len: usize = pieces.iter().map(Bytes::len).sum();
        let hasher = &self.pool.hasher;
        let mut shared = hasher.lock();
        let full = |s: &mut Shared| {
            let waiting = s.stream(self.id).waiting;
            s.failed.is_none() && waiting > 0 && waiting + len > CAP
        };
        if full(&mut shared) {
            shared.stream(self.id).blocked = true;
            hasher.work.notify_one();
            while full(&mut shared) {
                shared = hasher.wait(&hasher.hashed, shared);
            }
            shared.stream(self.id).blocked = false;
        }
        shared.check()?;
        let stream = shared.stream(self.id);
        stream.waiting += len;
        stream.queue.extend(pieces);
        hasher.work.notify_one();
        Ok(())
    }

    /// Waits until every byte is hashed; the running MD5 of them all.
    pub fn finish(self) -> io::Result<Md5State> {
        let hasher = &self.pool.hasher;
        let mut shared = hasher.lock();
        shared.stream(self.id).finishing = true;
        hasher.work.notify_one();
        while shared.failed.is_none() && shared.stream(self.id).waiting > 0 {
            shared = hasher.wait(&hasher.hashed, shared);
        }
        shared.check()?;
        Ok(shared.stream(self.id).state)
        // (dropping `self` removes the stream)
    }
}

impl Drop for LaneMd5 {
    fn drop(&mut self) {
        // A stream the hasher holds right now is dropped when its round ends.
        let hasher = &self.pool.hasher;
        hasher.lock().streams.remove(&self.id);
        // One stream fewer to wait for.
        hasher.work.notify_one();
    }
}

#[derive(Default)]
struct Stream {
    state: Md5State,
    queue: VecDeque<Bytes>,
    /// Bytes queued or being hashed.
    waiting: usize,
    /// The hasher has this stream's state (and some of its bytes) right now.
    busy: bool,
    /// Its owner waits for room.
    blocked: bool,
    /// Its owner waits for the digest: hash what is left without waiting for other streams.
    finishing: bool,
}

#[derive(Default)]
struct Shared {
    streams: HashMap<u64, Stream>,
    next_id: u64,
    /// Why the hasher thread stopped, if it failed: every stream of the pool fails with it.
    failed: Option<String>,
    /// The pool is dropped: the thread ends.
    closed: bool,
    #[cfg(test)]
    fail_next_round: bool,
}

impl Shared {
    fn check(&self) -> io::Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(why) => Err(io::Error::other(format!(
                "the MD5 hasher thread failed ({why}); nothing was lost, run again"
            ))),
        }
    }

    fn stream(&mut self, id: u64) -> &mut Stream {
        self.streams
            .get_mut(&id)
            .expect("a stream lives until dropped")
    }

    /// The streams to hash now, with about as many bytes of each (up to [`ROUND`]); none until
    /// every stream (up to [`LANES`] of them) has bytes waiting, or an owner waits for one.
    fn take_round(&mut self) -> Vec<Lane> {
        let idle = |s: &Stream| !s.busy && !s.queue.is_empty();
        let ready = self.streams.values().filter(|s| idle(s)).count();
        let urgent = self
            .streams
            .values()
            .any(|s| idle(s) && (s.finishing || s.blocked));
        if ready == 0 || (ready < self.streams.len().min(LANES) && !urgent) {
            return Vec::new();
        }
        let mut ids: Vec<u64> = self
            .streams
            .iter()
            .filter(|(_, s)| idle(s))
            .map(|(id, _)| *id)
            .collect();
        // Those whose owners wait first, then the fullest (the nearest to blocking theirs).
        ids.sort_by_key(|id| {
            let s = &self.streams[id];
            std::cmp::Reverse((s.finishing || s.blocked, s.waiting))
        });
        ids.truncate(LANES);
        let least = ids.iter().map(|id| self.streams[id].waiting).min();
        let even = least.unwrap_or(0).clamp(MIN_ROUND, ROUND);
        ids.into_iter()
            .map(|id| {
                let s = self.stream(id);
                s.busy = true;
                let mut pieces = VecDeque::new();
                let mut len = 0;
                while len < even {
                    let Some(mut p) = s.queue.pop_front() else {
                        break;
                    };
                    if p.len() > even - len {
                        s.queue.push_front(p.split_off(even - len));
                    }
                    len += p.len();
                    pieces.push_back(p);
                }
                Lane {
                    id,
                    state: s.state,
                    pieces,
                    len,
                }
            })
            .collect()
    }
}

/// One stream's share of a round.
struct Lane {
    id: u64,
    state: Md5State,
    pieces: VecDeque<Bytes>,
    len: usize,
}

impl Lane {
    /// Hashes single-stream until the state is at a block boundary and the next piece holds a
    /// whole block (or the lane is empty): then it can join a wide step.
    fn align(&mut self) {
        while let Some(front) = self.pieces.front_mut() {
            let partial = (self.state.bytes_hashed() % 64) as usize;
            let n = if partial != 0 {
                (64 - partial).min(front.len())
            } else if front.len() < 64 {
                front.len()
            } else {
                return;
            };
            self.state.update(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                self.pieces.pop_front();
            }
        }
    }

    /// Whole blocks at the head of the next piece.
    fn blocks(&self) -> usize {
        self.pieces.front().map_or(0, |p| p.len() & !63)
    }
}

/// Hashes every lane's pieces into its state: a wide step over the blocks all lanes have, while
/// two or more lanes have some; single-stream for the rest.
fn hash_round(engine: Md5Many, lanes: &mut [Lane]) {
    loop {
        lanes.iter_mut().for_each(Lane::align);
        let mut live: Vec<&mut Lane> = lanes.iter_mut().filter(|l| l.blocks() > 0).collect();
        if live.len() < 2 {
            for lane in live {
                while let Some(p) = lane.pieces.pop_front() {
                    lane.state.update(&p);
                }
            }
            return;
        }
        let step = live
            .iter()
            .map(|l| l.blocks())
            .min()
            .expect("two lanes or more");
        let mut states = [Md5State::new(); LANES];
        let mut inputs: [&[u8]; LANES] = [&[]; LANES];
        for (slot, lane) in live.iter().enumerate() {
            states[slot] = lane.state;
            inputs[slot] = &lane.pieces[0][..step];
        }
        // Lanes without a stream hash a copy of the first one's bytes, for nothing.
        for slot in live.len()..LANES {
            inputs[slot] = inputs[0];
        }
        engine.update_many(&mut states, &inputs);
        for (slot, lane) in live.iter_mut().enumerate() {
            lane.state = states[slot];
            lane.pieces[0].advance(step);
            if lane.pieces[0].is_empty() {
                lane.pieces.pop_front();
            }
        }
    }
}

struct Hasher {
    shared: Mutex<Shared>,
    /// Bytes were queued, or a stream is finishing.
    work: Condvar,
    /// A round ended.
    hashed: Condvar,
}

impl Hasher {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, cv: &Condvar, guard: MutexGuard<'a, Shared>) -> MutexGuard<'a, Shared> {
        cv.wait(guard).unwrap_or_else(|e| e.into_inner())
    }

    /// Records why the thread stopped and wakes every waiting stream (which then fails).
    fn fail(&self, why: String) {
        self.lock().failed = Some(why);
        self.hashed.notify_all();
    }

    fn run(&self) {
        let engine = Md5Many::new();
        let mut shared = self.lock();
        while !shared.closed {
            let mut lanes = shared.take_round();
            if lanes.is_empty() {
                shared = self.wait(&self.work, shared);
                continue;
            }
            #[cfg(test)]
            let fail = std::mem::take(&mut shared.fail_next_round);
            drop(shared);
            #[cfg(test)]
            if fail {
                panic!("injected failure of the MD5 lane thread");
            }
            hash_round(engine, &mut lanes);
            shared = self.lock();
            for lane in lanes {
                if let Some(s) = shared.streams.get_mut(&lane.id) {
                    s.state = lane.state;
                    s.busy = false;
                    s.waiting -= lane.len;
                }
            }
            self.hashed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Digest as _;

    fn data(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_add(seed).wrapping_mul(2654435761) >> 11) as u8)
            .collect()
    }

    /// Streams of any size, fed in pieces of any size from several threads at once (so that
    /// rounds mix aligned and unaligned lanes, wide steps and single ones), each get their own
    /// MD5; a stream dropped midway takes nothing with it.
    #[test]
    fn several_streams_at_once_each_get_their_own_md5() {
        let lanes = Md5Lanes::new();
        let sizes = [0usize, 1, 63, 64, 65, 1000, 70_000, 3 << 20, (9 << 20) + 7];
        let threads: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(n, &size)| {
                let mut lane = lanes.stream().unwrap();
                std::thread::spawn(move || {
                    let bytes = data(size, n as u32);
                    let piece_sizes = [1usize, 64, 100, 4096, 65_536, 333_333];
                    let mut at = 0;
                    for (i, s) in piece_sizes.iter().cycle().skip(n).enumerate() {
                        if at >= size {
                            break;
                        }
                        let end = (at + s).min(size);
                        let batch = [at..(at + end) / 2, (at + end) / 2..end];
                        lane.update(batch.map(|r| Bytes::copy_from_slice(&bytes[r])))
                            .unwrap();
                        at = end;
                        if i % 5 == 0 {
                            std::thread::yield_now();
                        }
                    }
                    let want: [u8; 16] = md5::Md5::digest(&bytes).into();
                    let got = lane.finish().unwrap().finalize();
                    assert_eq!(got, want, "stream {n}, {size} bytes");
                })
            })
            .collect();
        let mut dropped = lanes.stream().unwrap();
        dropped.update([Bytes::from(data(5 << 20, 99))]).unwrap();
        let id = dropped.id;
        drop(dropped);
        assert!(!lanes.pool.hasher.lock().streams.contains_key(&id));
        threads.into_iter().for_each(|t| t.join().unwrap());
    }

    /// A panic on the hasher thread is an error for every stream of its pool — the one waiting
    /// for its digest and the one waiting for room — and the process goes on.
    #[test]
    fn a_failing_lane_thread_is_an_error_for_its_streams_not_an_abort() {
        let lanes = Md5Lanes::new();
        lanes.fail_next_round();
        let mut finishing = lanes.stream().unwrap();
        finishing.update([Bytes::from(data(1 << 20, 1))]).unwrap();
        let mut blocked = lanes.stream().unwrap();
        let feeder = std::thread::spawn(move || {
            // More than CAP: the second update waits for room that never comes.
            (0..3).try_for_each(|n| blocked.update([Bytes::from(data(3 << 20, n))]))
        });
        let err = finishing.finish().unwrap_err();
        assert!(
            err.to_string().contains("MD5 hasher thread failed"),
            "{err}"
        );
        assert!(err.to_string().contains("injected failure"), "{err}");
        let err = feeder.join().unwrap().unwrap_err();
        assert!(
            err.to_string().contains("MD5 hasher thread failed"),
            "{err}"
        );
        // New streams of the failed pool fail at once; another pool hashes.
        let mut late = lanes.stream().unwrap();
        assert!(late.update([Bytes::from_static(b"x")]).is_err());
        let mut fresh = Md5Lanes::new().stream().unwrap();
        fresh.update([Bytes::from_static(b"abc")]).unwrap();
        let want: [u8; 16] = md5::Md5::digest(b"abc").into();
        assert_eq!(fresh.finish().unwrap().finalize(), want);
    }

    /// The hasher thread lives as long as its pool or one of its streams, and no longer.
    #[test]
    fn the_hasher_thread_stops_when_its_pool_and_streams_are_dropped() {
        let lanes = Md5Lanes::new();
        let hasher = Arc::downgrade(&lanes.pool.hasher);
        let mut stream = lanes.stream().unwrap();
        drop(lanes);
        stream.update([Bytes::from(data(100_000, 3))]).unwrap();
        let want: [u8; 16] = md5::Md5::digest(data(100_000, 3)).into();
        assert_eq!(stream.finish().unwrap().finalize(), want);
        // The thread held the hasher until it ended (joined when the pool was dropped).
        assert!(hasher.upgrade().is_none());
    }
}
