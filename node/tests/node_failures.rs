//! A node that answers 401, 500, hangs, cannot be reached or shows a certificate of another
//! CA: clear errors, and no scavenge is left stopped after the run.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use esbackup_node::{
    with_scavenge_paused, NodeClient, NodeError, NodeRole, Restarted, StartOutcome, StopOutcome,
    Unreachable,
};
use esdb_sim::admin_api::{AdminApi, AdminOptions, Fault};
use esdb_sim::{Node, ScavengeStatus, SimConfig};

use common::*;

async fn start_held_scavenge(node: &SimNode) -> String {
    node.control.limit_chunks(Some(1));
    let StartOutcome::Started(id) = node.client().start_scavenge().await.unwrap() else {
        panic!("the scavenge did not start");
    };
    wait_for("the first chunk", || node.control.state().chunks_done == 1).await;
    id
}

/// A live node whose scavenge is held after its first chunk.
async fn start_held_scavenge_node() -> SimNode {
    let node = start_node();
    start_held_scavenge(&node).await;
    node
}

/// The scavenge was left running: with the faults off, it runs to its end and the node's files
/// check.
async fn still_running_then_finish(node: SimNode) {
    assert_eq!(node.control.state().status, ScavengeStatus::Running);
    node.api.clear_faults();
    finish(node).await;
}

