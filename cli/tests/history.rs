//! The concurrent history test (issue 16, "A test that would have caught 1 and 3"): rounds of
//! random interleavings of the real `esbackup` binary's commands on one backup location, a
//! folder or Garage (S3), judged by an oracle that knows every state the database was in.
//!
//! Each round changes the simulated database (always one event at least, so that each state
//! has its own writer checkpoint; sometimes whole chunks; sometimes random steps: scavenges,
//! chunk merges, index merges), copies it — what any point taken in this round must restore to,
//! keyed by its writer checkpoint — and starts 1–5 commands as child processes, 0–40 ms apart:
//! `backup` (sometimes `--full`, sometimes with the clock stepped by libfaketime),
//! `forget --prune` with a random policy, `restore` (of a listed point, or the newest) into a
//! fresh folder, `verify` (sometimes `--read-data`), `list --json`. Sometimes one of them is
//! killed (SIGKILL) at a random moment. With nothing running any more, the oracle checks:
//!
//! - every listed point restores, byte for byte, to the state of the round its backup ran in
//!   (`truncate.chk` aside, which must equal `chaser.chk`);
//! - a backup that exited 0 named its point, and that point stays listed unless a forget could
//!   have removed it: one that ran after the backup started, that did not fail on the lock,
//!   whose `--keep-last N` leaves it out only if N points may be newer (taken by backups that
//!   may have finished after it);
//! - a forget that exited 0 removed what it said it forgot, and forgot only points that had N
//!   possibly newer ones;
//! - a concurrent `restore`/`verify`/`list` that failed is accepted only if a point was forgotten
//!   meanwhile (its point, for `--point`); one that exited 0 restored the right bytes;
//! - the newest listed point, and a plain `restore`, are the last backup that exited 0 (or a
//!   killed or failed backup that may have finished after it), also when that backup ran with
//!   the clock stepped;
//! - at the end `verify --read-data` exits 0.
//!
//! Times are the test's own monotonic clock around each child process, so every judgment is
//! conservative: what may have happened in either order is accepted either way. Commands that
//! fail on the lock (exit 4) or were killed are recorded, never taken for successes. Problems
//! are counted, not panicked on; the summary line
//! `history: rounds=R commands=C kills=K clock_steps=S problems=P seed=X target=T` is printed
//! and the test fails if P > 0, listing each problem (one that persists, such as a damaged
//! point, once, with the last round that saw it) and what ran in the rounds that found them.
//!
//! The Garage test needs the S3 test environment (scripts/test-env.sh: Docker and the Garage
//! image); without it, it says so and passes.
//!
//! Settings: `ESBACKUP_HISTORY_ROUNDS` (default 30 per target), `ESBACKUP_HISTORY_SECS` (run
//! rounds for this long instead; with both, whichever ends first), `ESBACKUP_HISTORY_SEED`
//! (default 16), `ESBACKUP_HISTORY_CLOCK_STEPS=0` (no clock steps), `ESBACKUP_HISTORY_TRACE=1`
//! (print what ran in every round, not only in those that found problems). Clock steps need
//! `faketime` (libfaketime) on PATH; without it they are skipped with a message.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use esbackup_tests::scenarios::sim_config;
use esbackup_tests::servers::S3Server;
use esbackup_tests::support::database_files;
use esdb_sim::Node;

/// Exit code of a command that found the location locked by another run (cli/src/exit.rs).
const LOCKED: i32 = 4;

// ---------------------------------------------------------------------------------------------
// Settings, randomness, clock steps
// ---------------------------------------------------------------------------------------------

struct Settings {
    rounds: Option<usize>,
    secs: Option<u64>,
    seed: u64,
    clock_steps: bool,
    trace: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let num = |name: &str| {
            std::env::var(name).ok().filter(|v| !v.is_empty()).map(|v| {
                v.parse::<u64>()
                    .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
            })
        };
        let secs = num("ESBACKUP_HISTORY_SECS");
        let rounds = num("ESBACKUP_HISTORY_ROUNDS").map(|n| n as usize);
        Settings {
            rounds: rounds.or(if secs.is_some() { None } else { Some(30) }),
            secs,
            seed: num("ESBACKUP_HISTORY_SEED").unwrap_or(16),
            clock_steps: num("ESBACKUP_HISTORY_CLOCK_STEPS") != Some(0),
            trace: num("ESBACKUP_HISTORY_TRACE").is_some_and(|t| t != 0),
        }
    }
}

/// splitmix64: small, seeded, good enough to choose interleavings.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// lo..=hi
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64 - 1) as usize]
    }
}

/// How a command runs with its clock stepped.
#[derive(Clone, Debug)]
enum Faketime {
    /// libfaketime preloaded into esbackup itself (a kill hits esbackup, not a wrapper).
    Preload(PathBuf),
    /// Only the `faketime` wrapper was found: it forks, so such commands are never killed.
    Wrapper,
    Absent,
    /// Turned off by the settings.
    Off,
}

fn find_faketime() -> Faketime {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("faketime").is_file()))
        .unwrap_or(false);
    if !on_path {
        return Faketime::Absent;
    }
    let mut dirs = vec![
        PathBuf::from("/usr/lib/faketime"),
        PathBuf::from("/usr/local/lib/faketime"),
    ];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        dirs.extend(entries.flatten().map(|e| e.path().join("faketime")));
    }
    for dir in dirs {
        for lib in ["libfaketimeMT.so.1", "libfaketime.so.1"] {
            if dir.join(lib).is_file() {
                return Faketime::Preload(dir.join(lib));
            }
        }
    }
    Faketime::Wrapper
}

