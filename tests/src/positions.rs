//! Restore to a log position, a moment or a stream's deletion, then the server's start-up
//! truncation (the simulator's `Node::open`): the log is exactly the source's log up to the
//! boundary the restore chose, and a transaction is never cut.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use esbackup_engine::format::record::{decode, Payload, PrepareFlags};
use esbackup_engine::{restore, ErrorKind, RestoreOptions, RestoreReport, Target, Upto};
use esdb_sim::log::{read_log, LoggedRecord};
use esdb_sim::Node;
use rand::{Rng, SeedableRng};

use crate::scenarios::{backup_recording, mutate, settled, sim_config, Locations, Settled};

/// The log of the database at each point, by point id.
pub type Logs = BTreeMap<String, Vec<LoggedRecord>>;

/// Restores `target` up to `upto` into `dest`, opens it as the server would, and returns the
/// report and the log the node then has.
pub async fn restore_upto(
    target: &Arc<dyn Target>,
    upto: Upto,
    dest: &Path,
) -> Result<(RestoreReport, Vec<LoggedRecord>), esbackup_engine::EngineError> {
    let mut opts = RestoreOptions::new(dest);
    opts.upto = Some(upto);
    let report = restore(target.clone(), &opts).await?;
    let boundary = report.cut.as_ref().expect("a cut").boundary;
    // The index restored is below the boundary (the node re-indexes from there), or absent
    // (it rebuilds); never at or beyond it (the node would copy it aside and rebuild).
    if let Ok(bytes) = std::fs::read(dest.join("index/indexmap")) {
        let map = esbackup_engine::format::indexmap::IndexMap::parse(&bytes).unwrap();
        assert!(
            map.commit_checkpoint < boundary,
            "index at {} restored for boundary {boundary}",
            map.commit_checkpoint
        );
    }
    Node::open(dest, sim_config(0)).unwrap_or_else(|e| {
        panic!(
            "the node does not start after the restore to {:?}: {e}",
            report.cut
        )
    });
    Ok((report, read_log(dest).unwrap()))
}

/// Asserts that `log` is `source` up to `boundary`, and that no transaction is cut there.
pub fn assert_prefix(log: &[LoggedRecord], source: &[LoggedRecord], boundary: i64, what: &str) {
    let want: Vec<&LoggedRecord> = source
        .iter()
        .filter(|r| r.next_position <= boundary)
        .collect();
    // After the truncation the node writes a new epoch (a System record) at the boundary.
    let (log, added): (Vec<&LoggedRecord>, Vec<&LoggedRecord>) =
        log.iter().partition(|r| r.position < boundary);
    assert!(
        added.iter().all(|r| r.kind == 2),
        "{what}: only an epoch after the boundary: {added:?}"
    );
    assert_eq!(log.len(), want.len(), "{what}: records up to {boundary}");
    for (got, want) in log.iter().zip(want) {
        assert!(
            *got == want,
            "{what}: the record at {} differs",
            want.position
        );
    }
    let mut open = BTreeSet::new();
    for r in &log {
        match decode(&r.payload) {
            Ok(Payload::Prepare(p))
                if p.flags.has(PrepareFlags::TRANSACTION_BEGIN)
                    && !p.flags.has(PrepareFlags::IS_COMMITTED) =>
            {
                open.insert(p.transaction_position);
            }
            Ok(Payload::Commit(c)) => {
                open.remove(&c.transaction_position);
            }
            _ => {}
        }
    }
    assert!(
        open.is_empty(),
        "{what}: transactions {open:?} begun but not committed before {boundary}"
    );
}

/// `runs` points of a node that keeps changing (appends, completed chunks, scavenges, merges),
/// and the log at each.
pub async fn history(
    loc: &dyn Locations,
    seed: u64,
    runs: usize,
) -> (Settled, Arc<dyn Target>, Logs) {
    let mut s = settled(seed, 40);
    let target = loc.fresh();
    let mut logs = Logs::new();
    for run in 0..runs {
        mutate(&mut s.node, run + 1);
        let (id, _) = backup_recording(&target, &s.db).await;
        logs.insert(id, read_log(&s.db).unwrap());
    }
    (s, target, logs)
}

/// `tries` random positions over a history of 12 points: each restores exactly the log of its
/// point up to a boundary at or before the position, or is refused (a scavenged chunk) as bad
/// usage. Returns (restored, refused).
pub async fn random_positions_restore_the_log_prefix(
    loc: &dyn Locations,
    tries: usize,
) -> (usize, usize) {
    let (s, target, logs) = history(loc, 91, 12).await;
    let newest = logs.values().last().unwrap();
    let end = newest.last().unwrap().next_position;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut restored, mut refused) = (0, 0);
    for i in 0..tries {
        let asked = rng.gen_range(0..=end);
        let dest = s.dir.path().join(format!("position-{i}"));
        match restore_upto(&target, Upto::Position(asked), &dest).await {
            Ok((report, log)) => {
                let cut = report.cut.expect("a cut");
                assert!(cut.boundary <= asked, "{cut:?}");
                let what = format!(
                    "{} position {asked} (point {}, boundary {})",
                    loc.name(),
                    report.point,
                    cut.boundary
                );
                assert_prefix(&log, &logs[&report.point], cut.boundary, &what);
                // The boundary is the last one: no later complete record fits before the position
                // unless a transaction was open there.
                restored += 1;
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::InvalidInput, "position {asked}: {e}");
                assert!(e.to_string().contains("scavenged"), "position {asked}: {e}");
                refused += 1;
            }
        }
        std::fs::remove_dir_all(&dest).ok();
    }
    // The edges: the start of the log, chunk boundaries, the newest point's end.
    let chunk = sim_config(0).chunk_size as i64;
    for asked in [0, chunk, 2 * chunk, end] {
        let dest = s.dir.path().join(format!("edge-{asked}"));
        match restore_upto(&target, Upto::Position(asked), &dest).await {
            Ok((report, log)) => {
                let cut = report.cut.expect("a cut");
                assert!(cut.boundary <= asked, "{cut:?}");
                let what = format!("{} edge {asked}", loc.name());
                assert_prefix(&log, &logs[&report.point], cut.boundary, &what);
                if asked == end {
                    assert_eq!(cut.boundary, end, "the whole log of the newest point");
                }
            }
            Err(e) => assert!(e.to_string().contains("scavenged"), "edge {asked}: {e}"),
        }
    }
    let beyond = restore_upto(
        &target,
        Upto::Position(end + 1),
        &s.dir.path().join("beyond"),
    )
    .await;
    let e = beyond.expect_err("a position beyond the newest point is refused");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.to_string().contains(&end.to_string()),
        "names the end of the log: {e}"
    );
    (restored, refused)
}
