//! A live simulated node with its admin API over TLS (the test CA), and waits bounded by a
//! generous limit (they end as soon as the state they wait for is reached).
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use esbackup_node::{NodeClient, NodeSettings, Password, ScavengePolicy, Unreachable};
use esdb_sim::admin_api::{AdminApi, AdminOptions};
use esdb_sim::{check, run_live, CheckOptions, LiveHandle, Node, ScavengeControl, SimConfig};

pub const PASSWORD: &str = "changeit";

/// A node stepping on its own thread, scavenging only through its API.
pub struct SimNode {
    pub dir: tempfile::TempDir,
    pub control: ScavengeControl,
    pub api: AdminApi,
    live: Option<LiveHandle>,
}

fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new()
            .prefix("esbackup-node-")
            .tempdir_in(shm)
        {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

/// A node with a dozen or so completed 4 KiB chunks, live, with its admin API.
pub fn start_node() -> SimNode {
    let dir = scratch();
    let cfg = SimConfig {
        chunk_size: 4096,
        seed: 11,
        ..SimConfig::default()
    };
    let mut node = Node::create(&dir.path().join("db"), cfg).unwrap();
    let control = node.controlled_scavenge();
    node.append(150).unwrap();
    node.settle().unwrap();
    let live = run_live(node);
    let api = AdminApi::start(control.clone(), AdminOptions::new(&dir.path().join("api"))).unwrap();
    SimNode {
        dir,
        control,
        api,
        live: Some(live),
    }
}

impl SimNode {
    pub fn settings(&self, password: &str) -> NodeSettings {
        NodeSettings {
            url: self.api.url().to_string(),
            user: "admin".into(),
            password: Password(password.into()),
            ca_file: Some(self.api.ca_file().to_path_buf()),
            timeout: Duration::from_secs(30),
        }
    }

    pub fn client(&self) -> NodeClient {
        NodeClient::new(self.settings(PASSWORD)).unwrap()
    }

    /// A client whose requests time out after `timeout`.
    pub fn client_timing_out_after(&self, timeout: Duration) -> NodeClient {
        NodeClient::new(NodeSettings {
            timeout,
            ..self.settings(PASSWORD)
        })
        .unwrap()
    }

    /// Stops the live node, settles it and runs the simulator's checker on its files.
    pub fn stop_and_check(mut self) {
        let mut node = self.live.take().unwrap().stop().unwrap();
        node.settle().unwrap();
        let report = check(node.db_dir(), node.index_dir(), &CheckOptions::default());
        assert!(report.violations.is_empty(), "{:#?}", report.violations);
    }
}

/// A policy for tests: prompt retries, a generous stop wait.
pub fn policy(unreachable: Unreachable) -> ScavengePolicy {
    ScavengePolicy {
        unreachable,
        stop_wait: Duration::from_secs(60),
        poll: Duration::from_millis(10),
        restart_tries: 3,
        ..ScavengePolicy::default()
    }
}

/// Waits until `cond` holds (at most a minute, checking every few milliseconds).
pub async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

/// Waits until the node has taken `n` more steps.
pub async fn let_node_step(control: &ScavengeControl, n: u64) {
    let start = control.node_steps();
    wait_for("the node to step", || control.node_steps() >= start + n).await;
}