/// Lets the scavenge run to its end and checks the node's files.
async fn finish(node: SimNode) {
    node.control.limit_chunks(None);
    wait_for("the scavenge to complete", || {
        node.control.state().status == ScavengeStatus::Completed
    })
    .await;
    node.stop_and_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_gives_the_unauthorized_error_naming_the_user_and_stops_nothing() {
    let node = start_held_scavenge_node().await;
    let client = NodeClient::new(node.settings("wrong")).unwrap();
    let ran = AtomicBool::new(false);
    let err = with_scavenge_paused(&client, &policy(Unreachable::Fail), || async {
        ran.store(true, Ordering::SeqCst)
    })
    .await
    .unwrap_err();
    assert!(matches!(err.error, NodeError::Unauthorized { .. }), "{err}");
    let msg = err.error.to_string();
    assert!(msg.contains("\"admin\"") && msg.contains("401"), "{msg}");
    assert!(msg.contains("--node-user"), "names what to fix: {msg}");
    assert!(!ran.load(Ordering::SeqCst), "the work did not run");
    assert_eq!(node.control.state().status, ScavengeStatus::Running);
    let info = client.info().await.unwrap_err();
    assert!(matches!(info, NodeError::Unauthorized { .. }), "{info}");
    finish(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_before_the_work_fails_the_run_without_stopping_the_scavenge() {
    let node = start_held_scavenge_node().await;
    let client = node.client();
    node.api
        .inject(Fault::ServerError.on("GET", "/admin/scavenge/current"));
    let ran = AtomicBool::new(false);
    let err = with_scavenge_paused(&client, &policy(Unreachable::Fail), || async {
        ran.store(true, Ordering::SeqCst)
    })
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("500") && msg.contains("/admin/scavenge/current"),
        "{msg}"
    );
    assert!(!ran.load(Ordering::SeqCst));
    assert!(err.report.stopped.is_none() && !err.report.left_stopped());
    still_running_then_finish(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_continue_policy_the_work_runs_and_the_error_is_reported() {
    let node = start_held_scavenge_node().await;
    let client = node.client();
    node.api
        .inject(Fault::ServerError.on("GET", "/admin/scavenge/current"));
    let (value, report) =
        with_scavenge_paused(&client, &policy(Unreachable::Continue), || async { 7 })
            .await
            .unwrap();
    assert_eq!(value, 7);
    assert!(report.reached && report.found.is_none(), "{report:?}");
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(report.errors[0].contains("500"), "{report:?}");
    still_running_then_finish(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_hangs_past_the_timeout_gives_a_timeout_error_naming_it() {
    let node = start_held_scavenge_node().await;
    let client = node.client_timing_out_after(Duration::from_millis(300));
    node.api
        .inject(Fault::Hang.on("GET", "/admin/scavenge/current"));
    let err = with_scavenge_paused(&client, &policy(Unreachable::Fail), || async {})
        .await
        .unwrap_err();
    assert!(matches!(err.error, NodeError::Timeout { .. }), "{err}");
    let msg = err.error.to_string();
    assert!(
        msg.contains("300ms") && msg.contains("--node-timeout"),
        "{msg}"
    );
    assert!(msg.contains(node.api.url()), "{msg}");
    still_running_then_finish(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_times_out_fails_the_run_and_leaves_the_scavenge_running() {
    let node = start_node();
    let id = start_held_scavenge(&node).await;
    let client = node.client();
    node.api
        .inject(Fault::Hang.on("DELETE", &format!("/admin/scavenge/{id}")));
    let mut policy = policy(Unreachable::Fail);
    policy.stop_wait = Duration::from_millis(300);
    let err = with_scavenge_paused(&client, &policy, || async {})
        .await
        .unwrap_err();
    assert!(matches!(err.error, NodeError::Timeout { .. }), "{err}");
    assert_eq!(err.report.found.as_deref(), Some(id.as_str()));
    assert_eq!(
        err.report.restarted,
        Some(Restarted::AlreadyRunning),
        "{err}"
    );
    assert!(!err.report.left_stopped());
    still_running_then_finish(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_keeps_failing_is_reported_as_leaving_the_scavenge_stopped() {
    let node = start_node();
    let id = start_held_scavenge(&node).await;
    let client = node.client();
    node.api
        .inject(Fault::ServerError.on("POST", "/admin/scavenge"));
    let (_, report) = with_scavenge_paused(&client, &policy(Unreachable::Fail), || async {})
        .await
        .unwrap();
    assert_eq!(report.stopped.as_deref(), Some(id.as_str()));
    assert!(report.left_stopped(), "{report:?}");
    assert_eq!(report.errors.len(), 3, "three tries: {report:?}");
    let text = report.to_string();
    assert!(
        text.contains("STILL STOPPED") && text.contains("500"),
        "{text}"
    );
    assert!(
        text.contains("POST /admin/scavenge"),
        "says how to fix it: {text}"
    );
    assert_eq!(node.control.state().status, ScavengeStatus::Stopped);
    node.api.clear_faults();
    client.start_scavenge().await.unwrap();
    finish(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_hangs_once_is_retried_and_the_scavenge_runs_again() {
    let node = start_held_scavenge_node().await;
    let client = node.client_timing_out_after(Duration::from_millis(500));
    node.api
        .inject(Fault::Hang.on("POST", "/admin/scavenge").times(1));
    let (_, report) = with_scavenge_paused(&client, &policy(Unreachable::Fail), || async {})
        .await
        .unwrap();
    assert!(
        matches!(report.restarted, Some(Restarted::Started(_))),
        "{report:?}"
    );
    assert!(!report.left_stopped());
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(
        report.errors[0].contains("did not answer within"),
        "{report:?}"
    );
    assert_eq!(node.api.fault_hits(), 1);
    finish(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_node_fails_before_the_work_or_is_reported_with_continue() {
    let node = start_node();
    let client = node.client();
    let url = node.api.url().to_string();
    node.stop_and_check();
    let err = with_scavenge_paused(&client, &policy(Unreachable::Fail), || async {})
        .await
        .unwrap_err();
    assert!(matches!(err.error, NodeError::Unreachable { .. }), "{err}");
    assert!(err.error.to_string().contains(&url), "{err}");
    let (_, report) = with_scavenge_paused(&client, &policy(Unreachable::Continue), || async {})
        .await
        .unwrap();
    assert!(!report.reached && !report.left_stopped());
    assert!(
        report.to_string().contains("could not be asked"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_another_ca_fails_with_a_tls_error_naming_the_ca_file() {
    let node = start_node();
    let other_dir = tempfile::tempdir().unwrap();
    let mut other = Node::create(&other_dir.path().join("db"), SimConfig::default()).unwrap();
    let other_api = AdminApi::start(
        other.controlled_scavenge(),
        AdminOptions::new(other_dir.path()),
    )
    .unwrap();
    let mut settings = node.settings(PASSWORD);
    settings.ca_file = Some(other_api.ca_file().to_path_buf());
    let client = NodeClient::new(settings).unwrap();
    let err = client.info().await.unwrap_err();
    assert!(matches!(err, NodeError::Tls { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&other_api.ca_file().display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("--node-ca"), "{msg}");

    let mut no_pem = node.settings(PASSWORD);
    let junk = other_dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    no_pem.ca_file = Some(junk.clone());
    let err = NodeClient::new(no_pem).unwrap_err();
    assert!(matches!(err, NodeError::CaFile { .. }), "{err}");
    assert!(
        err.to_string().contains(&junk.display().to_string()),
        "{err}"
    );
    node.stop_and_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_current_stops_whatever_runs_and_a_second_stop_finds_none() {
    let node = start_held_scavenge_node().await;
    let client = node.client();
    let id = node.control.state().id.unwrap();
    let wait = Duration::from_secs(60);
    assert_eq!(
        client.stop_scavenge("current", wait).await.unwrap(),
        StopOutcome::Stopped(id)
    );
    assert_eq!(node.control.state().status, ScavengeStatus::Stopped);
    assert_eq!(client.current_scavenge().await.unwrap(), None);
    assert_eq!(
        client.stop_scavenge("current", wait).await.unwrap(),
        StopOutcome::NotRunning
    );
    client.start_scavenge().await.unwrap();
    assert_eq!(
        client.start_scavenge().await.unwrap(),
        StartOutcome::AlreadyRunning
    );
    finish(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_gives_the_role_and_metrics_the_writer_checkpoint() {
    let node = start_node();
    let client = node.client();
    let info = client.info().await.unwrap();
    assert_eq!(info.role(), NodeRole::Leader);
    node.api.set_role("follower");
    assert_eq!(client.info().await.unwrap().role(), NodeRole::Follower);
    let before = node.control.checkpoints().writer;
    let writer = client.writer_checkpoint().await.unwrap();
    let after = node.control.checkpoints().writer;
    assert!(
        before <= writer && writer <= after,
        "{before} <= {writer} <= {after}"
    );
    assert!(writer > 0);
    node.stop_and_check();
}
