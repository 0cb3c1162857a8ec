//! `esbackup run` as an operator deploys it next to a node: points on schedule while the node
//! writes, /metrics (checked by `promtool`, scraped by a real Prometheus) and /healthz, a
//! store outage survived, a broken config on SIGHUP, SIGTERM mid-run (also with a store that
//! no longer answers), runs beside the one-shot commands, and the node's scavenge stopped
//! around each backup through its admin API.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use esbackup_tests::scenarios::{settled, Settled};
use esbackup_tests::servers::S3Server;
use esbackup_tests::support::check_restored;

/// A generous bound for anything the tests wait for (a slow CI machine).
const PATIENCE: Duration = Duration::from_secs(90);

mod common;

use common::assert_succeeded;

/// The binary without the caller's variables.
fn esbackup() -> Command {
    common::esbackup_command(&[])
}

/// `esbackup backup --db <db> --target <target>`, to be given more options.
fn backup_of(db: &Path, target: &Path) -> Command {
    let mut cmd = esbackup();
    cmd.arg("backup")
        .arg("--db")
        .arg(db)
        .arg("--target")
        .arg(target);
    cmd
}

/// A free port on loopback.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `GET http://addr/path`: the status and body.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Polls `cond` until it holds, for at most [`PATIENCE`]; panics naming `what` otherwise.
fn wait_for<T>(what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the sample `name` (a full sample name with labels, or a bare name) in the
/// Prometheus text `text`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split_once(' ').is_some_and(|(n, _)| n == name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A running `esbackup run` with its metrics on a free port and its log in a file.
struct Sidecar {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Sidecar {
    fn start(dir: &Path, args: &[&str], env: &[(String, String)]) -> Sidecar {
        let addr = free_addr();
        let log = dir.join(format!("run-{}.log", addr.port()));
        let child = esbackup()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .arg("run")
            .args(args)
            .args(["--log-format", "json", "--metrics-addr", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("esbackup run starts");
        let sidecar = Sidecar { child, addr, log };
        wait_for("the metrics endpoint", || {
            http_get(sidecar.addr, "/healthz")
        });
        sidecar
    }

    fn metrics(&self) -> String {
        http_get(self.addr, "/metrics").expect("/metrics answers").1
    }

    fn metric(&self, name: &str) -> Option<f64> {
        sample(&self.metrics(), name)
    }

    /// Waits until the location holds at least `n` points (as the metrics say).
    fn wait_for_points(&self, n: f64) {
        wait_for(&format!("{n} points"), || {
            (self.metric("esbackup_points")? >= n).then_some(())
        });
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-s", name, &pid]).status();
        assert!(sent.unwrap().success(), "kill -s {name} {pid}");
    }

    /// Waits for the process to exit; its status and how long it took.
    fn exits(&mut self) -> (ExitStatus, Duration) {
        let start = Instant::now();
        let status = wait_for("esbackup run to exit", || self.child.try_wait().unwrap());
        (status, start.elapsed())
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` (with `env`); it must succeed. Returns its stdout as JSON.
fn succeeds(cmd: &mut Command, env: &[(String, String)]) -> serde_json::Value {
    let out = cmd
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?}: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{cmd:?}: {e}: {stderr}"))
}

/// Restores every point of `target` into folders under `scratch` and checks each as the
/// server would open it; returns how many there were.
fn every_point_restores(target: &str, env: &[(String, String)], scratch: &Path) -> usize {
    let listed = succeeds(esbackup().args(["list", "--target", target]), env);
    let points = listed.as_array().expect("a list of points").clone();
    assert!(!points.is_empty(), "no points at {target}");
    for (i, p) in points.iter().enumerate() {
        let id = p["id"].as_str().unwrap();
        let dest = scratch.join(format!("restored-{i}"));
        let args = ["restore", "--target", target, "--point", id, "--db"];
        succeeds(esbackup().args(args).arg(&dest), env);
        let report = check_restored(&dest, &dest.join("index"));
        assert!(
            report.violations.is_empty(),
            "point {id}: {:?}",
            report.violations
        );
    }
    verify_intact(target, env);
    points.len()
}

/// `verify --read-data` finds every point intact.
fn verify_intact(target: &str, env: &[(String, String)]) {
    let verified = succeeds(
        esbackup().args(["verify", "--read-data", "--target", target]),
        env,
    );
    assert_eq!(verified["ok"], true, "{verified}");
}

/// The lock objects left at a folder location.
fn locks_in(folder: &Path) -> Vec<String> {
    let dir = folder.join(".esbackup/locks");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn run_stores_points_while_the_node_writes_and_serves_metrics_that_promtool_accepts() {
    let Settled { dir, db, node } = settled(5, 40);
    let live = esdb_sim::run_live(node);
    let target = dir.path().join("bk");
    let target = target.to_str().unwrap();
    let db_arg = db.to_str().unwrap();
    let args = [
        "--db",
        db_arg,
        "--target",
        target,
        "--every",
        "1s",
        "--keep-last",
        "3",
    ];
    let mut sidecar = Sidecar::start(
        dir.path(),
        &[&args[..], &["--forget-every", "2s"]].concat(),
        &[],
    );
    sidecar.wait_for_points(3.0);
    // Keeping the last 3 of 4 or more: the forget job forgets.
    wait_for("a point forgotten", || {
        (sidecar.metric("esbackup_forgotten_points_total")? >= 1.0).then_some(())
    });
    live.stop().unwrap();
    let metrics = sidecar.metrics();
    for name in [
        "esbackup_last_success_timestamp_seconds",
        "esbackup_lag_bytes",
        "esbackup_lag_seconds",
        "esbackup_stored_bytes",
        "esbackup_uploaded_bytes_total",
    ] {
        assert!(
            sample(&metrics, name).is_some(),
            "{name} missing:\n{metrics}"
        );
    }
    let promtool = Command::new(std::env::var("ESBACKUP_PROMTOOL").unwrap_or("promtool".into()))
        .args(["check", "metrics"])
        .output_with_stdin(metrics.as_bytes());
    assert_succeeded(&promtool, "promtool");
    let (code, body) = http_get(sidecar.addr, "/healthz").unwrap();
    assert_eq!(code, 200, "{body}");
    let log = sidecar.log();
    let line = log
        .lines()
        .find(|l| l.contains(r#""command":"backup""#))
        .expect("a backup line");
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    assert!(
        line["point"].as_str().is_some_and(|p| p.starts_with('p')),
        "{line}"
    );
    assert!(line["uploaded_bytes"].as_u64().is_some() && line["duration_secs"].as_f64().is_some());
    assert!(
        line["lag_bytes"].as_i64().is_some() && line["lag_secs"].as_f64().is_some(),
        "{line}"
    );
    sidecar.signal("TERM");
    let (status, _) = sidecar.exits();
    assert_eq!(status.code(), Some(0), "{}", sidecar.log());
    assert!(locks_in(Path::new(target)).is_empty());
    every_point_restores(target, &[], dir.path());
}

/// Feeds `input` to a command's stdin and collects its output.
trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output;
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }
}

#[test]
fn healthz_turns_503_while_the_store_fails_and_run_recovers_when_it_is_back() {
    let Settled { dir, db, mut node } = settled(6, 30);
    let target = dir.path().join("bk");
    let t = target.to_str().unwrap();
    let args = [
        "--db",
        db.to_str().unwrap(),
        "--target",
        t,
        "--every",
        "1s",
        "--healthy-within",
        "3s",
    ];
    let sidecar = Sidecar::start(dir.path(), &args, &[]);
    sidecar.wait_for_points(1.0);
    // The store goes away: the folder is replaced by a file.
    let away = dir.path().join("bk-away");
    std::fs::rename(&target, &away).unwrap();
    std::fs::write(&target, b"not a folder").unwrap();
    let failing = r#"esbackup_runs_total{command="backup",result="failure"}"#;
    wait_for("failed runs", || {
        (sidecar.metric(failing)? >= 2.0).then_some(())
    });
    let (code, body) = wait_for("/healthz to turn 503", || {
        http_get(sidecar.addr, "/healthz").filter(|(code, _)| *code == 503)
    });
    assert_eq!(code, 503);
    assert!(
        body.contains("too old") && body.contains("the last run failed"),
        "{body}"
    );
    assert_eq!(
        sidecar.metric(r#"esbackup_last_run_success{command="backup"}"#),
        Some(0.0)
    );
    assert!(sidecar.log().contains("retrying in"), "{}", sidecar.log());
    // The store is back, and the node wrote meanwhile.
    node.append(200).unwrap();
    node.settle().unwrap();
    std::fs::remove_file(&target).unwrap();
    std::fs::rename(&away, &target).unwrap();
    wait_for("/healthz to turn 200", || {
        http_get(sidecar.addr, "/healthz").filter(|(code, _)| *code == 200)
    });
    sidecar.wait_for_points(2.0);
    drop(sidecar);
    every_point_restores(t, &[], dir.path());
}

#[test]
fn sighup_with_a_config_that_no_longer_parses_keeps_the_previous_settings() {
    let Settled { dir, db, .. } = settled(7, 20);
    let config = dir.path().join("esbackup.yaml");
    let target = dir.path().join("bk");
    let yaml = format!(
        "db: {}\ntarget: {}\nschedule:\n  every: 1s\n",
        db.display(),
        target.display()
    );
    std::fs::write(&config, yaml).unwrap();
    let sidecar = Sidecar::start(dir.path(), &["--config", config.to_str().unwrap()], &[]);
    sidecar.wait_for_points(1.0);
    std::fs::write(&config, "schedule: [this is not: a mapping\n").unwrap();
    sidecar.signal("HUP");
    wait_for("the reload to be refused", || {
        sidecar
            .log()
            .contains("keeping the previous ones")
            .then_some(())
    });
    let before = sidecar.metric("esbackup_points").unwrap();
    sidecar.wait_for_points(before + 2.0);
    assert!(
        sidecar.log().contains("config file"),
        "the log names the file: {}",
        sidecar.log()
    );
}

#[test]
fn sigterm_mid_run_exits_0_at_once_with_the_lock_released_and_every_point_restorable() {
    let Settled { dir, db, node } = settled(8, 60);
    let live = esdb_sim::run_live(node);
    let target = dir.path().join("bk");
    let t = target.to_str().unwrap();
    let args = ["--db", db.to_str().unwrap(), "--target", t, "--every", "1s"];
    let mut sidecar = Sidecar::start(dir.path(), &args, &[]);
    sidecar.wait_for_points(2.0);
    // The next run holds the lock: stop it there.
    wait_for("a run holding the lock", || {
        (!locks_in(&target).is_empty()).then_some(())
    });
    sidecar.signal("TERM");
    let (status, took) = sidecar.exits();
    live.stop().unwrap();
    assert_eq!(status.code(), Some(0), "{}", sidecar.log());
    assert!(took < Duration::from_secs(10), "exited after {took:?}");
    assert!(locks_in(&target).is_empty(), "the lock was released");
    every_point_restores(t, &[], dir.path());
}

#[test]
fn run_copies_the_new_points_to_a_second_location() {
    copies_to_a_second_location(None);
}

#[test]
fn run_copies_to_an_encrypted_second_location_with_its_own_password() {
    copies_to_a_second_location(Some("the far key"));
}

/// `run --copy-to far` from a plain location; with `far_password`, far is encrypted and its
/// password comes from `--copy-to-password-file`.
fn copies_to_a_second_location(far_password: Option<&str>) {
    let Settled { dir, db, node } = settled(9, 60);
    let live = esdb_sim::run_live(node);
    let (near, far) = (dir.path().join("near"), dir.path().join("far"));
    let (n, f) = (near.to_str().unwrap(), far.to_str().unwrap());
    let far_env: Vec<(String, String)> = far_password
        .map(|pw| ("ESBACKUP_PASSWORD".to_string(), pw.to_string()))
        .into_iter()
        .collect();
    let pw_file = dir.path().join("far-password");
    let mut args = vec![
        "--db",
        db.to_str().unwrap(),
        "--target",
        n,
        "--every",
        "1s",
        "--copy-to",
        f,
        "--copy-every",
        "1s",
    ];
    if let Some(pw) = far_password {
        let init = esbackup()
            .args(["init", "--target", f, "--encrypt"])
            .envs(far_env.iter().cloned())
            .output()
            .unwrap();
        assert_succeeded(&init, "init");
        std::fs::write(&pw_file, format!("{pw}\n")).unwrap();
        args.extend(["--copy-to-password-file", pw_file.to_str().unwrap()]);
    }
    let mut sidecar = Sidecar::start(dir.path(), &args, &[]);
    wait_for("three points copied", || {
        let listed = esbackup()
            .args(["list", "--json", "--target", f])
            .envs(far_env.iter().cloned())
            .output()
            .ok()?;
        let points: serde_json::Value = serde_json::from_slice(&listed.stdout).ok()?;
        (points.as_array()?.len() >= 3).then_some(())
    });
    assert!(sidecar
        .metrics()
        .contains("esbackup_runs_total{command=\"copy\",result=\"success\"}"));
    sidecar.signal("TERM");
    let (status, _) = sidecar.exits();
    live.stop().unwrap();
    assert_eq!(status.code(), Some(0), "{}", sidecar.log());
    assert!(sidecar.log().contains("copied to"), "{}", sidecar.log());
    every_point_restores(f, &far_env, &dir.path().join("far-restores"));
    assert!(
        locks_in(&far).is_empty(),
        "the copy released the destination's lock"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_the_store_does_not_answer_exits_within_the_bound() {
    let server = S3Server::start().await;
    let env = server.env();
    let Settled { dir, db, mut node } = settled(9, 40);
    let url = server.url("hung/node1");
    let args = [
        "--db",
        db.to_str().unwrap(),
        "--target",
        &url,
        "--every",
        "1s",
    ];
    let mut sidecar = Sidecar::start(dir.path(), &args, &env);
    sidecar.wait_for_points(1.0);
    node.append(300).unwrap();
    node.settle().unwrap();
    let docker = |what: &str| {
        let mut docker = Command::new("docker");
        let done = docker
            .args([what, server.container_id()])
            .stdout(Stdio::null())
            .status();
        assert!(done.unwrap().success(), "docker {what}");
    };
    docker("pause");
    // A run now waits on the store (it starts within a second); then the stop request.
    std::thread::sleep(Duration::from_secs(2));
    sidecar.signal("TERM");
    let (status, took) = sidecar.exits();
    docker("unpause");
    assert_eq!(status.code(), Some(0), "{}", sidecar.log());
    assert!(
        took < Duration::from_secs(10),
        "exited after {took:?}: {}",
        sidecar.log()
    );
    // The next backup takes over whatever lock the stopped run left (its process is gone).
    succeeds(&mut backup_of(&db, Path::new(&url)), &env);
    every_point_restores(&url, &env, dir.path());
}

#[test]
fn run_beside_one_shot_backups_and_forgets_leaves_every_point_restorable() {
    // The node writes between the one-shot backups (one that ran while it wrote would fail
    // with exit 6, as it should); `run` backs up whenever it likes.
    let Settled { dir, db, mut node } = settled(10, 20);
    let target = dir.path().join("bk");
    let t = target.to_str().unwrap();
    let d = db.to_str().unwrap();
    let args = [
        "--db",
        d,
        "--target",
        t,
        "--every",
        "1s",
        "--keep-last",
        "4",
        "--prune",
        "--forget-every",
        "1s",
    ];
    let sidecar = Sidecar::start(dir.path(), &args, &[]);
    sidecar.wait_for_points(1.0);
    for round in 0..4 {
        node.append(100).unwrap();
        node.settle().unwrap();
        succeeds(&mut backup_of(&db, &target), &[]);
        let keep = (2 + round % 2).to_string();
        let forget = ["forget", "--target", t, "--keep-last", &keep, "--prune"];
        succeeds(esbackup().args(forget), &[]);
    }
    let runs = r#"esbackup_runs_total{command="backup",result="success"}"#;
    let before = sidecar.metric(runs).unwrap();
    wait_for("more runs of its own", || {
        (sidecar.metric(runs)? >= before + 2.0).then_some(())
    });
    drop(sidecar);
    assert!(every_point_restores(t, &[], dir.path()) >= 2);
}

#[test]
fn prometheus_scrapes_run_and_answers_for_the_last_success_and_the_lag() {
    let Settled { dir, db, .. } = settled(11, 20);
    let target = dir.path().join("bk");
    let args = [
        "--db",
        db.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "--every",
        "1s",
    ];
    let sidecar = Sidecar::start(dir.path(), &args, &[]);
    sidecar.wait_for_points(1.0);
    let prometheus = Prometheus::start(dir.path(), sidecar.addr);
    let last = wait_for("Prometheus to have scraped a success", || {
        prometheus.query("esbackup_last_success_timestamp_seconds")
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        last > now - PATIENCE.as_secs_f64() && last <= now + 1.0,
        "{last} vs {now}"
    );
    let lag = wait_for("the lag", || prometheus.query("esbackup_lag_bytes"));
    assert_eq!(lag, 0.0, "a settled node: nothing to lag behind");
}

/// A Prometheus server scraping one target every second.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Prometheus {
    fn start(dir: &Path, scraped: SocketAddr) -> Prometheus {
        let addr = free_addr();
        let config = dir.join("prometheus.yml");
        let yaml = format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: esbackup\n    static_configs:\n      - targets: ['{scraped}']\n"
        );
        std::fs::write(&config, yaml).unwrap();
        let bin = std::env::var("ESBACKUP_PROMETHEUS").unwrap_or("prometheus".into());
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin} starts (scripts/test-env.sh installs it): {e}"));
        Prometheus { child, addr }
    }

    /// The value of an instant PromQL query with one result.
    fn query(&self, promql: &str) -> Option<f64> {
        let (_, body) = http_get(self.addr, &format!("/api/v1/query?query={promql}"))?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn backup_with_node_url_stops_the_running_scavenge_and_the_scavenge_then_finishes() {
    use esdb_sim::admin_api::{AdminApi, AdminOptions};
    use esdb_sim::{Node, ScavengeStatus, SimConfig};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let cfg = SimConfig {
        chunk_size: 4096,
        seed: 12,
        ..SimConfig::default()
    };
    let mut node = Node::create(&db, cfg).unwrap();
    let control = node.controlled_scavenge();
    node.append(150).unwrap();
    node.settle().unwrap();
    let live = esdb_sim::run_live(node);
    let api = AdminApi::start(control.clone(), AdminOptions::new(&dir.path().join("api"))).unwrap();
    // A scavenge the node runs, held after its first chunk (as a throttled one would be).
    control.limit_chunks(Some(1));
    let id = control.start().unwrap();
    wait_for("the first chunk", || {
        (control.state().chunks_done == 1).then_some(())
    });
    let target = dir.path().join("bk");
    let env = [("NODE_PW".to_string(), "changeit".to_string())];
    let mut backup = backup_of(&db, &target);
    backup.args([
        "--node-url",
        api.url(),
        "--node-password-env",
        "NODE_PW",
        "--node-ca",
    ]);
    backup.arg(api.ca_file());
    let report = succeeds(&mut backup, &env);
    let notes = report["notes"].to_string();
    assert!(notes.contains(&format!("stopped scavenge {id}")), "{notes}");
    assert!(notes.contains("started it again"), "{notes}");
    let state = control.state();
    assert_eq!((state.stops, state.starts), (1, 2), "{state:?}");
    let listed = succeeds(
        esbackup().args(["list", "--target", target.to_str().unwrap()]),
        &[],
    );
    assert_eq!(
        listed[0]["node_state"], "leader",
        "the point records the node's state: {listed}"
    );
    control.limit_chunks(None);
    wait_for("the scavenge to finish", || {
        (control.state().status == ScavengeStatus::Completed).then_some(())
    });
    let state = control.state();
    assert_eq!(state.chunks_done, state.chunks_total, "{state:?}");
    live.stop().unwrap();
    every_point_restores(target.to_str().unwrap(), &[], dir.path());
}

/// The README's metrics table, its alert rules (docs/esbackup-alerts.yml) and the Grafana
/// dashboard name only metrics that `backup --metrics-file` writes; promtool accepts the file
/// and the rules.
#[test]
fn the_metrics_file_holds_every_documented_metric_and_the_alert_rules_check() {
    let Settled { dir, db, .. } = settled(13, 20);
    let file = dir.path().join("backup.prom");
    let target = dir.path().join("bk");
    let mut backup = backup_of(&db, &target);
    succeeds(backup.arg("--metrics-file").arg(&file), &[]);
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(sample(&written, "esbackup_points"), Some(1.0), "{written}");
    let ok = r#"esbackup_runs_total{command="backup",result="success"}"#;
    assert_eq!(sample(&written, ok), Some(1.0), "{written}");
    let promtool = || Command::new(std::env::var("ESBACKUP_PROMTOOL").unwrap_or("promtool".into()));
    let checked = promtool()
        .args(["check", "metrics"])
        .output_with_stdin(written.as_bytes());
    assert_succeeded(&checked, "checked");

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let rules = std::fs::read_to_string(root.join("docs/esbackup-alerts.yml")).unwrap();
    assert!(
        readme.contains(&rules),
        "the README shows docs/esbackup-alerts.yml as it is"
    );
    let rules_path = root.join("docs/esbackup-alerts.yml");
    let checked = promtool()
        .arg("check")
        .arg("rules")
        .arg(&rules_path)
        .output()
        .unwrap();
    assert_succeeded(&checked, "checked");
    let dashboard = std::fs::read_to_string(root.join("docs/grafana-dashboard.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    let table = readme.lines().filter(|l| l.starts_with("| `esbackup_"));
    let documented: Vec<&str> = table.flat_map(|l| l.split('|').nth(1)).collect();
    for text in documented
        .iter()
        .copied()
        .chain([rules.as_str(), dashboard.as_str()])
    {
        for name in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if name.starts_with("esbackup_") && name.len() > "esbackup_".len() {
                assert!(
                    written.contains(&format!("{name} ")) || written.contains(&format!("{name}{{")),
                    "{name} is documented but not written:\n{written}"
                );
            }
        }
    }
}