fn help_mentions(sub: &str, word: &str) -> bool {
    Command::new(env!("CARGO_BIN_EXE_esbackup"))
        .args([sub, "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(word))
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// Commands and running them
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Backup {
        full: bool,
        clock: Option<String>,
    },
    Forget {
        keep_last: u32,
        daily: Option<u32>,
        hourly: Option<u32>,
    },
    Restore {
        point: Option<String>,
    },
    Verify {
        read_data: bool,
        point: Option<String>,
    },
    List,
}

/// One child process: what it was asked and what it did. Times are seconds since the test
/// started, taken before the spawn and after the exit was seen.
#[derive(Clone, Debug)]
struct Cmd {
    n: usize,
    op: Op,
    args: Vec<String>,
    dest: Option<PathBuf>,
    offset: Duration,
    kill_after: Option<Duration>,
    start: f64,
    end: f64,
    code: Option<i32>,
    killed: bool,
    stdout: String,
    stderr: String,
}

impl Cmd {
    /// A command not run yet.
    fn new(n: usize, op: Op, args: Vec<String>, dest: Option<PathBuf>, offset: Duration) -> Cmd {
        Cmd {
            n,
            op,
            args,
            dest,
            offset,
            kill_after: None,
            start: 0.0,
            end: 0.0,
            code: None,
            killed: false,
            stdout: String::new(),
            stderr: String::new(),
        }
    }
    fn ok(&self) -> bool {
        self.code == Some(0)
    }
    fn locked(&self) -> bool {
        self.code == Some(LOCKED)
    }
    fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.stdout).ok()
    }
    fn label(&self) -> String {
        let mut parts = vec![format!("#{}", self.n)];
        let mut skip = false;
        for a in &self.args {
            match a.as_str() {
                _ if skip => skip = false,
                "--target" | "--db" => skip = true,
                "--json" => {}
                _ => parts.push(a.clone()),
            }
        }
        if let Op::Backup {
            clock: Some(step), ..
        } = &self.op
        {
            parts.push(format!("(clock {step})"));
        }
        parts.join(" ")
    }
    fn outcome(&self) -> String {
        match (self.killed, self.code) {
            (true, _) => "killed".into(),
            (_, Some(c)) => format!("exit {c}"),
            (_, None) => "died by a signal".into(),
        }
    }
    /// One line of the round's trace.
    fn trace(&self) -> String {
        let mut s = format!(
            "{} +{}ms: {:.3}s..{:.3}s {}",
            self.label(),
            self.offset.as_millis(),
            self.start,
            self.end,
            self.outcome()
        );
        if let Some(k) = self.kill_after {
            s.push_str(&format!(" (kill after {}ms)", k.as_millis()));
        }
        let j = self.json().unwrap_or_default();
        if let Some(p) = j["point"].as_str() {
            s.push_str(&format!(" point {p}"));
        }
        if let Some(f) = j["forgotten"].as_array() {
            s.push_str(&format!(" forgot {f:?}"));
        }
        if !self.ok() && !self.killed {
            s.push_str(&format!(": {}", self.error_line()));
        }
        s
    }

    fn error_line(&self) -> String {
        self.stderr
            .lines()
            .find(|l| l.starts_with("esbackup: error:"))
            .unwrap_or_else(|| self.stderr.lines().last().unwrap_or(""))
            .chars()
            .take(300)
            .collect()
    }
}

/// Starts the binary the way an operator does, with the target's environment only.
struct Runner {
    target: String,
    env: Vec<(String, String)>,
    faketime: Faketime,
    epoch: Instant,
    lock_wait_backup: bool,
    lock_wait_forget: bool,
}

