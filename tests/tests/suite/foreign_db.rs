//! A database folder built byte by byte from docs/FORMAT.md, not by the project's simulator: an old
//! (v5-era) layout with legacy chunk headers, a merged scavenged chunk with an 8-byte posmap,
//! no proposal.chk, a version-1 indexmap with CRLF line ends, a leftover unreferenced table,
//! temp files and a socket. It must back up, restore byte-identical and verify.

use std::path::Path;
use std::sync::Arc;

use esbackup_engine::testing::MemoryTarget;
use esbackup_engine::Target;
use esbackup_engine::{backup, restore, verify, RestoreOptions, VerifyOptions};
use esbackup_tests::support::backup_options;
use md5::{Digest, Md5};

const CHUNK_SIZE: i32 = 10_000;

/// A legacy header: MinCompatibleVersion 3 at offset 1, zeros from offset 34.
fn header(start: i32, end: i32, scavenged: bool) -> Vec<u8> {
    let mut h = vec![0u8; 128];
    h[0] = 2;
    h[1] = 3;
    h[2..6].copy_from_slice(&CHUNK_SIZE.to_le_bytes());
    h[6..10].copy_from_slice(&start.to_le_bytes());
    h[10..14].copy_from_slice(&end.to_le_bytes());
    h[14..18].copy_from_slice(&(scavenged as i32).to_le_bytes());
    h[18..34].copy_from_slice(&[start as u8 + 1; 16]);
    h
}

/// One framed record (len | payload | len) of `n` payload bytes.
fn record(n: usize, fill: u8) -> Vec<u8> {
    let mut r = (n as i32).to_le_bytes().to_vec();
    r.extend(std::iter::repeat_n(fill, n));
    r.extend((n as i32).to_le_bytes());
    r
}

/// Completes a chunk: posmap, zero padding to 4 KiB, footer (flags, sizes), MD5 of all before.
fn complete(mut file: Vec<u8>, data_len: usize, posmap: &[u8], flags: u8) -> Vec<u8> {
    file.extend_from_slice(posmap);
    let total = (file.len() + 128).div_ceil(4096) * 4096;
    file.resize(total - 128, 0);
    let mut footer = [0u8; 128];
    footer[0] = flags;
    footer[1..5].copy_from_slice(&(data_len as i32).to_le_bytes());
    // Old layout (bit 1 clear): i32 logical size at 5, i32 map size at 9.
    footer[5..9].copy_from_slice(&(data_len as i32 + 500).to_le_bytes());
    footer[9..13].copy_from_slice(&(posmap.len() as i32).to_le_bytes());
    file.extend_from_slice(&footer[..112]);
    let md5 = Md5::digest(&file);
    file.extend_from_slice(&md5);
    file
}

fn build(db: &Path) {
    let index = db.join("index");
    std::fs::create_dir_all(&index).unwrap();
    // Chunk 0: plain, completed.
    let mut c0 = header(0, 0, false);
    let mut data = Vec::new();
    for i in 0..20 {
        data.extend(record(300, i));
    }
    c0.extend(&data);
    std::fs::write(
        db.join("chunk-000000.000000"),
        complete(c0, data.len(), &[], 0x01),
    )
    .unwrap();
    // Chunks 1–2 merged by a scavenge into chunk-000001.000002, 8-byte posmap entries.
    let mut c1 = header(1, 2, true);
    let kept = record(800, 9);
    c1.extend(&kept);
    let posmap = (40u64 << 32).to_le_bytes(); // LogPos 40 in the high half, ActualPos 0
    std::fs::write(
        db.join("chunk-000001.000002"),
        complete(c1, kept.len(), &posmap, 0x01),
    )
    .unwrap();
    // Chunk 3: active, preallocated, no footer.
    let mut c3 = header(3, 3, false);
    c3.extend(record(100, 7));
    c3.resize(((128 + CHUNK_SIZE as usize + 128).div_ceil(4096)) * 4096, 0);
    std::fs::write(db.join("chunk-000003.000000"), c3).unwrap();
    let writer = 3 * CHUNK_SIZE as i64 + 108;
    for (name, value) in [
        ("writer.chk", writer),
        ("chaser.chk", writer),
        ("epoch.chk", -1),
        ("truncate.chk", -1),
    ] {
        std::fs::write(db.join(name), value.to_le_bytes()).unwrap();
    }
    // An empty V4 PTable (N = 0, M = 0): header, footer, MD5.
    let mut table = vec![0u8; 128];
    table[0] = 1;
    table[1] = 4;
    let mut footer = [0u8; 128];
    footer[0] = 1;
    footer[1] = 4;
    table.extend(footer);
    let md5 = Md5::digest(&table);
    table.extend_from_slice(&md5);
    let guid = "0d8b5c6e-2f1e-4e0f-9a57-6b1d7f0c9e21";
    std::fs::write(index.join(guid), &table).unwrap();
    std::fs::write(
        index.join("5a1a8395-94ee-40c1-bf93-aa757b5887f8"),
        b"stale half table",
    )
    .unwrap();
    // indexmap version 1 (no maxAutoMergeLevel line), Windows line ends.
    let body = format!("\r\n1\r\n5000/5000\r\n0,0,{guid}\r\n");
    let mut map = hex_upper(&Md5::digest(body.as_bytes())).into_bytes();
    map.extend_from_slice(body.as_bytes());
    std::fs::write(index.join("indexmap"), map).unwrap();
    std::fs::write(
        index.join("indexmap.11111111-2222-3333-4444-555555555555.indexmap.tmp"),
        b"x",
    )
    .unwrap();
    std::fs::write(db.join("write-attempt-abc.tmp"), b"").unwrap();
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[tokio::test]
async fn a_hand_built_old_style_database_backs_up_restores_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    build(&db);
    let _socket = std::os::unix::net::UnixListener::bind(db.join("eventstore.sock")).unwrap();
    let mem = MemoryTarget::new();
    let target: Arc<dyn Target> = Arc::new(mem.clone());
    let report = backup(target.clone(), &backup_options(&db)).await.unwrap();
    assert!(report.point.is_some());
    assert_eq!(
        report.stored_keys,
        vec![
            "chaser.chk",
            "chunk-000000.000000",
            "chunk-000001.000002",
            "chunk-000003.000000",
            "epoch.chk",
            "index/0d8b5c6e-2f1e-4e0f-9a57-6b1d7f0c9e21",
            "index/indexmap",
            "writer.chk",
        ]
    );
    let deep = VerifyOptions {
        read_data: true,
        ..VerifyOptions::default()
    };
    let verified = verify(target.clone(), &deep).await.unwrap();
    assert!(verified.is_ok(), "{:?}", verified.problems());

    let restored = dir.path().join("restored");
    restore(target, &RestoreOptions::new(&restored))
        .await
        .unwrap();
    for name in report.stored_keys {
        assert_eq!(
            std::fs::read(restored.join(&name)).unwrap(),
            std::fs::read(db.join(&name)).unwrap(),
            "{name}"
        );
    }
    assert_eq!(
        std::fs::read(restored.join("truncate.chk")).unwrap(),
        std::fs::read(restored.join("chaser.chk")).unwrap()
    );
}
