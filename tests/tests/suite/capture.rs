//! The source changing under the capture: chunks completed during or right after their copy,
//! an `indexmap` gone missing, a damaged index table on the source.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use esbackup_engine::testing::{Intercept, Op};
use esbackup_engine::{backup, ErrorKind, Target, Which};
use esbackup_tests::scenarios::sim_config;
use esbackup_tests::support::{
    assert_restores_to, backup_contents, backup_options, database_files, restore_and_check,
};
use esdb_sim::SimConfig;

use crate::common::{
    backed_up, complete_active_chunk, mem, one_active_chunk, one_active_chunk_with,
    seed_where_completion, settled, writer_chunk, Settled,
};

/// The node completes the active chunk while its bytes are uploaded (length kept or changed):
/// the point holds the bytes up to the captured writer and restores consistently; the next run
/// stores the completed chunk whole, and that point restores equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_completed_during_its_copy_restores_and_is_stored_whole_next_time() {
    // Small (10,000-byte) chunks keep their length when completed; 64 KiB ones shrink.
    let wide = |db: &std::path::Path, seed: u64| {
        let config = SimConfig {
            scavenge: false,
            ..sim_config(seed)
        };
        one_active_chunk_with(db, config)
    };
    for keeps_length in [true, false] {
        let build = |db: &std::path::Path, seed: u64| match keeps_length {
            true => one_active_chunk(db, seed),
            false => wide(db, seed),
        };
        let seed = seed_where_completion(keeps_length, build);
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let node = Arc::new(Mutex::new(build(&db, seed)));
        let (store, _) = mem();
        let n2 = node.clone();
        let fired = std::sync::atomic::AtomicBool::new(false);
        let hooked = Arc::new(Intercept::before(store.clone(), move |op| {
            if matches!(op, Op::Put(k, _) if k.starts_with(".esbackup/active/"))
                && !fired.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                complete_active_chunk(&mut n2.lock().unwrap());
            }
        }));
        let mut opts = backup_options(&db);
        opts.concurrency = Some(1);
        backup(hooked, &opts).await.unwrap();
        let target: Arc<dyn Target> = Arc::new(store.clone());
        let (_, checked) = restore_and_check(target.clone(), dir.path(), "r1").await;
        assert!(
            checked.is_ok(),
            "keeps_length={keeps_length}: {:?}",
            checked.violations
        );

        node.lock().unwrap().settle().unwrap();
        let key = format!(
            "chunk-{:06}.000000",
            writer_chunk(&node.lock().unwrap()) - 1
        );
        let report = backup(target.clone(), &backup_options(&db)).await.unwrap();
        assert!(
            report.stored_keys.contains(&key),
            "{key} stored whole: {:?}",
            report.stored_keys
        );
        let stored = backup_contents(target.as_ref()).await;
        assert!(crate::common::completed_footer(&stored[&key]).is_some());
        let now = database_files(&db);
        let what = "after completion";
        assert_restores_to(target, Which::Latest, dir.path(), "r2", &now, what).await;
    }
}

/// `indexmap` missing for longer than the wait (tables present): SourceChanging after about
/// the wait, and nothing of the backup changes.
#[tokio::test]
async fn an_indexmap_missing_longer_than_the_wait_stops_the_run() {
    let fx = backed_up(52, 30).await;
    let before = fx.mem.snapshot();
    std::fs::remove_file(fx.db.join("index").join("indexmap")).unwrap();
    let mut opts = backup_options(&fx.db);
    opts.indexmap_wait = Duration::from_millis(300);
    let started = Instant::now();
    let err = backup(fx.target.clone(), &opts).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourceChanging, "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(fx.mem.snapshot(), before);
}

/// A PTable named by `indexmap` that is corrupt on the source: the run names the table and says
/// the index is damaged (exit 3), and records nothing.
#[tokio::test]
async fn a_corrupt_table_on_the_source_is_named_in_the_error() {
    let Settled { dir: _dir, db, .. } = settled(53, 30);
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
    let (store, t) = mem();
    let err = backup(t, &backup_options(&db)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotADatabase, "{err}");
    assert!(err.to_string().contains(&table), "{err}");
    assert!(!store
        .snapshot()
        .keys()
        .any(|k| k.starts_with(".esbackup/points/")));
}
