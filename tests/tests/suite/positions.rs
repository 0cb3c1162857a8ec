//! Restore to a log position (issue 20): random positions over a changing history, and the
//! accident — a stream deleted by mistake — undone with `--before-stream-delete`.

use esbackup_engine::log::{records, LogFilter};
use esbackup_engine::{backup, Upto, Which};
use esbackup_tests::positions::{
    assert_prefix, random_positions_restore_the_log_prefix, restore_upto,
};
use esbackup_tests::support::backup_options;
use esdb_sim::log::read_log;

use crate::common::{mem, settled};

struct Memory;

impl esbackup_tests::scenarios::Locations for Memory {
    fn name(&self) -> String {
        "memory".into()
    }
    fn fresh(&self) -> std::sync::Arc<dyn esbackup_engine::Target> {
        mem().1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_positions_restore_exactly_the_log_up_to_their_boundary() {
    let (restored, refused) = random_positions_restore_the_log_prefix(&Memory, 40).await;
    println!("restore --position (memory): {restored} restored exactly, {refused} refused (scavenged chunk)");
    assert!(restored >= 20, "{restored} of 40 restored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_deleted_stream_comes_back_with_before_stream_delete() {
    let mut s = settled(93, 40);
    let (_, target) = mem();
    backup(target.clone(), &backup_options(&s.db))
        .await
        .unwrap();
    s.node.append(30).unwrap();
    let stream = "account-3".to_string();
    let before = read_log(&s.db).unwrap();
    let events = |log: &[esdb_sim::log::LoggedRecord]| {
        log.iter()
            .filter(|r| matches!(esbackup_engine::format::record::decode(&r.payload), Ok(esbackup_engine::format::record::Payload::Prepare(p)) if p.stream == stream))
            .count()
    };
    assert!(events(&before) > 0, "the stream has events");
    let deleted = s.node.hard_delete(&stream).unwrap();
    s.node.append(20).unwrap();
    backup(target.clone(), &backup_options(&s.db))
        .await
        .unwrap();
    // `esbackup log --deletes` finds it.
    let filter = LogFilter {
        deletes: true,
        ..LogFilter::default()
    };
    let mut listing = records(target.clone(), &Which::Latest, filter)
        .await
        .unwrap();
    let mut found = Vec::new();
    while let Some(rec) = listing.next().await {
        found.push(rec.unwrap());
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (
            found[0].position,
            found[0].deletion.as_ref().map(|d| d.stream.clone())
        ),
        (deleted.position, Some(stream.clone()))
    );
    // Restored to just before it: every event of the stream is there, the tombstone is not.
    let dest = s.dir.path().join("undone");
    let (report, log) = restore_upto(&target, Upto::BeforeStreamDelete(stream.clone()), &dest)
        .await
        .unwrap();
    let cut = report.cut.unwrap();
    assert_eq!(cut.boundary, deleted.position, "{cut:?}");
    assert_prefix(&log, &before, cut.boundary, "before the delete");
    assert_eq!(
        events(&log),
        events(&before),
        "every event of {stream} is back"
    );
    assert!(
        log.iter()
            .all(|r| r.position < deleted.position || r.kind == 2),
        "the tombstone is not"
    );
    // The same by time: up to the last record written before the deletion's own time.
    let when = esbackup_engine::format::record::ticks_to_time(deleted.ticks).unwrap();
    let dest = s.dir.path().join("before-time");
    let (report, log) = restore_upto(&target, Upto::Before(when), &dest)
        .await
        .unwrap();
    let cut = report.cut.unwrap();
    assert!(cut.boundary <= deleted.position, "{cut:?}");
    assert_prefix(&log, &before, cut.boundary, "before the deletion's time");
    assert_eq!(
        events(&log),
        events(&before),
        "every event of {stream} is back (by time)"
    );
}

/// `list` tells each point's first and last record times: those of the log the point holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_tells_each_points_first_and_last_record_time() {
    use esbackup_engine::format::record::{decode, ticks_to_time};
    let (_s, target, logs) = esbackup_tests::positions::history(&Memory, 95, 6).await;
    let listing = esbackup_engine::list(target).await.unwrap();
    let time = |r: &esdb_sim::log::LoggedRecord| ticks_to_time(decode(&r.payload).unwrap().ticks());
    for p in listing.points() {
        let log = &logs[&p.id];
        let (first, last) = (time(log.first().unwrap()), time(log.last().unwrap()));
        assert_eq!(
            (p.first_record_time, p.last_record_time),
            (first, last),
            "point {}",
            p.id
        );
    }
}
