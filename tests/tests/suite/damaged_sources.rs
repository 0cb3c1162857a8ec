//! A damaged or changing source is never backed up as good: a damaged chunk, index map or
//! symlink, a refused source or one without chunks, a chunk vanishing during the copy — the
//! run stops (or writes nothing) and the last good point stays restorable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use esbackup_engine::testing::{Intercept, MemoryTarget, Op};
use esbackup_engine::{backup, verify, ErrorKind, Target, VerifyOptions, Which};
use esbackup_tests::support::{
    assert_restores_to, backup_options, copy_dir, database_files, points,
};

use crate::common::{backed_up, mem, settled, Settled};

#[tokio::test]
async fn a_damaged_completed_chunk_stops_the_run_and_the_last_good_copy_stays() {
    let Settled { dir, db, .. } = settled(12, 30);
    let good = dir.path().join("good");
    copy_dir(&db, &good);
    let good_files = database_files(&good);
    for (case, damage) in [("flipped", 0usize), ("truncated", 1)] {
        let work = dir.path().join(case);
        copy_dir(&good, &work);
        let (mem, target) = mem();
        backup(target.clone(), &backup_options(&work))
            .await
            .unwrap();
        let before = mem.snapshot();
        let chunk = work.join("chunk-000000.000000");
        let mut perm = std::fs::metadata(&chunk).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(&chunk, perm).unwrap();
        let mut bytes = std::fs::read(&chunk).unwrap();
        if damage == 0 {
            bytes[300] ^= 0x01;
        } else {
            bytes.truncate(bytes.len() - 4096);
        }
        std::fs::write(&chunk, bytes).unwrap();
        // Make the run store the chunk again (as a first run into a fresh location would).
        let (fresh_mem, fresh) = self::mem();
        let err = backup(fresh, &backup_options(&work)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotADatabase, "{case}: {err}");
        assert!(
            err.to_string().contains("chunk-000000.000000"),
            "{case}: {err}"
        );
        assert!(err.to_string().contains("damaged"), "{case}: {err}");
        assert!(
            !fresh_mem
                .snapshot()
                .keys()
                .any(|k| k.starts_with(".esbackup/points/")),
            "{case}: no point recorded"
        );
        let mut full = backup_options(&work);
        full.full = true;
        let err = backup(target.clone(), &full).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotADatabase, "{case}: {err}");
        let after = mem.snapshot();
        for (k, v) in &before {
            if !k.starts_with(".esbackup/locks/") {
                assert_eq!(after.get(k), Some(v), "{case}: {k} changed");
            }
        }
        let name = format!("r-{case}");
        assert_restores_to(target, Which::Latest, dir.path(), &name, &good_files, case).await;
    }
}

#[tokio::test]
async fn a_damaged_indexmap_is_a_damaged_index_not_a_merging_node() {
    let Settled { dir: _dir, db, .. } = settled(14, 30);
    let map_path = db.join("index").join("indexmap");
    let good = std::fs::read(&map_path).unwrap();
    let mut bad_md5 = good.clone();
    bad_md5[0] = if bad_md5[0] == b'0' { b'1' } else { b'0' };
    std::fs::write(&map_path, &bad_md5).unwrap();
    let started = std::time::Instant::now();
    let err = backup(mem().1, &backup_options(&db)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotADatabase, "{err}");
    assert!(err.to_string().contains("MD5"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A map naming a table that is not there.
    let map = esbackup_engine::format::indexmap::IndexMap::parse(&good).unwrap();
    let mut missing = map.clone();
    missing.tables[0].file = "0d8b5c6e-2f1e-4e0f-9a57-6b1d7f0c9e21".into();
    std::fs::write(&map_path, missing.encode()).unwrap();
    let err = backup(mem().1, &backup_options(&db)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotADatabase, "{err}");
    assert!(
        err.to_string()
            .contains("0d8b5c6e-2f1e-4e0f-9a57-6b1d7f0c9e21"),
        "{err}"
    );
}

#[tokio::test]
async fn a_dangling_symlink_named_like_a_chunk_is_damage_not_a_scavenge() {
    let Settled { dir, db, .. } = settled(15, 30);
    std::os::unix::fs::symlink(dir.path().join("gone"), db.join("chunk-000099.000000")).unwrap();
    let err = backup(mem().1, &backup_options(&db)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotADatabase, "{err}");
    assert!(err.to_string().contains("symlink"), "{err}");
}

#[tokio::test]
async fn a_refused_source_writes_nothing_to_the_location() {
    let fx = backed_up(16, 30).await;
    let before = fx.mem.snapshot();
    for (name, bytes) in [
        ("writer.chk", vec![1u8, 2, 3]),
        ("writer.chk", i64::MAX.to_le_bytes().to_vec()),
        ("chaser.chk", (1i64 << 40).to_le_bytes().to_vec()),
    ] {
        let file = fx.db.join(name);
        let saved = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes).unwrap();
        let err = backup(fx.target.clone(), &backup_options(&fx.db))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotADatabase, "{name}: {err}");
        std::fs::write(&file, saved).unwrap();
        assert_eq!(
            fx.mem.snapshot(),
            before,
            "{name}: the location is unchanged"
        );
        let v = verify(fx.target.clone(), &VerifyOptions::default())
            .await
            .unwrap();
        assert!(v.is_ok());
    }
}

#[tokio::test]
async fn a_source_without_chunks_never_changes_the_backup() {
    let fx = backed_up(5, 20).await;
    let before = fx.mem.snapshot();
    // An unmounted volume: the checkpoints are there, the chunks are not.
    for chunk in chunk_files(&fx.db) {
        std::fs::remove_file(chunk).unwrap();
    }
    let err = backup(fx.target, &backup_options(&fx.db))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotADatabase, "{err}");
    assert_eq!(fx.mem.snapshot(), before, "the backup is untouched");
}

#[tokio::test]
async fn a_chunk_vanishing_mid_backup_aborts_with_advice_and_the_earlier_point_restores() {
    let Settled { dir, db, mut node } = settled(13, 10);
    let store = MemoryTarget::new();
    backup(Arc::new(store.clone()), &backup_options(&db))
        .await
        .unwrap();
    let first = database_files(&db);
    node.append(800).unwrap();
    node.settle().unwrap();
    let chunks = chunk_files(&db);
    // The first chunk upload deletes another chunk file, as a scavenge would.
    let victim = chunks[chunks.len() - 2].clone();
    let fired = AtomicBool::new(false);
    let target = Arc::new(Intercept::before(store.clone(), move |op| {
        if matches!(op, Op::Put(k, _) if k.starts_with("chunk-"))
            && !fired.swap(true, Ordering::SeqCst)
        {
            let _ = std::fs::remove_file(&victim);
        }
    }));
    let mut opts = backup_options(&db);
    opts.concurrency = Some(1);
    let err = backup(target, &opts).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourceChanging, "{err}");
    assert!(err.to_string().contains("scavenge"), "{err}");
    let store: Arc<dyn Target> = Arc::new(store);
    assert_eq!(points(&store).await.len(), 1, "no point for the failed run");
    let what = "the earlier point";
    assert_restores_to(store, Which::Latest, dir.path(), "restored", &first, what).await;
}

/// The chunk files of a database folder, by name.
fn chunk_files(db: &Path) -> Vec<PathBuf> {
    let mut chunks: Vec<PathBuf> = std::fs::read_dir(db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("chunk-")
        })
        .collect();
    chunks.sort();
    chunks
}