impl Runner {
    fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    fn command(&self, clock: Option<&str>) -> Command {
        let bin = env!("CARGO_BIN_EXE_esbackup");
        let mut cmd = match (clock, &self.faketime) {
            (Some(step), Faketime::Wrapper) => {
                let mut c = Command::new("faketime");
                c.args(["-m", "-f", step, bin]);
                c
            }
            _ => Command::new(bin),
        };
        for (k, _) in std::env::vars() {
            if k.starts_with("ESBACKUP_")
                || k.starts_with("AWS_")
                || k.starts_with("FAKETIME")
                || k == "LD_PRELOAD"
            {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.env.iter().cloned());
        if let Some(step) = clock {
            cmd.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
            if let Faketime::Preload(lib) = &self.faketime {
                cmd.env("LD_PRELOAD", lib).env("FAKETIME", step);
            }
        }
        cmd
    }

    fn args(&self, op: &Op, db: &Path, dest: Option<&Path>) -> Vec<String> {
        let t = self.target.clone();
        let s = |x: &str| x.to_string();
        let mut a: Vec<String> = match op {
            Op::Backup { full, .. } => {
                let mut a = vec![s("backup"), s("--db"), db.display().to_string()];
                if *full {
                    a.push(s("--full"));
                }
                if self.lock_wait_backup {
                    a.extend([s("--lock-wait"), s("120s")]);
                }
                a
            }
            Op::Forget {
                keep_last,
                daily,
                hourly,
            } => {
                let mut a = vec![s("forget"), s("--keep-last"), keep_last.to_string()];
                if let Some(d) = daily {
                    a.extend([s("--keep-daily"), d.to_string()]);
                }
                if let Some(h) = hourly {
                    a.extend([s("--keep-hourly"), h.to_string()]);
                }
                a.push(s("--prune"));
                if self.lock_wait_forget {
                    a.extend([s("--lock-wait"), s("120s")]);
                }
                a
            }
            Op::Restore { point } => {
                let mut a = vec![s("restore"), s("--db"), dest.unwrap().display().to_string()];
                if let Some(p) = point {
                    a.extend([s("--point"), p.clone()]);
                }
                a
            }
            Op::Verify { read_data, point } => {
                let mut a = vec![s("verify")];
                if *read_data {
                    a.push(s("--read-data"));
                }
                if let Some(p) = point {
                    a.extend([s("--point"), p.clone()]);
                }
                a
            }
            Op::List => vec![s("list")],
        };
        a.extend([s("--target"), t, s("--json")]);
        a
    }

    /// Runs one command to its end (killing it `kill_after` after its start, if set).
    fn run(&self, cmd: &mut Cmd, dir: &Path) {
        std::thread::sleep(cmd.offset);
        let clock = match &cmd.op {
            Op::Backup { clock, .. } => clock.clone(),
            _ => None,
        };
        let out = dir.join(format!("cmd-{}.out", cmd.n));
        let err = dir.join(format!("cmd-{}.err", cmd.n));
        let mut c = self.command(clock.as_deref());
        c.args(&cmd.args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        cmd.start = self.now();
        let spawned = Instant::now();
        let mut child = c.spawn().expect("esbackup starts");
        let mut sent_kill = false;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for esbackup") {
                break status;
            }
            if let Some(k) = cmd.kill_after {
                if !sent_kill && spawned.elapsed() >= k {
                    child.kill().ok();
                    sent_kill = true;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        cmd.end = self.now();
        cmd.killed = sent_kill && status.signal() == Some(9);
        cmd.code = status.code();
        cmd.stdout = std::fs::read_to_string(&out).unwrap_or_default();
        cmd.stderr = std::fs::read_to_string(&err).unwrap_or_default();
    }

    /// Runs one command now, alone (the oracle's own commands).
    fn run_now(&self, op: Op, db: &Path, dest: Option<&Path>, dir: &Path, n: usize) -> Cmd {
        let args = self.args(&op, db, dest);
        let mut cmd = Cmd::new(n, op, args, dest.map(Path::to_path_buf), Duration::ZERO);
        self.run(&mut cmd, dir);
        cmd
    }
}

// ---------------------------------------------------------------------------------------------
// The oracle's knowledge
// ---------------------------------------------------------------------------------------------

/// The database files of one state (shared with the previous state where unchanged).
type Snapshot = BTreeMap<String, Arc<Vec<u8>>>;

/// A backup that ran, whatever its outcome.
struct BackupRec {
    round: usize,
    start: f64,
    end: f64,
    ok: bool,
    label: String,
}

/// A point the oracle has seen (in a backup's output or a listing).
struct PointInfo {
    /// The writer checkpoint of the state it must restore to.
    writer: i64,
    /// It was not written before this: its backup's start, or, when its backup is not known
    /// (a killed or failed one), the start of the first backup of its state's round.
    since: f64,
    /// The backup that exited 0 and named it (index into `History::backups`).
    origin: Option<usize>,
}

#[derive(Clone, Debug)]
struct Listed {
    id: String,
    writer: i64,
}

fn parse_list(stdout: &str) -> Option<Vec<Listed>> {
    let v: serde_json::Value = serde_json::from_str(stdout).ok()?;
    v.as_array()?
        .iter()
        .map(|p| {
            Some(Listed {
                id: p["id"].as_str()?.to_string(),
                writer: p["writer"].as_i64()?,
            })
        })
        .collect()
}

/// The ids a `forget --json` says it forgot.
fn forgotten_by(c: &Cmd) -> Vec<String> {
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    };
    c.json()
        .map(|j| strings(&j["forgotten"]))
        .unwrap_or_default()
}

/// The points a `verify --json` found damaged, and a shortened account of their problems.
fn verify_damage(stdout: &str) -> (Vec<String>, String) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(stdout) else {
        return (Vec::new(), String::new());
    };
    let mut ids = Vec::new();
    let mut all = Vec::new();
    for p in v["points"].as_array().into_iter().flatten() {
        let id = p["id"].as_str().unwrap_or("?").to_string();
        let problems = p["problems"].as_array().cloned().unwrap_or_default();
        if !problems.is_empty() {
            ids.push(id.clone());
        }
        all.extend(
            problems
                .iter()
                .filter_map(|m| m.as_str().map(|m| format!("point {id}: {m}"))),
        );
    }
    let shown: Vec<String> = all
        .iter()
        .take(3)
        .map(|m| m.chars().take(200).collect())
        .collect();
    (
        ids,
        format!("{} problem(s): {}", all.len(), shown.join(" | ")),
    )
}

/// The point a failed restore names as damaged ("restore point ID cannot be restored").
fn unrestorable_point(stderr: &str) -> Option<String> {
    let rest = stderr.split("restore point ").nth(1)?;
    let (id, tail) = rest.split_once(' ')?;
    tail.starts_with("cannot be restored")
        .then(|| id.to_string())
}

fn read_writer(db: &Path) -> Option<i64> {
    let b = std::fs::read(db.join("writer.chk")).ok()?;
    Some(i64::from_le_bytes(b.try_into().ok()?))
}

/// What differs between a restored database and the state it should be (None: equal).
fn differences(restored: &Path, want: &Snapshot) -> Option<String> {
    let got = database_files(restored);
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let differ: Vec<&String> = want
        .iter()
        .filter(|(k, v)| got.get(*k).is_some_and(|g| g != v.as_ref()))
        .map(|(k, _)| k)
        .collect();
    let truncate = std::fs::read(restored.join("truncate.chk")).ok();
    let chaser = std::fs::read(restored.join("chaser.chk")).ok();
    let mut what = Vec::new();
    if !missing.is_empty() {
        what.push(format!("missing {missing:?}"));
    }
    if !extra.is_empty() {
        what.push(format!("extra {extra:?}"));
    }
    if !differ.is_empty() {
        what.push(format!("different {differ:?}"));
    }
    if truncate.is_none() || truncate != chaser {
        what.push("truncate.chk is not chaser.chk".into());
    }
    (!what.is_empty()).then(|| what.join("; "))
}

/// What a problem is, for the counts in the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Why {
    /// A listed point does not restore, or `verify` finds it damaged.
    Unrestorable,
    /// A restore gave other bytes than those of the state it names.
    WrongBytes,
    /// The newest listed point is not that of the last backup that exited 0.
    NotNewest,
    /// A restore of the newest point gave another state than the last backup's.
    WrongLatest,
    /// A forget removed a point that its `--keep-last` keeps.
    OverForgotten,
    /// A point is gone although no forget could have removed it.
    Vanished,
    /// A command that exited 0 said something untrue.
    Untrue,
    /// A command failed although nothing excuses it.
    Failed,
    /// A listed point has a state the database never had.
    UnknownState,
}

impl Why {
    fn name(self) -> &'static str {
        match self {
            Why::Unrestorable => "unrestorable",
            Why::WrongBytes => "wrong-bytes",
            Why::NotNewest => "not-newest",
            Why::WrongLatest => "wrong-latest",
            Why::OverForgotten => "over-forgotten",
            Why::Vanished => "vanished",
            Why::Untrue => "untrue",
            Why::Failed => "failed",
            Why::UnknownState => "unknown-state",
        }
    }
}

struct Problem {
    round: usize,
    why: Why,
    what: String,
    /// The last round that saw it again (a damaged point stays damaged).
    again: Option<usize>,
}

#[derive(Default)]
struct Stats {
    rounds: usize,
    commands: usize,
    kills: usize,
    clock_steps: usize,
    locked: usize,
    failed: usize,
    backups_ok: usize,
    forgets_ok: usize,
    oracle_restores: usize,
}

struct History {
    name: &'static str,
    seed: u64,
    rng: Rng,
    runner: Runner,
    clock_steps: &'static [&'static str],
    work: PathBuf,
    db: PathBuf,
    node: Node,
    /// Every state of the database by its writer checkpoint (old ones may be dropped)...
    snapshots: HashMap<i64, Snapshot>,
    /// ...and the round it was the state in.
    writer_round: HashMap<i64, usize>,
    round_writer: Vec<i64>,
    backups: Vec<BackupRec>,
    points: HashMap<String, PointInfo>,
    /// The listing after the previous round.
    listed: Vec<Listed>,
    next_n: usize,
    stats: Stats,
    problems: Vec<Problem>,
    /// Problems counted once (a damaged point, a wrong newest point), by key: their index.
    seen: HashMap<String, usize>,
    /// Total seconds and number of the runs of each command that were not killed.
    durations: HashMap<String, (f64, u32)>,
    /// What ran in each round, printed for the rounds where a problem was found.
    traces: Vec<Vec<String>>,
    /// Failures that are no problem of their own (a backup or forget failing otherwise than on
    /// the lock), shown with the summary.
    notes: Vec<String>,
}

