//! Helpers shared by the simulator's integration tests.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use esbackup_engine::format::checkpoint;
use esdb_sim::{Node, SimConfig};

/// A scratch directory, on tmpfs when there is one (the simulator fsyncs like the server).
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new().prefix("esdb-sim-").tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

pub fn cfg(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        ..SimConfig::default()
    }
}

/// Copies a directory tree (files keep their content; read-only bits are not copied).
pub fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for entry in fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            fs::write(&to, fs::read(entry.path()).unwrap()).unwrap();
        }
    }
}

/// The vendor's restore: copy everything, then `truncate.chk` := `chaser.chk`.
pub fn restore(db: &Path, into: &Path) -> (PathBuf, PathBuf) {
    let out = into.join("restored");
    copy_tree(db, &out);
    let chaser = checkpoint::read(&out.join("chaser.chk")).unwrap();
    checkpoint::write(&out.join("truncate.chk"), chaser).unwrap();
    let index = out.join("index");
    (out, index)
}

/// A new node of `config` at `dir/db`.
pub fn new_node(dir: &Path, config: SimConfig) -> Node {
    Node::create(&dir.join("db"), config).unwrap()
}

/// A stopped node's db after `events` appends and `steps` random steps, settled.
pub fn settled_node(dir: &Path, seed: u64, events: usize, steps: usize) -> Node {
    let mut node = new_node(dir, cfg(seed));
    node.append(events).unwrap();
    for _ in 0..steps {
        node.step().unwrap();
    }
    node.settle().unwrap();
    node
}

/// Names of the chunk files in `db`, sorted.
pub fn chunk_names(db: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(db)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("chunk-") && !n.ends_with(".tmp"))
        .collect();
    v.sort();
    v
}

/// Makes a file writable and flips one byte at `offset`.
pub fn flip_byte(path: &Path, offset: u64) {
    esdb_sim::chunk_writer::make_writable(path).unwrap();
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

/// `esdb-sim <args>`, which must succeed; the one JSON object it prints.
pub fn esdb_sim(args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_esdb-sim"))
        .args(args)
        .output()
        .expect("running esdb-sim");
    assert!(
        out.status.success(),
        "esdb-sim {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}
