//! `esdb-sim`: drive the simulator from the command line (benchmarks, manual tests).
//!
//! ```text
//! esdb-sim create --db DIR [--chunk-size 256M] [--seed N] [--bytes 4M] [--no-scavenge]
//!                 [--payload letters|json|random]     # what events carry (every writing command)
//! esdb-sim append --db DIR --bytes 1M          # append about that much, then settle
//! esdb-sim step   --db DIR --count 1000        # random live-node steps, then settle
//! esdb-sim info   --db DIR                     # checkpoints and files, as JSON
//! esdb-sim live   --db DIR --rate 256K --for 10m   # append at a steady rate, then settle
//! esdb-sim serve  --db DIR [--admin-addr 127.0.0.1:0] [--ca-dir DIR]
//!                 # step live with the node admin API; stops and settles at end of stdin
//! ```
//!
//! A reopened database goes on with the payload of its newest event unless `--payload` says
//! otherwise. Every command that writes leaves the folder quiescent (`Node::settle`): no
//! half-done roll, index job or chunk job, the chaser at the writer, as a cleanly stopped node
//! leaves it. Each prints one JSON object on stdout.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use esbackup_engine::format::checkpoint;
use esdb_sim::layout;
use esdb_sim::{Node, Payload, SimConfig};

#[derive(Parser)]
#[command(
    name = "esdb-sim",
    version,
    about = "Write and grow a simulated EventStoreDB / KurrentDB database folder"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new database (checkpoints, chunk 0, the first epoch, side files), optionally
    /// with some data, and settle it.
    Create(CreateArgs),
    /// Reopen a database (the server's startup work), append events totalling about --bytes
    /// of log, and settle.
    Append(AppendArgs),
    /// Reopen a database, take --count random steps of a live node (appends, rolls, index
    /// work, scavenges unless --no-scavenge, side files…), and settle.
    Step(StepArgs),
    /// Reopen a database, delete a stream as the server does (its tombstone with --hard, else a
    /// soft delete; --metadata JSON writes that metadata instead, e.g. '{"$maxCount":10}'), and
    /// settle. Prints the info with the record written: {"deleted": {"stream", "position",
    /// "next_position", "time"}}.
    Delete(DeleteArgs),
    /// Print the checkpoints and a summary of the files as JSON (reads only).
    Info(InfoArgs),
    /// Reopen a database and step it live with the node admin API (HTTPS, basic auth, a test
    /// CA): scavenges run only when the API starts one. Prints {"url", "ca_file", "user"} as a
    /// first line; at the end of standard input stops, settles and prints the info.
    Serve(ServeArgs),
    /// Reopen a database and append about --rate bytes of log per second (whole
    /// transactions, topped up ten times a second) for --for, then settle.
    Live(LiveArgs),
}

#[derive(Args)]
struct LiveArgs {
    #[command(flatten)]
    common: Common,
    /// Log bytes per second (K/M suffixes are binary: 256K = 262144).
    #[arg(long, value_parser = parse_size)]
    rate: u64,
    /// How long to write (90s, 10m, 1h).
    #[arg(long = "for", value_name = "DURATION", value_parser = esbackup_engine::parse_duration)]
    duration: Duration,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// Where the admin API listens (port 0: a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    admin_addr: std::net::SocketAddr,
    /// Where the test CA certificate (ca.pem) is written [default: a new temporary folder].
    #[arg(long)]
    ca_dir: Option<PathBuf>,
    /// The API's user.
    #[arg(long, default_value = "admin")]
    admin_user: String,
    /// Read the API's password from this environment variable [default: changeit].
    #[arg(long, value_name = "NAME")]
    admin_password_env: Option<String>,
    /// `/info`'s state: leader, follower, readonlyreplica…
    #[arg(long, default_value = "leader")]
    role: String,
}