impl History {
    /// Records a problem; one with a key already recorded only notes the round seeing it again.
    fn problem(&mut self, round: usize, why: Why, key: Option<String>, what: String) {
        if let Some(&i) = key.as_ref().and_then(|k| self.seen.get(k)) {
            self.problems[i].again = Some(round);
            return;
        }
        if let Some(k) = key {
            self.seen.insert(k, self.problems.len());
        }
        self.problems.push(Problem {
            round,
            why,
            what,
            again: None,
        });
    }

    /// Records damaged points (one problem for those not yet known damaged).
    fn damaged(&mut self, round: usize, ids: &[String], what: String) {
        let new: Vec<&String> = ids
            .iter()
            .filter(|id| !self.seen.contains_key(&format!("restore:{id}")))
            .collect();
        if new.is_empty() {
            for id in ids {
                let i = self.seen[&format!("restore:{id}")];
                self.problems[i].again = Some(round);
            }
            return;
        }
        let i = self.problems.len();
        for id in new {
            self.seen.insert(format!("restore:{id}"), i);
        }
        self.problem(round, Why::Unrestorable, None, what);
    }

    fn note(&mut self, round: usize, what: String) {
        self.notes.push(format!("round {round}: {what}"));
    }

    fn n(&mut self) -> usize {
        self.next_n += 1;
        self.next_n
    }

    fn round_of(&self, writer: i64) -> String {
        match self.writer_round.get(&writer) {
            Some(r) => format!("round {r}"),
            None => format!("no round (writer {writer})"),
        }
    }

    fn backup_label(&self, i: usize) -> String {
        format!(
            "{} (round {})",
            self.backups[i].label, self.backups[i].round
        )
    }

    /// Changes the database: always at least one event, so that its writer checkpoint is new.
    fn mutate(&mut self) {
        if self.rng.chance(0.3) {
            for _ in 0..self.rng.range(20, 80) {
                self.node.step().unwrap(); // scavenges, chunk and index merges, side files
            }
        }
        if self.rng.chance(0.3) {
            let n = self.rng.range(200, 600) as usize;
            self.node.append(n).unwrap(); // completes a chunk or two
        }
        let n = self.rng.range(1, 30) as usize;
        self.node.append(n).unwrap();
        self.node.settle().unwrap();
    }

    /// Copies the database as it is now: the state of this round.
    fn snapshot(&mut self, round: usize) -> i64 {
        let writer = read_writer(&self.db).expect("writer.chk");
        assert!(
            !self.writer_round.contains_key(&writer),
            "round {round}: the database's writer checkpoint {writer} is not new"
        );
        let previous = self.round_writer.last().and_then(|w| self.snapshots.get(w));
        let snap: Snapshot = database_files(&self.db)
            .into_iter()
            .map(|(k, v)| {
                let shared = previous
                    .and_then(|p| p.get(&k))
                    .filter(|p| p.as_slice() == v.as_slice())
                    .cloned();
                (k, shared.unwrap_or_else(|| Arc::new(v)))
            })
            .collect();
        self.snapshots.insert(writer, snap);
        self.writer_round.insert(writer, round);
        self.round_writer.push(writer);
        writer
    }

    fn random_op(&mut self) -> Op {
        let listed: Vec<String> = self.listed.iter().map(|l| l.id.clone()).collect();
        let rng = &mut self.rng;
        let some_point = |rng: &mut Rng, p: f64| {
            (rng.chance(p) && !listed.is_empty()).then(|| rng.pick(&listed).clone())
        };
        match rng.range(0, 99) {
            0..=39 => Op::Backup {
                full: rng.chance(0.2),
                clock: None,
            },
            40..=59 => Op::Forget {
                keep_last: rng.range(1, 4) as u32,
                daily: rng.chance(0.3).then(|| rng.range(1, 3) as u32),
                hourly: rng.chance(0.3).then(|| rng.range(1, 3) as u32),
            },
            60..=74 => Op::Restore {
                point: some_point(rng, 0.7),
            },
            75..=87 => Op::Verify {
                read_data: rng.chance(0.4),
                point: some_point(rng, 0.3),
            },
            _ => Op::List,
        }
    }

    /// The round's commands: round 0 is one backup; then 1–5 random commands 0–40 ms apart,
    /// sometimes one backup with its clock stepped, sometimes one command killed.
    fn plan(&mut self, round: usize, dir: &Path) -> Vec<Cmd> {
        let mut ops = Vec::new();
        if round == 0 {
            ops.push(Op::Backup {
                full: false,
                clock: None,
            });
        } else {
            for _ in 0..self.rng.range(1, 5) {
                let op = self.random_op();
                ops.push(op);
            }
            let clock = matches!(
                self.runner.faketime,
                Faketime::Preload(_) | Faketime::Wrapper
            );
            if clock && self.rng.chance(0.3) {
                let backups: Vec<usize> = (0..ops.len())
                    .filter(|&i| matches!(ops[i], Op::Backup { .. }))
                    .collect();
                if !backups.is_empty() {
                    let i = *self.rng.pick(&backups);
                    let step = self.rng.pick(self.clock_steps).to_string();
                    if let Op::Backup { clock, .. } = &mut ops[i] {
                        *clock = Some(step);
                    }
                    self.stats.clock_steps += 1;
                }
            }
        }
        let mut cmds = Vec::new();
        for op in ops {
            let n = self.n();
            let dest = matches!(op, Op::Restore { .. }).then(|| dir.join(format!("r{n}")));
            let offset = match round {
                0 => 0,
                _ => self.rng.range(0, 40),
            };
            let args = self.runner.args(&op, &self.db, dest.as_deref());
            cmds.push(Cmd::new(n, op, args, dest, Duration::from_millis(offset)));
        }
        if round > 0 && self.rng.chance(0.35) {
            let i = self.rng.range(0, cmds.len() as u64 - 1) as usize;
            let wrapped = matches!(
                (&cmds[i].op, &self.runner.faketime),
                (Op::Backup { clock: Some(_), .. }, Faketime::Wrapper)
            );
            // At a random moment of its run: up to 1.2 times the mean run of its command.
            let (sum, n) = self
                .durations
                .get(&cmds[i].args[0])
                .copied()
                .unwrap_or((0.3, 1));
            let ms = (sum / n as f64 * 1200.0) as u64;
            let after = Duration::from_millis(self.rng.range(0, ms.max(5)));
            if !wrapped {
                cmds[i].kill_after = Some(after);
            }
        }
        cmds
    }

