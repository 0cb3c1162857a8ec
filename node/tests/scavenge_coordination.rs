//! `with_scavenge_paused` against the simulated node's admin API over TLS: a scavenge started
//! through the API is stopped for the work, makes no progress during it, is started again
//! after (also when the work fails) and finishes; auto-scavenge is paused and resumed.

mod common;

use esbackup_node::{
    with_scavenge_paused, AutoScavengeState, Restarted, StartOutcome, Unreachable,
};
use esdb_sim::{AutoScavenge, ScavengeStatus};

use common::*;

/// Starts a scavenge through the API and waits until it has done `chunks` chunks and is held
/// there (still running, like a throttled scavenge).
/// A live node whose scavenge, started through the API, is held after its first chunk; and a
/// client.
async fn node_scavenging() -> (SimNode, esbackup_node::NodeClient) {
    let node = start_node();
    scavenge_held(&node, 1).await;
    let client = node.client();
    (node, client)
}

async fn scavenge_held(node: &SimNode, chunks: usize) -> String {
    node.control.limit_chunks(Some(chunks));
    let StartOutcome::Started(id) = node.client().start_scavenge().await.unwrap() else {
        panic!("the scavenge did not start");
    };
    wait_for("the first chunks", || {
        node.control.state().chunks_done == chunks
    })
    .await;
    assert_eq!(node.control.state().status, ScavengeStatus::Running);
    id
}

/// Inside the work: the scavenge is stopped, and stays so while the node steps with nothing
/// holding it back. Returns the chunks done at the start and at the end of the work.
async fn work_while_stopped(node: &SimNode) -> (usize, usize) {
    let before = node.control.state();
    assert_eq!(before.status, ScavengeStatus::Stopped);
    node.control.limit_chunks(None);
    let_node_step(&node.control, 400).await;
    let after = node.control.state();
    assert_eq!(after.status, ScavengeStatus::Stopped);
    (before.chunks_done, after.chunks_done)
}

async fn wait_until_completed(node: &SimNode) {
    wait_for("the scavenge to complete", || {
        node.control.state().status == ScavengeStatus::Completed
    })
    .await;
    let state = node.control.state();
    assert_eq!(state.chunks_done, state.chunks_total);
    assert!(state.chunks_total >= 5, "{state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_scavenge_is_stopped_for_the_work_then_resumes_and_finishes() {
    let node = start_node();
    let client = node.client();
    let id = scavenge_held(&node, 2).await;
    assert_eq!(client.current_scavenge().await.unwrap(), Some(id.clone()));

    let (progress, report) = with_scavenge_paused(&client, &policy(Unreachable::Fail), || {
        work_while_stopped(&node)
    })
    .await
    .unwrap();

    assert_eq!(progress, (2, 2), "no chunk was scavenged during the work");
    assert_eq!(report.found.as_deref(), Some(id.as_str()));
    assert_eq!(report.stopped.as_deref(), Some(id.as_str()));
    let Some(Restarted::Started(new_id)) = report.restarted.clone() else {
        panic!("not restarted: {report}");
    };
    assert_ne!(new_id, id);
    assert!(
        !report.left_stopped() && report.errors.is_empty(),
        "{report:?}"
    );
    assert!(report.to_string().contains("started it again"), "{report}");
    wait_until_completed(&node).await;
    let state = node.control.state();
    assert_eq!(
        (state.starts, state.stops),
        (2, 1),
        "resumed, not started afresh"
    );
    node.stop_and_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scavenge_is_started_again_when_the_work_fails() {
    let (node, client) = node_scavenging().await;

    let (result, report) = with_scavenge_paused(&client, &policy(Unreachable::Fail), || async {
        work_while_stopped(&node).await;
        Err::<(), _>("the capture failed")
    })
    .await
    .unwrap();

    assert_eq!(result, Err("the capture failed"));
    assert!(
        matches!(report.restarted, Some(Restarted::Started(_))),
        "{report}"
    );
    assert!(!report.left_stopped());
    wait_until_completed(&node).await;
    node.stop_and_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scavenge_is_started_again_when_the_work_panics() {
    let (node, client) = node_scavenging().await;
    let policy = policy(Unreachable::Fail);
    let work = with_scavenge_paused(&client, &policy, || async {
        work_while_stopped(&node).await;
        panic!("the capture panicked");
    });
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(work)).await;
    assert!(outcome.is_err(), "the panic goes on to the caller");
    assert_eq!(node.control.state().status, ScavengeStatus::Running);
    wait_until_completed(&node).await;
    node.stop_and_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_scavenge_running_nothing_is_stopped_or_started() {
    let node = start_node();
    let client = node.client();
    let (_, report) = with_scavenge_paused(&client, &policy(Unreachable::Fail), || async {})
        .await
        .unwrap();
    assert!(report.reached && report.found.is_none() && report.restarted.is_none());
    assert_eq!(report.auto_found, Some(AutoScavengeState::NotConfigured));
    assert!(!report.auto_paused);
    assert_eq!(node.control.state().starts, 0);
    node.stop_and_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_scavenge_mid_cycle_is_paused_for_the_work_and_resumed_after() {
    let node = start_node();
    let client = node.client();
    node.control.configure_auto_scavenge();
    node.control.limit_chunks(Some(1));
    node.control.begin_auto_cycle().unwrap();
    wait_for("the cycle's first chunk", || {
        node.control.state().chunks_done == 1
    })
    .await;

    let (progress, report) = with_scavenge_paused(&client, &policy(Unreachable::Fail), || async {
        assert!(matches!(
            node.control.auto_scavenge(),
            AutoScavenge::Paused { .. }
        ));
        work_while_stopped(&node).await
    })
    .await
    .unwrap();

    assert_eq!(progress, (1, 1));
    assert_eq!(report.auto_found, Some(AutoScavengeState::InProgress));
    assert!(report.auto_paused && report.auto_resumed, "{report:?}");
    assert!(
        report.found.is_none(),
        "the pause stopped the cycle's scavenge: {report:?}"
    );
    assert!(report.errors.is_empty(), "{report:?}");
    wait_for("the cycle to end", || {
        node.control.auto_scavenge() == AutoScavenge::Waiting
    })
    .await;
    wait_until_completed(&node).await;
    node.stop_and_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_scavenge_paused_by_someone_else_stays_paused() {
    let node = start_node();
    let client = node.client();
    node.control.configure_auto_scavenge();
    assert!(node.control.pause_auto_scavenge());
    let (_, report) = with_scavenge_paused(&client, &policy(Unreachable::Fail), || async {})
        .await
        .unwrap();
    assert_eq!(report.auto_found, Some(AutoScavengeState::Paused));
    assert!(!report.auto_paused && !report.auto_resumed);
    assert!(matches!(
        node.control.auto_scavenge(),
        AutoScavenge::Paused { .. }
    ));
    node.stop_and_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordination_dropped_mid_work_still_starts_the_scavenge_again() {
    let (node, client) = node_scavenging().await;
    let policy = policy(Unreachable::Fail);
    let coordinated = with_scavenge_paused(&client, &policy, std::future::pending::<()>);
    tokio::select! {
        _ = coordinated => unreachable!("the work never ends"),
        _ = wait_for("the stop", || node.control.state().status == ScavengeStatus::Stopped) => {}
    }
    node.control.limit_chunks(None);
    wait_until_completed(&node).await;
    assert_eq!(
        node.control.state().starts,
        2,
        "started again after the drop"
    );
    node.stop_and_check();
}
