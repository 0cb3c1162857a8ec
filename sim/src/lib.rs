//! esdb-sim: a faithful simulator of a live EventStoreDB / KurrentDB node's files, and a checker
//! of restored databases (see `docs/FORMAT.md`).
//!
//! * [`Node`] writes real chunk, checkpoint, index and side files and mutates them one
//!   [`Node::step`] at a time, exposing the intermediate states a live node shows to a
//!   file-copying backup; [`run_live`] steps it on a thread; [`Node::hard_delete`],
//!   [`Node::soft_delete`] and [`Node::set_metadata`] delete and truncate streams.
//! * [`Node::controlled_scavenge`] makes scavenges run only when asked, chunk by chunk, stopped
//!   between chunks and resumed from the next one ([`ScavengeControl`]); [`admin_api`] serves
//!   the node's admin HTTP API over it (HTTPS with a test CA, basic auth, switchable faults).
//! * [`check`] models the server's open-time rules (truncation, chunk enumeration, MD5s,
//!   indexmap and PTables) on a restored database without modifying it.
//! * [`Payload`] chooses what events carry: a repeating alphabet (the default), realistic JSON
//!   or random bytes.

pub mod admin_api;
pub mod bloom;
mod checker;
pub mod chunk_writer;
mod controlled_scavenge;
mod deletes;
pub mod hash;
mod index;
pub mod layout;
mod live;
pub mod log;
mod node;
mod open;
pub mod payload;
pub mod ptable_writer;
pub mod records;
mod scavenge;
mod side_files;
mod steps;
pub mod truncation;
mod writer;

use std::path::PathBuf;

pub use checker::{check, CheckOptions, CheckReport};
pub use controlled_scavenge::{
    AutoScavenge, Refused, ScavengeControl, ScavengeState, ScavengeStatus,
};
pub use deletes::Written;
pub use live::{run_live, LiveHandle};
pub use log::{read_log, LoggedRecord};
pub use node::{Checkpoints, Node};
pub use payload::Payload;

/// How a simulated node behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Logical chunk size (the server's `ChunkSize`); 64 KiB by default.
    pub chunk_size: u32,
    /// Seed of every random choice (steps, GUIDs, data).
    pub seed: u64,
    /// Index directory; `<db>/index` when `None`.
    pub index_dir: Option<PathBuf>,
    /// Memtable entries per flush to a PTable (small, so PTables appear quickly).
    pub memtable_entries: usize,
    /// Allow scavenges, merges and raw-replicated scavenged chunks in random steps.
    pub scavenge: bool,
    /// Keep `index/stream-existence/streamExistenceFilter.{dat,chk}`.
    pub stream_existence: bool,
    /// Keep `index/scavenging/scavenging.db` (with `-wal`/`-shm` while a scavenge runs).
    pub scavenging_db: bool,
    /// Keep `<db>/kurrent.ddb` and `kurrent.ddb.wal`, mutated in place.
    pub secondary_index: bool,
    /// Archive mode: the oldest local chunks get removed (the db may start at chunk N > 0);
    /// merging is disabled, as on the server.
    pub archive: bool,
    /// Write old-style chunk headers (version 3 at offset 1, zeros from offset 34).
    pub legacy_v3_headers: bool,
    /// What appended events carry; [`Payload::Letters`] by default.
    pub payload: Payload,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            chunk_size: 64 * 1024,
            seed: 0,
            index_dir: None,
            memtable_entries: 50,
            scavenge: true,
            stream_existence: true,
            scavenging_db: true,
            secondary_index: true,
            archive: false,
            legacy_v3_headers: false,
            payload: Payload::Letters,
        }
    }
}