    /// Backups that may have written the newest point as seen at some moment of `[from, to]`:
    /// begun before `to`, and not followed by a backup that exited 0 having begun after this
    /// one ended and ended before `from`. A killed or failed backup may have stored its point.
    fn latest_candidates(&self, from: f64, to: f64) -> Vec<usize> {
        (0..self.backups.len())
            .filter(|&i| {
                let b = &self.backups[i];
                b.start < to
                    && !self
                        .backups
                        .iter()
                        .any(|s| s.ok && s.start > b.end && s.end < from)
            })
            .collect()
    }

    /// The writer checkpoints a restore of the newest point may give when run in `[from, to]`.
    fn latest_writers(&self, from: f64, to: f64) -> BTreeSet<i64> {
        self.latest_candidates(from, to)
            .into_iter()
            .map(|i| self.round_writer[self.backups[i].round])
            .collect()
    }

    /// How many points may be newer than `p` when a forget that ended at `end` read the
    /// location: those of the backups (any outcome) that may have finished after `p`'s was
    /// written and began before the forget ended.
    fn possibly_newer(&self, p: &PointInfo, end: f64) -> usize {
        (0..self.backups.len())
            .filter(|&i| Some(i) != p.origin)
            .filter(|&i| self.backups[i].end > p.since && self.backups[i].start < end)
            .count()
    }

    /// Registers a listed point not seen before (of a killed or failed backup). False when it
    /// matches no state of the database in which a backup ran.
    fn learn(&mut self, round: usize, l: &Listed, whence: &str) -> bool {
        if self.points.contains_key(&l.id) {
            return true;
        }
        let since = self.writer_round.get(&l.writer).map(|&r| {
            self.backups
                .iter()
                .filter(|b| b.round == r)
                .map(|b| b.start)
                .fold(f64::INFINITY, f64::min)
        });
        match since {
            Some(since) if since.is_finite() => {
                self.points.insert(
                    l.id.clone(),
                    PointInfo {
                        writer: l.writer,
                        since,
                        origin: None,
                    },
                );
                true
            }
            _ => {
                let what = format!(
                    "{whence} lists point {} with writer {}: no backup ran in a round with that state",
                    l.id, l.writer
                );
                self.problem(
                    round,
                    Why::UnknownState,
                    Some(format!("unknown:{}", l.id)),
                    what,
                );
                false
            }
        }
    }

    /// Restores `point` (or the newest) alone into a fresh folder.
    fn restore_now(&mut self, point: Option<&str>, dir: &Path) -> Cmd {
        let n = self.n();
        let dest = dir.join(format!("check{n}"));
        let op = Op::Restore {
            point: point.map(str::to_string),
        };
        self.stats.oracle_restores += 1;
        self.runner.run_now(op, &self.db, Some(&dest), dir, n)
    }

    /// Compares a restore with the state of writer `w` and removes it.
    fn judge_bytes(&mut self, round: usize, key: String, what: &str, dest: &Path, w: i64) {
        match self.snapshots.get(&w) {
            None if self.writer_round.contains_key(&w) => {
                let why =
                    format!("{what}: the copy of writer {w}'s state was dropped: not compared");
                self.note(round, why);
            }
            None => {
                let why = format!("{what} restored writer {w}: the database never had that state");
                self.problem(round, Why::UnknownState, Some(key), why);
            }
            Some(snap) => {
                if let Some(diff) = differences(dest, snap) {
                    let why = format!(
                        "{what}: the restore differs from the database of {}: {diff}",
                        self.round_of(w)
                    );
                    self.problem(round, Why::WrongBytes, Some(key), why);
                }
            }
        }
        std::fs::remove_dir_all(dest).ok();
    }

