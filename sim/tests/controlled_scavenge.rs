//! The scavenge that runs only when asked (the node admin API's): chunk by chunk as the node
//! steps, stopped between chunks, resumed from the next chunk, and the files stay correct.

mod common;

use esdb_sim::{check, CheckOptions, Node, ScavengeControl, ScavengeStatus, SimConfig};

use common::*;

/// A node with about a dozen completed chunks, in controlled-scavenge mode.
fn node_with_chunks(dir: &std::path::Path) -> (Node, ScavengeControl) {
    let cfg = SimConfig {
        chunk_size: 4096,
        ..cfg(7)
    };
    let mut node = Node::create(&dir.join("db"), cfg).unwrap();
    let control = node.controlled_scavenge();
    node.append(120).unwrap();
    node.settle().unwrap();
    (node, control)
}

/// Steps the node until `done` holds (at most `limit` steps).
fn step_until(
    node: &mut Node,
    control: &ScavengeControl,
    limit: usize,
    done: impl Fn(&ScavengeControl) -> bool,
) {
    for _ in 0..limit {
        if done(control) {
            return;
        }
        node.step().unwrap();
    }
    panic!("not reached in {limit} steps: {:?}", control.state());
}

fn assert_checks(node: &mut Node) {
    node.settle().unwrap();
    let report = check(node.db_dir(), node.index_dir(), &CheckOptions::default());
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
}

#[test]
fn no_scavenge_runs_until_one_is_started() {
    let dir = scratch();
    let (mut node, control) = node_with_chunks(dir.path());
    let before = chunk_names(node.db_dir());
    for _ in 0..300 {
        node.step().unwrap();
    }
    let state = control.state();
    assert_eq!(state.status, ScavengeStatus::Idle);
    assert_eq!(state.chunks_done, 0);
    let scavenged = chunk_names(node.db_dir())
        .into_iter()
        .filter(|n| !n.ends_with(".000000") && !before.contains(n))
        .count();
    assert_eq!(scavenged, 0, "no chunk got a new version");
    assert_checks(&mut node);
}

#[test]
fn a_started_scavenge_replaces_every_passed_chunk_and_completes() {
    let dir = scratch();
    let (mut node, control) = node_with_chunks(dir.path());
    control.start().unwrap();
    step_until(&mut node, &control, 20_000, |c| {
        c.state().status == ScavengeStatus::Completed
    });
    let state = control.state();
    assert!(state.chunks_total >= 5, "{state:?}");
    assert_eq!(state.chunks_done, state.chunks_total);
    assert_checks(&mut node);
    let versioned = chunk_names(node.db_dir())
        .iter()
        .filter(|n| !n.ends_with(".000000"))
        .count();
    assert!(
        versioned >= state.chunks_total,
        "every chunk got a new version"
    );
}

#[test]
fn a_stopped_scavenge_makes_no_progress_and_a_new_one_resumes_from_the_next_chunk() {
    let dir = scratch();
    let (mut node, control) = node_with_chunks(dir.path());
    control.limit_chunks(Some(2));
    let first = control.start().unwrap();
    step_until(&mut node, &control, 20_000, |c| c.state().chunks_done == 2);
    assert_eq!(control.request_stop("current").unwrap(), first);
    assert_eq!(control.state().status, ScavengeStatus::Stopping);
    step_until(&mut node, &control, 100, |c| {
        c.state().status == ScavengeStatus::Stopped
    });
    control.limit_chunks(None);
    for _ in 0..2_000 {
        node.step().unwrap();
    }
    let stopped = control.state();
    assert_eq!(
        (stopped.status, stopped.chunks_done),
        (ScavengeStatus::Stopped, 2)
    );
    assert!(
        control.request_stop(&first).is_err(),
        "nothing runs to stop"
    );

    let second = control.start().unwrap();
    assert_ne!(first, second);
    step_until(&mut node, &control, 20_000, |c| {
        c.state().status == ScavengeStatus::Completed
    });
    let done = control.state();
    assert_eq!(
        done.chunks_total, stopped.chunks_total,
        "the same scavenge point"
    );
    assert_eq!(done.chunks_done, done.chunks_total);
    assert_eq!((done.starts, done.stops), (2, 1));
    assert_checks(&mut node);
}

#[test]
fn starting_while_one_runs_is_refused_with_its_id() {
    let dir = scratch();
    let (_node, control) = node_with_chunks(dir.path());
    let id = control.start().unwrap();
    assert_eq!(control.start(), Err(esdb_sim::Refused::AlreadyRunning(id)));
}

#[test]
fn pausing_auto_scavenge_mid_cycle_answers_still_stopping_until_its_scavenge_stopped() {
    use esdb_sim::AutoScavenge;
    let dir = scratch();
    let (mut node, control) = node_with_chunks(dir.path());
    control.configure_auto_scavenge();
    control.limit_chunks(Some(1));
    control.begin_auto_cycle().unwrap();
    step_until(&mut node, &control, 20_000, |c| c.state().chunks_done == 1);
    assert!(!control.pause_auto_scavenge(), "202 while stopping");
    assert_eq!(control.auto_scavenge(), AutoScavenge::Pausing);
    assert!(
        control.resume_auto_scavenge().is_err(),
        "no resume while pausing"
    );
    step_until(&mut node, &control, 100, |c| {
        c.auto_scavenge() != AutoScavenge::Pausing
    });
    assert!(control.pause_auto_scavenge(), "200 once paused");
    assert_eq!(control.state().status, ScavengeStatus::Stopped);
    control.limit_chunks(None);
    control.resume_auto_scavenge().unwrap();
    step_until(&mut node, &control, 20_000, |c| {
        c.auto_scavenge() == AutoScavenge::Waiting
    });
    let state = control.state();
    assert_eq!(state.status, ScavengeStatus::Completed);
    assert_eq!(state.chunks_done, state.chunks_total);
    assert_checks(&mut node);
}