#[derive(Args)]
struct Common {
    /// The database folder.
    #[arg(long)]
    db: PathBuf,
    /// The index folder [default: <db>/index].
    #[arg(long)]
    index: Option<PathBuf>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Memtable entries per PTable flush (the server's default is 1,000,000; the simulator's
    /// tests use 50 so that PTables appear quickly).
    #[arg(long, default_value_t = 1_000_000)]
    memtable_entries: usize,
    /// No scavenges, merges or raw-replicated chunks in random steps.
    #[arg(long)]
    no_scavenge: bool,
    /// What new events carry: letters (a repeating alphabet), json (realistic events of a
    /// bank and a shop) or random (incompressible bytes) [default: as the newest event in
    /// the log, letters for a new database].
    #[arg(long, value_name = "letters|json|random")]
    payload: Option<Payload>,
}

#[derive(Args)]
struct CreateArgs {
    #[command(flatten)]
    common: Common,
    /// Logical chunk size (K/M/G suffixes are binary: 256M = 268435456).
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    chunk_size: u64,
    /// Append about this much log data after creating (0: just the first epoch).
    #[arg(long, default_value = "0", value_parser = parse_size)]
    bytes: u64,
    /// No kurrent.ddb / kurrent.ddb.wal (KurrentDB's secondary index).
    #[arg(long)]
    no_secondary_index: bool,
    /// No index/stream-existence/ filter files.
    #[arg(long)]
    no_stream_existence: bool,
    /// No index/scavenging/scavenging.db.
    #[arg(long)]
    no_scavenging_db: bool,
}

#[derive(Args)]
struct AppendArgs {
    #[command(flatten)]
    common: Common,
    /// How much log to append (at least this many bytes; records are not split).
    #[arg(long, value_parser = parse_size)]
    bytes: u64,
}

#[derive(Args)]
struct DeleteArgs {
    #[command(flatten)]
    common: Common,
    /// The stream to delete.
    #[arg(long)]
    stream: String,
    /// A hard delete: the stream's tombstone.
    #[arg(long)]
    hard: bool,
    /// Write this JSON as the stream's metadata (`$tb`, `$maxAge`, `$maxCount` truncate it).
    #[arg(long, conflicts_with = "hard")]
    metadata: Option<String>,
}

#[derive(Args)]
struct StepArgs {
    #[command(flatten)]
    common: Common,
    /// How many random steps.
    #[arg(long)]
    count: u64,
}

#[derive(Args)]
struct InfoArgs {
    /// The database folder.
    #[arg(long)]
    db: PathBuf,
    /// The index folder [default: <db>/index].
    #[arg(long)]
    index: Option<PathBuf>,
}

/// `1048576`, `1M`, `1MiB`, `1MB` (binary too), `256m`, `4k`, `2G`, `1T`.
/// A size in bytes, with or without a unit (`1048576`, `64K`, `256M`, `2G`).
fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<esbackup_engine::ByteSize>().map(|size| size.0)
}

impl Common {
    /// The configuration to reopen `db` with: side files as they are on disk (so that a reopen
    /// neither adds nor drops any), the chunk size is read from the chunk files by `Node::open`.
    fn reopen_config(&self) -> SimConfig {
        let index = self.index_dir();
        SimConfig {
            seed: self.seed,
            index_dir: self.index.clone(),
            memtable_entries: self.memtable_entries,
            scavenge: !self.no_scavenge,
            stream_existence: index.join("stream-existence").is_dir(),
            scavenging_db: index.join("scavenging").is_dir(),
            secondary_index: self.db.join("kurrent.ddb").exists(),
            ..SimConfig::default()
        }
    }

    /// Reopens the database; new events carry `--payload`, else what the newest one does.
    fn open(&self) -> std::io::Result<Node> {
        let mut node = Node::open(&self.db, self.reopen_config())?;
        let payload = self.payload.or(node.logged_payload()).unwrap_or_default();
        node.set_payload(payload);
        Ok(node)
    }

    fn index_dir(&self) -> PathBuf {
        self.index.clone().unwrap_or_else(|| self.db.join("index"))
    }
}