    /// One round: change the database, run the commands, judge. False when the oracle cannot
    /// go on (the location does not list with nothing running).
    fn round(&mut self, round: usize) -> bool {
        if round > 0 {
            self.mutate();
        }
        let writer = self.snapshot(round);
        let dir = self.work.join(format!("round-{round}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmds = self.plan(round, &dir);
        {
            let (runner, dir) = (&self.runner, dir.as_path());
            std::thread::scope(|s| {
                for cmd in cmds.iter_mut() {
                    s.spawn(move || runner.run(cmd, dir));
                }
            });
        }
        self.count(&cmds);
        self.traces.push(cmds.iter().map(Cmd::trace).collect());
        let round_points = self.record_backups(round, writer, &cmds);

        let n = self.n();
        let listing = self.runner.run_now(Op::List, &self.db, None, &dir, n);
        let Some(listed) = listing.ok().then(|| parse_list(&listing.stdout)).flatten() else {
            let what = format!(
                "list with nothing running: {}: {}",
                listing.outcome(),
                listing.error_line()
            );
            self.problem(round, Why::Failed, None, what);
            return false;
        };
        for l in &listed {
            match self.points.get(&l.id).map(|p| p.writer) {
                Some(w) if w != l.writer => {
                    let what = format!(
                        "list gives point {} writer {}; its backup captured writer {w}",
                        l.id, l.writer
                    );
                    self.problem(round, Why::Untrue, Some(format!("writer:{}", l.id)), what);
                }
                Some(_) => {}
                None => {
                    self.learn(round, l, "list with nothing running");
                }
            }
        }
        let forgotten_meanwhile = self.judge_forgetting(round, &cmds, &listed, round_points);
        self.judge_concurrent(round, &cmds, &listed, forgotten_meanwhile);
        self.judge_newest(round, &listed);
        self.judge_latest_restore(round, &listed, &dir);
        self.judge_every_point(round, &listed, &dir);
        self.listed = listed;
        self.drop_old_snapshots(round);
        std::fs::remove_dir_all(&dir).ok();
        true
    }

    fn count(&mut self, cmds: &[Cmd]) {
        self.stats.rounds += 1;
        self.stats.commands += cmds.len();
        for c in cmds {
            if !c.killed {
                let d = self.durations.entry(c.args[0].clone()).or_insert((0.0, 0));
                d.0 += c.end - c.start;
                d.1 += 1;
            }
            if c.killed {
                self.stats.kills += 1;
            } else if c.locked() {
                self.stats.locked += 1;
            } else if !c.ok() {
                self.stats.failed += 1;
            }
        }
    }

    /// Records every backup; one that exited 0 must name its point. Returns those points.
    fn record_backups(&mut self, round: usize, writer: i64, cmds: &[Cmd]) -> Vec<String> {
        let mut named = Vec::new();
        for c in cmds.iter().filter(|c| matches!(c.op, Op::Backup { .. })) {
            self.backups.push(BackupRec {
                round,
                start: c.start,
                end: c.end,
                ok: c.ok(),
                label: c.label(),
            });
            let origin = Some(self.backups.len() - 1);
            if !c.ok() {
                if !c.killed && !c.locked() {
                    let what = format!("{}: {}: {}", c.label(), c.outcome(), c.error_line());
                    self.note(round, what);
                }
                continue;
            }
            self.stats.backups_ok += 1;
            match c
                .json()
                .and_then(|j| j["point"].as_str().map(str::to_string))
            {
                Some(id) => {
                    let since = c.start;
                    let info = PointInfo {
                        writer,
                        since,
                        origin,
                    };
                    self.points.insert(id.clone(), info);
                    named.push(id);
                }
                None => {
                    let what = format!("{} exited 0 but named no point: {}", c.label(), c.stdout);
                    self.problem(round, Why::Untrue, None, what);
                }
            }
        }
        named
    }

    /// Points gone since the last round must have been removable by a forget of this round,
    /// and a forget that exited 0 must have done what it said, within its policy. Returns
    /// whether any point was forgotten.
    fn judge_forgetting(
        &mut self,
        round: usize,
        cmds: &[Cmd],
        listed: &[Listed],
        round_points: Vec<String>,
    ) -> bool {
        let listed_ids: BTreeSet<&String> = listed.iter().map(|l| &l.id).collect();
        // Points that were there before the round, or appeared during it.
        let mut before: BTreeSet<String> = self.listed.iter().map(|l| l.id.clone()).collect();
        before.extend(round_points);
        for c in cmds.iter().filter(|c| matches!(c.op, Op::List) && c.ok()) {
            for l in parse_list(&c.stdout).unwrap_or_default() {
                if self.learn(round, &l, &c.label()) {
                    before.insert(l.id);
                }
            }
        }
        let forgets: Vec<&Cmd> = cmds
            .iter()
            .filter(|c| matches!(c.op, Op::Forget { .. }))
            .collect();
        let keep_last = |c: &Cmd| match c.op {
            Op::Forget { keep_last, .. } => keep_last as usize,
            _ => unreachable!(),
        };
        let vanished: Vec<&String> = before
            .iter()
            .filter(|id| !listed_ids.contains(id))
            .collect();
        let mut found = Vec::new();
        for &id in &vanished {
            let Some(p) = self.points.get(id) else {
                continue;
            };
            // A forget that says it forgot it (its policy is judged below), or one that may
            // have (killed, or failed otherwise than on the lock) and whose policy allowed it.
            let removable = forgets.iter().any(|f| {
                f.end > p.since
                    && if f.ok() {
                        forgotten_by(f).contains(id)
                    } else {
                        !f.locked() && self.possibly_newer(p, f.end) >= keep_last(f)
                    }
            });
            if !removable {
                let whose = match p.origin {
                    Some(i) => format!("the point of {}", self.backup_label(i)),
                    None => format!("a point of {}'s state", self.round_of(p.writer)),
                };
                let fs: Vec<String> = forgets
                    .iter()
                    .map(|f| format!("{} {}", f.label(), f.outcome()))
                    .collect();
                found.push((
                    Why::Vanished,
                    format!("point {id}, {whose}, is gone and no forget could remove it (forgets this round: {fs:?})"),
                ));
            }
        }
        let mut notes = Vec::new();
        for f in &forgets {
            if !f.ok() {
                if !f.killed && !f.locked() {
                    notes.push(format!(
                        "{}: {}: {}",
                        f.label(),
                        f.outcome(),
                        f.error_line()
                    ));
                }
                continue;
            }
            self.stats.forgets_ok += 1;
            for id in forgotten_by(f) {
                if listed_ids.contains(&id) {
                    let what = format!("{} says it forgot {id}, which is still listed", f.label());
                    found.push((Why::Untrue, what));
                }
                let Some(p) = self.points.get(&id) else {
                    continue;
                };
                let newer = self.possibly_newer(p, f.end);
                if newer < keep_last(f) {
                    let whose = match p.origin {
                        Some(i) => format!(", the point of {}", self.backup_label(i)),
                        None => String::new(),
                    };
                    found.push((
                        Why::OverForgotten,
                        format!(
                            "{} forgot {id}{whose}, but at most {newer} point(s) can be newer than it",
                            f.label()
                        ),
                    ));
                }
            }
        }
        for (why, what) in found {
            self.problem(round, why, None, what);
        }
        for n in notes {
            self.note(round, n);
        }
        !vanished.is_empty()
    }

    /// Concurrent restores must have restored the right bytes; a failed restore, verify or
    /// list is accepted only if a point was forgotten meanwhile (its point, with `--point`).
    fn judge_concurrent(&mut self, round: usize, cmds: &[Cmd], listed: &[Listed], forgotten: bool) {
        let still_listed = |id: &str| listed.iter().any(|l| l.id == id);
        for c in cmds {
            match &c.op {
                Op::Restore { point } if c.ok() => {
                    let dest = c.dest.clone().unwrap();
                    let Some(w) = read_writer(&dest) else {
                        let what = format!("{} exited 0 but restored no writer.chk", c.label());
                        self.problem(round, Why::Untrue, None, what);
                        continue;
                    };
                    let restored = c
                        .json()
                        .and_then(|j| j["point"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    let (expected, key) = match point {
                        Some(id) => (
                            self.points.get(id).map(|p| p.writer).into_iter().collect(),
                            format!("#{}", c.n),
                        ),
                        None => (
                            self.latest_writers(c.start, c.end),
                            format!("latest:{restored}"),
                        ),
                    };
                    if expected.contains(&w) {
                        self.judge_bytes(round, format!("#{}", c.n), &c.label(), &dest, w);
                        continue;
                    }
                    let rounds: Vec<String> = expected.iter().map(|&w| self.round_of(w)).collect();
                    let what = format!(
                        "{} restored point {restored}, the state of {}; expected that of {rounds:?}{}",
                        c.label(),
                        self.round_of(w),
                        if point.is_none() {
                            " (the last backup that exited 0, or one that may have finished after it)"
                        } else {
                            ""
                        }
                    );
                    let why = if point.is_none() {
                        Why::WrongLatest
                    } else {
                        Why::WrongBytes
                    };
                    self.problem(round, why, Some(key), what);
                    std::fs::remove_dir_all(&dest).ok();
                }
                Op::Restore { point } | Op::Verify { point, .. } if !c.ok() && !c.killed => {
                    let is_verify = matches!(c.op, Op::Verify { .. });
                    let accepted = match point {
                        Some(id) => !still_listed(id),
                        None => is_verify && forgotten,
                    };
                    if accepted {
                        continue;
                    }
                    let why = match point {
                        Some(id) => format!("point {id} is still listed"),
                        None if is_verify => "no point was forgotten meanwhile".into(),
                        None => "the newest point is never forgotten".into(),
                    };
                    let (damaged, detail) = match is_verify {
                        true => verify_damage(&c.stdout),
                        false => (
                            point
                                .clone()
                                .or_else(|| unrestorable_point(&c.stderr))
                                .into_iter()
                                .collect(),
                            String::new(),
                        ),
                    };
                    let what = format!(
                        "{} failed ({}) although {why}: {} {detail}",
                        c.label(),
                        c.outcome(),
                        c.error_line()
                    );
                    match damaged.is_empty() {
                        false => self.damaged(round, &damaged, what),
                        true => self.problem(round, Why::Failed, None, what),
                    }
                }
                Op::List if !c.ok() && !c.killed && !forgotten => {
                    let what = format!(
                        "{} failed ({}) although no point was forgotten meanwhile: {}",
                        c.label(),
                        c.outcome(),
                        c.error_line()
                    );
                    self.problem(round, Why::Failed, None, what);
                }
                _ => {}
            }
        }
    }

    /// The newest listed point is that of the last backup that exited 0 (or of a killed or
    /// failed one that may have finished after it).
    fn judge_newest(&mut self, round: usize, listed: &[Listed]) {
        let Some(newest) = listed.last() else {
            return;
        };
        let now = self.runner.now();
        let candidates = self.latest_candidates(now, now);
        let origin = self.points.get(&newest.id).and_then(|p| p.origin);
        let fine = match origin {
            Some(i) => candidates.contains(&i),
            None => candidates.iter().any(|&i| {
                !self.backups[i].ok && self.round_writer[self.backups[i].round] == newest.writer
            }),
        };
        if fine {
            return;
        }
        let last: Vec<String> = candidates
            .iter()
            .filter(|&&i| self.backups[i].ok)
            .map(|&i| self.backup_label(i))
            .collect();
        let whose = match origin {
            Some(i) => format!("that of {}", self.backup_label(i)),
            None => format!("of {}'s state", self.round_of(newest.writer)),
        };
        let what = format!(
            "the newest listed point {} is {whose}, not that of the last backup that exited 0: {last:?}",
            newest.id
        );
        self.problem(
            round,
            Why::NotNewest,
            Some(format!("newest:{}", newest.id)),
            what,
        );
    }

    /// A plain restore, with nothing running, gives the state of the last backup.
    fn judge_latest_restore(&mut self, round: usize, listed: &[Listed], dir: &Path) {
        let Some(newest) = listed.last() else {
            return;
        };
        let from = self.runner.now();
        let c = self.restore_now(None, dir);
        let dest = c.dest.clone().unwrap();
        let Some(w) = read_writer(&dest).filter(|_| c.ok()) else {
            let what = format!(
                "restore (of the newest point, nothing running) failed ({}): {}",
                c.outcome(),
                c.error_line()
            );
            self.damaged(round, std::slice::from_ref(&newest.id), what);
            return;
        };
        let restored = c
            .json()
            .and_then(|j| j["point"].as_str().map(str::to_string))
            .unwrap_or_default();
        let expected = self.latest_writers(from, self.runner.now());
        if expected.contains(&w) {
            let what = "restore (of the newest point, nothing running)";
            self.judge_bytes(round, format!("latest-bytes:{restored}"), what, &dest, w);
            return;
        }
        let rounds: Vec<String> = expected.iter().map(|&w| self.round_of(w)).collect();
        let what = format!(
            "restore (of the newest point, nothing running) gave point {restored}, the state of {}, not that of the last backup that exited 0 ({rounds:?})",
            self.round_of(w)
        );
        self.problem(
            round,
            Why::WrongLatest,
            Some(format!("latest:{restored}")),
            what,
        );
        std::fs::remove_dir_all(&dest).ok();
    }

    /// Every listed point restores, byte for byte, to the state its backup saw.
    fn judge_every_point(&mut self, round: usize, listed: &[Listed], dir: &Path) {
        for l in listed {
            let what = format!("restore --point {} (nothing running)", l.id);
            let c = self.restore_now(Some(&l.id), dir);
            let dest = c.dest.clone().unwrap();
            match read_writer(&dest).filter(|_| c.ok()) {
                Some(w) => {
                    if w != l.writer {
                        let why = format!("{what} restored writer {w}; the list says {}", l.writer);
                        self.problem(round, Why::WrongBytes, Some(format!("w:{}", l.id)), why);
                    }
                    self.judge_bytes(round, format!("bytes:{}", l.id), &what, &dest, l.writer);
                }
                None => {
                    let why = format!("{what} failed ({}): {}", c.outcome(), c.error_line());
                    self.damaged(round, std::slice::from_ref(&l.id), why);
                }
            }
        }
    }

    /// Keeps memory bounded in long soaks: once more than 48 copies are held, those of states
    /// no listed point has and more than 8 rounds old go.
    fn drop_old_snapshots(&mut self, round: usize) {
        if self.snapshots.len() <= 48 {
            return;
        }
        let keep: BTreeSet<i64> = self.listed.iter().map(|l| l.writer).collect();
        let recent = round.saturating_sub(8);
        let writer_round = &self.writer_round;
        self.snapshots
            .retain(|w, _| keep.contains(w) || writer_round[w] >= recent);
    }

    /// At the end, `verify --read-data` passes.
    fn finish(&mut self) {
        let round = self.stats.rounds;
        let n = self.n();
        let dir = self.work.join("final");
        std::fs::create_dir_all(&dir).unwrap();
        let op = Op::Verify {
            read_data: true,
            point: None,
        };
        let v = self.runner.run_now(op, &self.db, None, &dir, n);
        if !v.ok() {
            let (damaged, detail) = verify_damage(&v.stdout);
            let what = format!(
                "verify --read-data at the end: {}: {} {detail}",
                v.outcome(),
                v.error_line()
            );
            match damaged.is_empty() {
                false => self.damaged(round, &damaged, what),
                true => self.problem(round, Why::Failed, None, what),
            }
        }
    }

    fn summary(&self) -> String {
        let s = &self.stats;
        format!(
            "history: rounds={} commands={} kills={} clock_steps={} problems={} seed={} target={}",
            s.rounds,
            s.commands,
            s.kills,
            s.clock_steps,
            self.problems.len(),
            self.seed,
            self.name
        )
    }

    /// Each problem on a line, and the counts by kind.
    fn report(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .problems
            .iter()
            .map(|p| {
                let again = match p.again {
                    Some(r) if r != p.round => format!(" [still so in round {r}]"),
                    _ => String::new(),
                };
                format!("round {}: {}: {}{again}", p.round, p.why.name(), p.what)
            })
            .collect();
        let mut by_kind: BTreeMap<Why, usize> = BTreeMap::new();
        for p in &self.problems {
            *by_kind.entry(p.why).or_default() += 1;
        }
        if !by_kind.is_empty() {
            let counts: Vec<String> = by_kind
                .iter()
                .map(|(k, n)| format!("{}={n}", k.name()))
                .collect();
            lines.push(format!("problems by kind: {}", counts.join(" ")));
        }
        lines
    }
}

/// Runs the history against `target` (`env` for the commands) and fails on any problem.
fn run_history(
    name: &'static str,
    target: String,
    env: Vec<(String, String)>,
    clock_steps: &'static [&'static str],
) {
    let settings = Settings::from_env();
    let faketime = match settings.clock_steps {
        true => find_faketime(),
        false => {
            println!("history ({name}): ESBACKUP_HISTORY_CLOCK_STEPS=0: no clock steps");
            Faketime::Off
        }
    };
    match &faketime {
        Faketime::Absent => println!(
            "history ({name}): faketime is not on PATH: no clock steps (apt-get install faketime)"
        ),
        Faketime::Wrapper => println!(
            "history ({name}): libfaketime not found beside faketime: clock-stepped backups run through the wrapper and are never killed"
        ),
        Faketime::Preload(_) | Faketime::Off => {}
    }
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("db");
    let mut node = Node::create(&db, sim_config(settings.seed)).unwrap();
    node.append(600).unwrap();
    for _ in 0..100 {
        node.step().unwrap();
    }
    node.settle().unwrap();
    let runner = Runner {
        target,
        env,
        faketime,
        epoch: Instant::now(),
        lock_wait_backup: help_mentions("backup", "--lock-wait"),
        lock_wait_forget: help_mentions("forget", "--lock-wait"),
    };
    if runner.lock_wait_backup || runner.lock_wait_forget {
        println!(
            "history ({name}): --lock-wait 120s (backup: {}, forget: {})",
            runner.lock_wait_backup, runner.lock_wait_forget
        );
    }
    let mut h = History {
        name,
        seed: settings.seed,
        rng: Rng::new(settings.seed),
        runner,
        clock_steps,
        work: work.path().to_path_buf(),
        db,
        node,
        snapshots: HashMap::new(),
        writer_round: HashMap::new(),
        round_writer: Vec::new(),
        backups: Vec::new(),
        points: HashMap::new(),
        listed: Vec::new(),
        next_n: 0,
        stats: Stats::default(),
        problems: Vec::new(),
        seen: HashMap::new(),
        traces: Vec::new(),
        durations: HashMap::new(),
        notes: Vec::new(),
    };
    let started = Instant::now();
    let deadline = settings.secs.map(|s| started + Duration::from_secs(s));
    let mut round = 0;
    let go_on = |round: usize| {
        let rounds_left = match settings.rounds {
            Some(n) => round < n,
            None => true,
        };
        let time_left = match deadline {
            Some(d) => Instant::now() < d,
            None => true,
        };
        rounds_left && time_left
    };
    while go_on(round) && h.round(round) {
        round += 1;
    }
    h.finish();
    let s = &h.stats;
    println!(
        "history ({name}): {:.0}s; {} backups and {} forgets exited 0, {} commands failed on the lock, {} otherwise; {} restores by the oracle",
        started.elapsed().as_secs_f64(),
        s.backups_ok,
        s.forgets_ok,
        s.locked,
        s.failed,
        s.oracle_restores
    );
    for n in &h.notes {
        println!("history ({name}) note: {n}");
    }
    let mut problem_rounds: BTreeSet<usize> = h.problems.iter().map(|p| p.round).collect();
    if settings.trace {
        problem_rounds = (0..h.traces.len()).collect();
    }
    let shown = if settings.trace { usize::MAX } else { 12 };
    for r in problem_rounds.iter().take(shown) {
        if let Some(trace) = h.traces.get(*r) {
            println!("history ({name}) round {r} ran:");
            for line in trace {
                println!("    {line}");
            }
        }
    }
    let report = h.report();
    for line in &report {
        println!("history ({name}) PROBLEM {line}");
    }
    let summary = h.summary();
    println!("{summary}");
    assert!(
        h.problems.is_empty(),
        "the history test on {name} found {} problem(s) (seed {}):\n{}",
        h.problems.len(),
        h.seed,
        report.join("\n")
    );
}

/// Clock steps on a folder target: a day or hours either way.
const FOLDER_STEPS: &[&str] = &["-1d", "-3h", "-1h", "+2h"];
/// On S3 the request signatures carry the time: steps within the servers' allowed skew.
const S3_STEPS: &[&str] = &["-10m", "-5m", "+10m"];

#[test]
fn concurrent_history_on_a_folder_target() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("backup").display().to_string();
    run_history("folder", target, Vec::new(), FOLDER_STEPS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_history_on_garage_s3() {
    if std::env::var("ESBACKUP_GARAGE_IMAGE")
        .unwrap_or_default()
        .is_empty()
    {
        let image = format!(
            "esbackup-garage:{}",
            esbackup_tests::servers::GARAGE_VERSION
        );
        let present = Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", &image])
            .output()
            .is_ok_and(|o| o.status.success());
        if !present {
            println!(
                "history (s3): SKIPPED: no S3 test environment (no Docker daemon or no image {image}): run scripts/test-env.sh, then source /tmp/esbackup-test-env/env"
            );
            return;
        }
    }
    let server = S3Server::start().await;
    let target = server.url("history");
    let env = server.env();
    let outcome =
        tokio::task::spawn_blocking(move || run_history("s3", target, env, S3_STEPS)).await;
    drop(server);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
