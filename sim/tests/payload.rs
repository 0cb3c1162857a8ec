//! What appended events carry (`SimConfig::payload`): the default letters keep their bytes.

mod common;

use md5::{Digest, Md5};

use esdb_sim::{read_log, SimConfig};

use common::*;

/// The MD5 of every record of the log, positions included.
fn log_digest(db: &std::path::Path) -> String {
    let mut h = Md5::new();
    for r in read_log(db).unwrap() {
        h.update(r.position.to_le_bytes());
        h.update(&r.payload);
    }
    format!("{:x}", h.finalize())
}

#[test]
fn letters_is_the_default_and_keeps_the_bytes_of_every_seed() {
    let dir = scratch();
    let node = settled_node(dir.path(), 7, 300, 300);
    assert_eq!(
        log_digest(node.db_dir()),
        "817235b26903a3ebcf4e6c36a7fd9a66"
    );
    // Small chunks bound the letters by the chunk size.
    let small = scratch();
    let mut node = new_node(
        small.path(),
        SimConfig {
            chunk_size: 4096,
            ..cfg(11)
        },
    );
    node.append(150).unwrap();
    node.settle().unwrap();
    assert_eq!(
        log_digest(node.db_dir()),
        "e53483d12eef31b7e3e602b7f7ea11e8"
    );
}
