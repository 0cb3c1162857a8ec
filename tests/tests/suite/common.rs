//! Helpers of the test modules: memory targets, nodes brought to a chosen state.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use esbackup_engine::format::chunk::{self, ChunkFooter, ChunkInfo};
use esbackup_engine::testing::MemoryTarget;
use esbackup_engine::{backup, Target};
use esbackup_tests::scenarios::sim_config;
pub use esbackup_tests::scenarios::{settled, Settled};
use esbackup_tests::support::backup_options;
use esdb_sim::{Node, SimConfig};

pub fn mem() -> (MemoryTarget, Arc<dyn Target>) {
    let m = MemoryTarget::new();
    (m.clone(), Arc::new(m))
}

/// A settled node in a temporary folder, backed up once into a memory target.
pub struct BackedUp {
    /// Holds the folder: it is removed when this is dropped.
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub mem: MemoryTarget,
    pub target: Arc<dyn Target>,
}

/// [`settled`] from `seed` after `steps`, and one backup of it.
pub async fn backed_up(seed: u64, steps: usize) -> BackedUp {
    let Settled { dir, db, .. } = settled(seed, steps);
    let (mem, target) = mem();
    backup(target.clone(), &backup_options(&db)).await.unwrap();
    BackedUp {
        dir,
        db,
        mem,
        target,
    }
}

pub fn chunk_key(n: u32) -> String {
    format!("chunk-{n:06}.000000")
}

/// Number of the chunk holding `writer.chk`.
pub fn writer_chunk(node: &Node) -> u32 {
    (node.checkpoints().writer / node.chunk_size() as i64) as u32
}

/// Appends one event at a time until the current writer chunk is completed (footer written,
/// truncated). Returns its key and whether its completed file kept the preallocated length.
pub fn complete_active_chunk(node: &mut Node) -> (String, bool) {
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

/// The chunk size the server's own tests use (10,000 → 12,288-byte files): a naturally full
/// chunk keeps its preallocated length when it is completed.
pub fn small_chunks(seed: u64) -> SimConfig {
    SimConfig {
        chunk_size: 10_000,
        scavenge: false,
        ..sim_config(seed)
    }
}

/// A node of [`small_chunks`] with one active chunk holding some records.
pub fn one_active_chunk(db: &Path, seed: u64) -> Node {
    one_active_chunk_with(db, small_chunks(seed))
}

/// A node of `config` with one active chunk holding some records.
pub fn one_active_chunk_with(db: &Path, config: SimConfig) -> Node {
    let mut node = Node::create(db, config).unwrap();
    node.append(60).unwrap();
    node.settle().unwrap();
    node
}

/// The first seed for which `build` + completing the active chunk keeps the file's length
/// (`same`) or shortens it (`!same`).
pub fn seed_where_completion(same: bool, build: impl Fn(&Path, u64) -> Node) -> u64 {
    for seed in 0..200 {
        let dir = tempfile::tempdir().unwrap();
        let mut node = build(&dir.path().join("db"), seed);
        if complete_active_chunk(&mut node).1 == same {
            return seed;
        }
    }
    panic!("no seed where a completed chunk keeps its length = {same}");
}

pub fn completed_footer(bytes: &[u8]) -> Option<ChunkFooter> {
    let tail: &[u8; 128] = bytes
        .get(bytes.len().checked_sub(128)?..)?
        .try_into()
        .ok()?;
    let f = ChunkFooter::decode(tail);
    f.is_completed().then_some(f)
}