/// Appends until the log grew by at least `bytes` (whole transactions).
fn append_bytes(node: &mut Node, bytes: u64) -> std::io::Result<()> {
    let start = node.checkpoints().writer;
    loop {
        let done = (node.checkpoints().writer - start) as u64;
        if done >= bytes {
            return Ok(());
        }
        // About 500 bytes per event at large chunk sizes; a little under, to not overshoot much.
        let events = ((bytes - done) / 1024).clamp(1, 10_000) as usize;
        node.append(events)?;
    }
}

fn info(db: &Path, index: Option<&Path>) -> Result<Value, String> {
    let read = |name: &str| -> Result<Value, String> {
        match checkpoint::read(&db.join(name)) {
            Ok(v) => Ok(json!(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Null),
            Err(e) => Err(format!("{}: {e}", db.join(name).display())),
        }
    };
    let chunks = layout::scan(db).map_err(|e| format!("{}: {e}", db.display()))?;
    let chunk_size = chunks
        .iter()
        .find_map(|f| f.info.as_ref().ok().map(|i| i.header.chunk_size));
    let last = chunks.last().map(|f| f.file_name());
    let index = index.map_or_else(|| db.join("index"), Path::to_path_buf);
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut stack = vec![db.to_path_buf()];
    if !index.starts_with(db) {
        stack.push(index.clone());
    }
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    Ok(json!({
        "db": db.display().to_string(),
        "index": index.display().to_string(),
        "writer": read(checkpoint::WRITER)?,
        "chaser": read(checkpoint::CHASER)?,
        "epoch": read(checkpoint::EPOCH)?,
        "proposal": read(checkpoint::PROPOSAL)?,
        "truncate": read(checkpoint::TRUNCATE)?,
        "chunk_size": chunk_size,
        "chunk_files": chunks.len(),
        "last_chunk_file": last,
        "files": files,
        "bytes": bytes,
    }))
}

fn delete(a: DeleteArgs) -> Result<Value, String> {
    let c = &a.common;
    let failed = |e: std::io::Error| format!("deleting {} in {}: {e}", a.stream, c.db.display());
    let mut node = c.open().map_err(failed)?;
    let written = match (&a.metadata, a.hard) {
        (Some(json), _) => node.set_metadata(&a.stream, json),
        (None, true) => node.hard_delete(&a.stream),
        (None, false) => node.soft_delete(&a.stream),
    }
    .map_err(failed)?;
    node.settle().map_err(failed)?;
    let time =
        esbackup_engine::format::record::ticks_to_time(written.ticks).map(|t| t.to_rfc3339());
    let mut v = info(&c.db, c.index.as_deref())?;
    v["deleted"] = json!({
        "stream": a.stream,
        "position": written.position,
        "next_position": written.next_position,
        "time": time,
    });
    Ok(v)
}

fn run(cli: Cli) -> Result<Value, String> {
    let err = |what: &str, db: &Path| {
        let what = what.to_string();
        let db = db.display().to_string();
        move |e: std::io::Error| format!("{what} {db}: {e}")
    };
    match cli.command {
        Command::Create(a) => {
            let c = &a.common;
            let chunk_size = u32::try_from(a.chunk_size)
                .ok()
                .filter(|&s| s >= 4096)
                .ok_or_else(|| format!("--chunk-size {} must be 4K..4G", a.chunk_size))?;
            let cfg = SimConfig {
                chunk_size,
                seed: c.seed,
                index_dir: c.index.clone(),
                memtable_entries: c.memtable_entries,
                scavenge: !c.no_scavenge,
                stream_existence: !a.no_stream_existence,
                scavenging_db: !a.no_scavenging_db,
                secondary_index: !a.no_secondary_index,
                payload: c.payload.unwrap_or_default(),
                ..SimConfig::default()
            };
            let mut node = Node::create(&c.db, cfg).map_err(err("creating", &c.db))?;
            append_bytes(&mut node, a.bytes).map_err(err("appending to", &c.db))?;
            node.settle().map_err(err("settling", &c.db))?;
            let mut v = info(&c.db, c.index.as_deref())?;
            v["payload"] = json!(node.payload().name());
            Ok(v)
        }
        Command::Append(a) => {
            let c = &a.common;
            let mut node = c.open().map_err(err("opening", &c.db))?;
            let before = node.checkpoints().writer;
            append_bytes(&mut node, a.bytes).map_err(err("appending to", &c.db))?;
            node.settle().map_err(err("settling", &c.db))?;
            let mut v = info(&c.db, c.index.as_deref())?;
            v["writer_before"] = json!(before);
            v["appended"] = json!(node.checkpoints().writer - before);
            v["payload"] = json!(node.payload().name());
            Ok(v)
        }
        Command::Step(a) => {
            let c = &a.common;
            let mut node = c.open().map_err(err("opening", &c.db))?;
            let before = node.checkpoints().writer;
            for _ in 0..a.count {
                node.step().map_err(err("stepping", &c.db))?;
            }
            node.settle().map_err(err("settling", &c.db))?;
            let mut v = info(&c.db, c.index.as_deref())?;
            v["writer_before"] = json!(before);
            v["appended"] = json!(node.checkpoints().writer - before);
            v["steps"] = json!(a.count);
            v["payload"] = json!(node.payload().name());
            Ok(v)
        }
        Command::Delete(a) => delete(a),
        Command::Info(a) => info(&a.db, a.index.as_deref()),
        Command::Serve(a) => serve(a),
        Command::Live(a) => live(a),
    }
}

/// `live`: appends whatever keeps the log at `rate × elapsed` bytes, every 100 ms, for
/// `--for`; then settles.
fn live(a: LiveArgs) -> Result<Value, String> {
    let c = &a.common;
    let err = |what: &str| {
        let what = format!("{what} {}", c.db.display());
        move |e: std::io::Error| format!("{what}: {e}")
    };
    let mut node = c.open().map_err(err("opening"))?;
    let before = node.checkpoints().writer;
    let start = Instant::now();
    loop {
        let elapsed = start.elapsed().min(a.duration);
        let due = (a.rate as f64 * elapsed.as_secs_f64()) as u64;
        let done = (node.checkpoints().writer - before) as u64;
        if due > done {
            append_bytes(&mut node, due - done).map_err(err("appending to"))?;
        }
        if elapsed >= a.duration {
            break;
        }
        let next = Duration::from_millis(100 * (elapsed.as_millis() as u64 / 100 + 1));
        std::thread::sleep(next.min(a.duration).saturating_sub(start.elapsed()));
    }
    node.settle().map_err(err("settling"))?;
    let mut v = info(&c.db, c.index.as_deref())?;
    v["writer_before"] = json!(before);
    v["appended"] = json!(node.checkpoints().writer - before);
    v["seconds"] = json!(start.elapsed().as_secs_f64());
    v["payload"] = json!(node.payload().name());
    Ok(v)
}

/// `serve`: a live node with its admin API until the end of standard input.
fn serve(a: ServeArgs) -> Result<Value, String> {
    use esdb_sim::admin_api::{AdminApi, AdminOptions};
    let c = &a.common;
    let mut node = c
        .open()
        .map_err(|e| format!("opening {}: {e}", c.db.display()))?;
    let control = node.controlled_scavenge();
    let ca_dir = match &a.ca_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("esdb-sim-{}", std::process::id())),
    };
    let mut opts = AdminOptions::new(&ca_dir);
    opts.addr = a.admin_addr;
    opts.user = a.admin_user.clone();
    opts.role = a.role.clone();
    if let Some(name) = &a.admin_password_env {
        opts.password =
            std::env::var(name).map_err(|_| format!("--admin-password-env: {name} is not set"))?;
    }
    let live = esdb_sim::run_live(node);
    let api = AdminApi::start(control, opts).map_err(|e| format!("starting the admin API: {e}"))?;
    println!(
        "{}",
        json!({ "url": api.url(), "ca_file": api.ca_file().display().to_string(), "user": a.admin_user })
    );
    std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink()).ok();
    drop(api);
    let mut node = live
        .stop()
        .map_err(|e| format!("stepping {}: {e}", c.db.display()))?;
    node.settle()
        .map_err(|e| format!("settling {}: {e}", c.db.display()))?;
    info(&c.db, c.index.as_deref())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("esdb-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
