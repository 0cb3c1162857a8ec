//! Every option of every command, defined once: a field of one of the structs below is the
//! option. Its doc comment is the help; `#[arg]` names the flag, the `ESBACKUP_*` environment
//! variable and the default; the field's name is its key in the YAML config file (`config.rs`;
//! `forget`'s `--keep-*` rules are the engine's [`KeepPolicy`], the file's `retention:` block).
//! The README's configuration table is checked against these definitions, defaults included
//! (`settings.rs`).
//!
//! Why clap's derive rather than ripgrep's table of one `Flag` per option: the commands read
//! the options as typed fields, clap already joins the command line with the environment, and
//! the config file joins in as clap's defaults (`config.rs`). So the precedence — command line,
//! then environment, then file, then the default written here — is clap's own, and one value
//! parser reads an option wherever it comes from. A table of flags would re-implement both.
//!
//! Boolean options are plain `bool` fields; [`command`] makes each a toggle with an optional
//! value, so that the command line can turn off what the environment or the file turned on:
//! `--full`, `--full=true`, `--full=false`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Arg, ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use esbackup_engine::{
    HumanDuration, KeepPolicy, LockOptions, DEFAULT_CONCURRENCY, DEFAULT_LOCAL_CONCURRENCY,
    DEFAULT_RESTORE_CONCURRENCY,
};
use esbackup_node::NodeArgs;

/// Consistent backups of a live EventStoreDB / KurrentDB node, kept as restore points.
///
/// Every backup run stores a restore point: a record of exactly which bytes made up the
/// database at that moment. A run stores only what changed (the growing chunk as the bytes
/// appended since the last run), so it is cheap to run every few minutes. `list` shows the
/// points, `restore --at 2h` goes back in time, `forget --keep-daily 7 --prune` applies a
/// retention policy.
///
/// Targets: a folder (/backups/node1 or file:///backups/node1), s3://bucket/prefix,
/// az://container/prefix, gs://bucket/prefix.
///
/// Every option can also come from an ESBACKUP_* environment variable or the YAML config file
/// (--config, or ./esbackup.yaml); the command line wins, then the environment, then the file.
///
/// Exit codes: 0 ok · 1 local I/O or unexpected error · 2 bad usage, config or option value ·
/// 3 the source is not a (consistent) database, or another database than the backup's ·
/// 4 another run holds the lock · 5 the backup is damaged or fails verification · 6 the source
/// changed too much to copy (a scavenge is running) · 7 storage error · 8 no backup at the
/// target · 9 restore folder not empty · 10 wrong folder: the target is a database or holds
/// other files, or target and database folders overlap (nothing was written) · 11 stopped by a
/// signal before completing · 12 the node's admin API (--node-url) failed or refused.
#[derive(Parser, Debug)]
#[command(name = "esbackup", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    /// YAML config file (every option below by its name, plus `storage:` and `retention:`)
    /// [default: ./esbackup.yaml when present].
    #[arg(long, global = true, env = "ESBACKUP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// More log output on stderr (-v info, -vv debug; `run` logs at info by default).
    /// RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log lines on stderr as text or as one JSON object each (for log collectors).
    #[arg(long, global = true, env = "ESBACKUP_LOG_FORMAT", value_name = "FORMAT",
          value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Back up a database folder as a new restore point (only what changed is stored).
    ///
    /// Safe on a live node. Do not run it while a scavenge runs: it stops with exit code 6 and
    /// leaves the backup as it was. With a `retention:` block in the config, the policy is
    /// applied after each successful run. Examples:
    ///   esbackup backup --db /var/lib/eventstore/db --target s3://backups/node1
    ///   esbackup backup --db /var/lib/eventstore/db --target /mnt/backup/node1 --dry-run
    Backup(BackupArgs),
    /// Restore a restore point into an empty folder (the node must be stopped).
    ///
    /// Checks every byte against the point's MD5s and sets truncate.chk to chaser.chk. Without
    /// --point or --at, the newest point. Examples:
    ///   esbackup restore --target s3://backups/node1 --db /var/lib/eventstore/db
    ///   esbackup restore --target s3://backups/node1 --db /tmp/db --at 2026-11-30T06:00:00Z
    ///   esbackup restore --target s3://backups/node1 --db /tmp/db --at 3d
    Restore(RestoreArgs),
    /// Check restore points: every object present; --read-data re-hashes them all.
    ///
    /// Exit code 5 when a point is damaged. Example:
    ///   esbackup verify --target s3://backups/node1 --read-data
    Verify(VerifyArgs),
    /// Show the restore points, oldest first.
    List(ListArgs),
    /// Show the number of points, the oldest and newest, stored bytes and any lock.
    Status(StatusArgs),
    /// Forget restore points a retention policy does not keep; --prune deletes their data.
    ///
    /// restic's rules: a point is kept if any --keep-* rule keeps it; the newest point is
    /// always kept. Without --keep-* options, the config's `retention:` block applies. A
    /// running backup is waited for (--lock-wait); a prune never deletes what a newer point
    /// needs.
    #[command(after_help = "Examples:\n  \
        esbackup forget --target s3://backups/node1 --keep-last 3 --prune\n  \
        esbackup forget --target s3://backups/node1 --keep-daily 7 --keep-weekly 4 --dry-run")]
    Forget(ForgetArgs),
    /// Copy restore points, and exactly the objects they need, to another location.
    ///
    /// Between any two stores (a folder, S3, Azure, GCS). Incremental: what the destination
    /// holds is not sent again, so a second copy sends nothing. Every byte is checked against
    /// its point's MD5 on the way; the destination is a location of its own (list, verify,
    /// restore and forget work on it with the source gone, and its retention is its own). The
    /// copy holds the destination's lock; an interrupted copy leaves the destination's points
    /// whole, and a rerun completes it. Both locations take the same storage settings (the
    /// config's `storage:` block, the clouds' variables). Examples:
    ///   esbackup copy --from /mnt/backup/node1 --to s3://offsite/node1
    ///   esbackup copy --from s3://backups/node1 --to gs://offsite/node1 --dry-run
    ///   esbackup copy --from s3://backups/node1 --to az://offsite/node1 --latest
    Copy(CopyArgs),
    /// Keep backing up: a restore point every --every, the retention policy every
    /// --forget-every, a verify every --verify-every, until SIGTERM or SIGINT.
    ///
    /// One process per node, next to it (a systemd unit, a Kubernetes sidecar). Runs never
    /// overlap; a failed run is retried with backoff and reported (log, metrics) without
    /// ending the process. --metrics-addr serves Prometheus metrics on /metrics and /healthz
    /// (503 once no point was stored for --healthy-within). SIGHUP re-reads the config file
    /// (a file that no longer parses is reported and the settings stay as they were). The
    /// first SIGTERM/SIGINT stops the current run at once, releases its lock and exits 0; a
    /// second one exits 11 at once. Every point stays restorable either way.
    #[command(after_help = "Examples:\n  \
        esbackup run --db /var/lib/eventstore/db --target s3://backups/node1 --every 5m \\\n      \
        --keep-hourly 24 --keep-daily 7 --metrics-addr 127.0.0.1:9464\n  \
        esbackup run --config /etc/esbackup.yaml")]
    Run(Box<RunArgs>),
    /// Show a restore point's log records and stream deletions, to find what to restore to.
    ///
    /// Per record: its position, time, kind, stream, event number, type and flags, and what it
    /// deletes (--deletes: tombstones and $tb/$maxAge/$maxCount metadata). Nothing is restored: each chunk is streamed from the location and its records are read
    /// as they arrive (never a whole chunk in memory), up to the point's writer checkpoint.
    /// --from is inclusive, --to exclusive. A damaged chunk stops the listing with exit code 5,
    /// naming the chunk and the byte.
    #[command(after_help = "Examples:\n  \
        esbackup log --target s3://backups/node1 --deletes\n  \
        esbackup log --target s3://backups/node1 --stream orders-42\n  \
        esbackup log --target s3://backups/node1 --from 2026-12-05T14:00:00Z --to 2026-12-05T14:05:00Z\n  \
        esbackup log --target /mnt/backup/node1 --at 2h --from 268435456 --json")]
    Log(LogArgs),
    /// Make an empty location compressed and/or encrypted (before its first backup).
    ///
    /// How a location stores its objects is fixed when it is made: a first backup into an empty
    /// location without init makes a plain one. --encrypt seals every object that carries
    /// database content or its shape (chunks, index files, points) with a random data key,
    /// which the password (ESBACKUP_PASSWORD, --password-file or --password-command; never a
    /// command-line value) opens through a key slot; `esbackup key` adds and removes slots.
    /// Lose every password and nobody can restore. Only esbackup reads a compressed or
    /// encrypted location: `restore` is the way out. Examples:
    ///   esbackup init --target s3://offsite/node1 --encrypt --compression zstd
    ///   esbackup init --target /mnt/backup/node1 --compression zstd:9
    Init(InitArgs),
    /// List, add or remove the key slots (passwords) of an encrypted location.
    ///
    /// Each slot opens the same data key, so adding or removing one changes who can open the
    /// location without re-encrypting anything. The current password proves access; the new
    /// one comes from ESBACKUP_NEW_PASSWORD, --new-password-file or --new-password-command.
    /// The last slot cannot be removed. Examples:
    ///   esbackup key list --target s3://offsite/node1
    ///   ESBACKUP_NEW_PASSWORD=... esbackup key add --target s3://offsite/node1
    ///   esbackup key remove --target s3://offsite/node1 3f2a9c0d1e4b5a6c
    Key(KeyArgs),
    /// Build a sample live database, back it up twice while it keeps writing, restore both
    /// points and verify them — all in a local folder — and say what happened.
    Demo(DemoArgs),
    /// Print a shell completion script on stdout. Examples:
    ///   esbackup completions bash > /etc/bash_completion.d/esbackup
    ///   esbackup completions zsh > ~/.zfunc/_esbackup   # with fpath+=~/.zfunc in .zshrc
    ///   esbackup completions fish > ~/.config/fish/completions/esbackup.fish
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout. Example:
    ///   esbackup man > /usr/local/share/man/man1/esbackup.1
    Man,
}

/// The format of log lines (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The command-line parser: the derived [`Cli`], every `bool` option made a toggle.
pub fn command() -> clap::Command {
    Cli::command().mut_subcommands(|c| c.mut_args(toggle).mut_subcommands(|k| k.mut_args(toggle)))
}

/// `--flag`, `--flag=true`, `--flag=false` (and `yes`/`no`, `1`/`0`) for a `bool` option.
fn toggle(arg: Arg) -> Arg {
    if !matches!(arg.get_action(), ArgAction::SetTrue) {
        return arg;
    }
    arg.action(ArgAction::Set)
        .num_args(0..=1)
        .require_equals(true)
        .default_missing_value("true")
        .default_value("false")
        .hide_default_value(true)
        .value_parser(BoolishValueParser::new())
        .value_name("BOOL")
}

/// Parses `argv` with `cmd` (see [`command`]).
pub fn parse(cmd: clap::Command, argv: &[OsString]) -> Result<Cli, clap::Error> {
    Cli::from_arg_matches(&cmd.try_get_matches_from(argv)?)
}

/// The first line of a clap error, without its `error: ` prefix.
pub fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("bad usage")
        .trim_start_matches("error: ")
        .to_string()
}

#[derive(Args, Debug, Clone, Default)]
pub struct TargetArg {
    /// Backup location: a folder, file:///path, s3://bucket/prefix, az://container/prefix,
    /// gs://bucket/prefix.
    #[arg(long, env = "ESBACKUP_TARGET", value_name = "URL")]
    pub target: Option<String>,
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// Where an encrypted location's password comes from: --password-command, else
/// --password-file, else the variable ESBACKUP_PASSWORD itself, else (at a terminal, for an
/// encrypted location) the password typed.
#[derive(Args, Debug, Clone, Default)]
pub struct PasswordArgs {
    /// An encrypted location's password: the first line of this file [default: the variable
    /// ESBACKUP_PASSWORD, else typed at a terminal].
    #[arg(long, env = "ESBACKUP_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// An encrypted location's password: the first line this command prints (run by `sh -c`).
    #[arg(long, env = "ESBACKUP_PASSWORD_COMMAND", value_name = "CMD")]
    pub password_command: Option<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct InitArgs {
    #[command(flatten)]
    pub target: TargetArg,
    /// Encrypt the location (XChaCha20-Poly1305; the password opens a random data key).
    #[arg(long, env = "ESBACKUP_ENCRYPT")]
    pub encrypt: bool,
    /// Compress each object: zstd, zstd:LEVEL (1-22) or none.
    #[arg(
        long,
        env = "ESBACKUP_COMPRESSION",
        value_name = "ALGORITHM",
        default_value = "none"
    )]
    pub compression: String,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub action: KeyAction,
}

#[derive(Subcommand, Debug, Clone)]
pub enum KeyAction {
    /// Show the key slots: id, when and on which host each was added.
    List {
        #[command(flatten)]
        target: TargetArg,
        #[command(flatten)]
        output: Output,
    },
    /// Add a slot for a new password (the current one proves access).
    Add {
        #[command(flatten)]
        target: TargetArg,
        /// The new password: the first line of this file [default: the variable
        /// ESBACKUP_NEW_PASSWORD, else typed twice at a terminal].
        #[arg(long, env = "ESBACKUP_NEW_PASSWORD_FILE", value_name = "FILE")]
        new_password_file: Option<PathBuf>,
        /// The new password: the first line this command prints.
        #[arg(long, env = "ESBACKUP_NEW_PASSWORD_COMMAND", value_name = "CMD")]
        new_password_command: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Remove slot ID (never the last; the current password proves access).
    Remove {
        #[command(flatten)]
        target: TargetArg,
        /// The slot to remove (`key list` names them).
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Args, Debug, Clone, Default)]
pub struct DbArgs {
    /// The node's database folder (holds chunk-*.* and *.chk).
    #[arg(long, env = "ESBACKUP_DB", value_name = "DIR")]
    pub db: Option<PathBuf>,
    /// The node's index folder [default: the index folder in --db].
    #[arg(long, env = "ESBACKUP_INDEX", value_name = "DIR")]
    pub index: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct Output {
    /// Print one JSON object with the result on stdout (errors too: {"ok":false,...}).
    #[arg(long, env = "ESBACKUP_JSON")]
    pub json: bool,
    /// No progress bar (it is shown only when stderr is a terminal).
    #[arg(long, env = "ESBACKUP_QUIET")]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct Transfer {
    // The defaults are the engine's; `None` leaves each command's own.
    #[arg(long, env = "ESBACKUP_CONCURRENCY", value_name = "N", value_parser = at_least_one,
          help = concurrency_help())]
    pub concurrency: Option<usize>,
}

fn concurrency_help() -> String {
    format!(
        "Files transferred at once [default: backups {DEFAULT_CONCURRENCY}, or \
         {DEFAULT_LOCAL_CONCURRENCY} to a folder; restore and verify: \
         {DEFAULT_RESTORE_CONCURRENCY}; copy: {DEFAULT_CONCURRENCY}]"
    )
}

/// `--cron`: a cron expression (seconds optional).
fn parse_cron(text: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(text.trim())
        .map_err(|e| format!("not a cron expression ({e}); e.g. \"*/5 * * * *\""))
}

/// [`parse_cron`] for the schedule's tests.
#[cfg(test)]
pub fn parse_cron_for_tests(text: &str) -> croner::Cron {
    parse_cron(text).unwrap()
}

/// `--read-data-subset N/M`: 1 ≤ N ≤ M.
fn parse_subset(text: &str) -> Result<(u32, u32), String> {
    let parsed = text.split_once('/').and_then(|(n, m)| {
        let (n, m) = (n.trim().parse::<u32>().ok()?, m.trim().parse::<u32>().ok()?);
        (1..=m).contains(&n).then_some((n, m))
    });
    parsed.ok_or_else(|| "expected N/M with 1 <= N <= M, e.g. 3/7".into())
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Args, Debug, Clone)]
pub struct LockArgs {
    /// Take over the lock even if another run seems to hold it.
    #[arg(long, env = "ESBACKUP_BREAK_LOCK")]
    pub break_lock: bool,
    /// A lock from another host whose heartbeat is older than this many seconds is stale.
    #[arg(long, env = "ESBACKUP_LOCK_STALE_SECS", value_name = "SECS",
          default_value_t = LockOptions::default().stale_after.as_secs())]
    pub lock_stale_secs: u64,
    /// How long to wait for a running backup or forget to release the lock before giving up
    /// with exit code 4: 90s, 10m, 1h, or 0 to give up at once.
    // Long enough for a scheduled backup to finish, short enough that a stuck run is reported
    // the same hour. (The engine's own default is not to wait: a library caller decides.)
    #[arg(
        long,
        env = "ESBACKUP_LOCK_WAIT",
        value_name = "DURATION",
        default_value = "10m"
    )]
    pub lock_wait: HumanDuration,
}

impl LockArgs {
    /// The engine's lock options.
    pub fn options(&self) -> LockOptions {
        LockOptions {
            stale_after: std::time::Duration::from_secs(self.lock_stale_secs),
            break_lock: self.break_lock,
            wait: self.lock_wait.0,
            ..LockOptions::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub target: TargetArg,
    /// Store every file again instead of trusting what the location holds (also: start a new
    /// history after this node was restored from a backup).
    #[arg(long, env = "ESBACKUP_FULL")]
    pub full: bool,
    /// Show what would be stored; change nothing.
    #[arg(long, env = "ESBACKUP_DRY_RUN")]
    pub dry_run: bool,
    /// Also copy the KurrentDB secondary index (kurrent.ddb). Only when the node is stopped.
    #[arg(long, env = "ESBACKUP_INCLUDE_SECONDARY_INDEX")]
    pub include_secondary_index: bool,
    #[command(flatten)]
    pub storing: Storing,
    #[command(flatten)]
    pub output: Output,
}

/// What `backup` and `run` share: how they reach the node, lock the location, send files and
/// report figures.
#[derive(Args, Debug)]
pub struct Storing {
    /// The node's admin API: its scavenge is stopped during each backup and started again.
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub transfer: Transfer,
    #[command(flatten)]
    pub metrics: MetricsFile,
}

#[derive(Args, Debug, Clone, Default)]
pub struct MetricsFile {
    /// After the command, write its metrics (the same as `run` serves) to FILE in the
    /// Prometheus text format, atomically: for node_exporter's textfile collector. Give each
    /// command its own file (backup.prom, forget.prom, verify.prom).
    #[arg(long, env = "ESBACKUP_METRICS_FILE", value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

/// When `run` does what (YAML: the `schedule:` block). A duration of 0 turns a job off.
#[derive(Args, Debug, Clone)]
pub struct ScheduleArgs {
    /// Take a restore point this often (measured from the start of the previous run; a run
    /// that takes longer is followed at once by the next).
    #[arg(
        long,
        env = "ESBACKUP_EVERY",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub every: HumanDuration,
    /// Take the restore points at the times of this cron expression instead, in UTC (five
    /// fields, or six with seconds: "*/5 * * * *", "0 */6 * * *", "30 2 * * MON-FRI").
    #[arg(long, env = "ESBACKUP_CRON", value_name = "EXPR", value_parser = parse_cron)]
    pub cron: Option<croner::Cron>,
    /// Apply the retention policy (--keep-* or the config's `retention:`) this often.
    #[arg(
        long,
        env = "ESBACKUP_FORGET_EVERY",
        value_name = "DURATION",
        default_value = "1h"
    )]
    pub forget_every: HumanDuration,
    /// Verify every point this often (that each object it needs is there).
    #[arg(
        long,
        env = "ESBACKUP_VERIFY_EVERY",
        value_name = "DURATION",
        default_value = "1d"
    )]
    pub verify_every: HumanDuration,
    /// Also re-read stored bytes, a share of the objects at each verify, so that every
    /// object is read back once over this period (e.g. 30d with --verify-every 1d: a
    /// thirtieth each day). 0: never.
    #[arg(
        long,
        env = "ESBACKUP_READ_DATA_OVER",
        value_name = "DURATION",
        default_value = "0s"
    )]
    pub read_data_over: HumanDuration,
    /// With --copy-to: copy the new points there this often.
    #[arg(
        long,
        env = "ESBACKUP_COPY_EVERY",
        value_name = "DURATION",
        default_value = "1h"
    )]
    pub copy_every: HumanDuration,
}

#[derive(Args, Debug, Clone)]
pub struct Watch {
    /// Serve Prometheus metrics on http://ADDR/metrics and health on http://ADDR/healthz
    /// (e.g. 127.0.0.1:9464).
    #[arg(long, env = "ESBACKUP_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// /healthz answers 503 once the newest point is older than this [default: 3 × --every].
    #[arg(long, env = "ESBACKUP_HEALTHY_WITHIN", value_name = "DURATION")]
    pub healthy_within: Option<HumanDuration>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub target: TargetArg,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// The `--keep-*` rules; none given: the config's `retention:` block.
    #[command(flatten)]
    pub keep: KeepPolicy,
    /// Also delete every stored object no kept point needs (reclaims the space).
    #[arg(long, env = "ESBACKUP_PRUNE")]
    pub prune: bool,
    /// Copy the new points to this second location every --copy-every (as `esbackup copy
    /// --to`; its retention is its own).
    #[arg(long = "copy-to", env = "ESBACKUP_COPY_TO", value_name = "URL")]
    pub copy_to: Option<String>,
    /// An encrypted --copy-to location's password: the first line of this file [default: the
    /// variable ESBACKUP_COPY_TO_PASSWORD, else --target's].
    #[arg(long, env = "ESBACKUP_COPY_TO_PASSWORD_FILE", value_name = "FILE")]
    pub copy_to_password_file: Option<PathBuf>,
    /// An encrypted --copy-to location's password: the first line this command prints.
    #[arg(long, env = "ESBACKUP_COPY_TO_PASSWORD_COMMAND", value_name = "CMD")]
    pub copy_to_password_command: Option<String>,
    #[command(flatten)]
    pub watch: Watch,
    #[command(flatten)]
    pub storing: Storing,
}

/// `copy`: the two locations and what to copy.
#[derive(Args, Debug)]
pub struct CopyArgs {
    /// The location to copy from (a URL as --target takes).
    #[arg(long = "from", env = "ESBACKUP_COPY_FROM", value_name = "URL")]
    pub copy_from: Option<String>,
    /// The location to copy to: empty, or one that holds copies of --from.
    #[arg(long = "to", env = "ESBACKUP_COPY_TO", value_name = "URL")]
    pub copy_to: Option<String>,
    /// The destination's password (when it is encrypted).
    #[command(flatten)]
    pub password: PasswordArgs,
    /// An encrypted source's password: the first line of this file [default: the variable
    /// ESBACKUP_FROM_PASSWORD, else the destination's, else typed at a terminal].
    #[arg(long, env = "ESBACKUP_FROM_PASSWORD_FILE", value_name = "FILE")]
    pub from_password_file: Option<PathBuf>,
    /// An encrypted source's password: the first line this command prints.
    #[arg(long, env = "ESBACKUP_FROM_PASSWORD_COMMAND", value_name = "CMD")]
    pub from_password_command: Option<String>,
    /// Copy these points (repeat it, or separate ids by commas), whether newer than the
    /// destination's or not [default: every point newer than the destination's newest].
    #[arg(
        long = "point",
        env = "ESBACKUP_POINT",
        value_name = "ID",
        value_delimiter = ','
    )]
    pub point: Vec<String>,
    /// Copy only the source's newest point.
    #[arg(long, env = "ESBACKUP_LATEST", conflicts_with = "point")]
    pub latest: bool,
    /// Folder where each object is checked before it is sent (one temporary file per object
    /// in flight, as large as the object; deleted at once) [default: the system's temporary
    /// folder].
    #[arg(long, env = "ESBACKUP_SPOOL", value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Say what would be copied; write nothing.
    #[arg(long, env = "ESBACKUP_DRY_RUN")]
    pub dry_run: bool,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub transfer: Transfer,
    /// The destination's figures (`esbackup_points`, `esbackup_last_success_timestamp_seconds`
    /// of its newest point: the offsite lag).
    #[command(flatten)]
    pub metrics: MetricsFile,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug, Clone, Default)]
pub struct PointArgs {
    /// The restore point's id (see `esbackup list`) [default: the newest].
    #[arg(long, env = "ESBACKUP_POINT", value_name = "ID", conflicts_with = "at")]
    pub point: Option<String>,
    /// The newest point taken at or before this time: RFC 3339 (2026-11-30T06:00:00Z) or an
    /// age (90m, 2h, 3d, 1w) [default: the newest].
    #[arg(long, env = "ESBACKUP_AT", value_name = "TIME")]
    pub at: Option<String>,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub target: TargetArg,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub point: PointArgs,
    #[command(flatten)]
    pub upto: UptoArgs,
    /// Restore into folders that hold files: their database files are removed first.
    #[arg(long, env = "ESBACKUP_FORCE")]
    pub force: bool,
    #[command(flatten)]
    pub transfer: Transfer,
    #[command(flatten)]
    pub output: Output,
}

/// `restore`: how far into the log (the point is then chosen for it). See `esbackup log` to
/// find the position, the time or the deletion.
#[derive(Args, Debug, Clone, Default)]
#[group(multiple = false, conflicts_with_all = ["point", "at"])]
pub struct UptoArgs {
    /// Restore the log up to and including the last record that ends at or before this log
    /// position (the node truncates its log there at its first start).
    #[arg(long, env = "ESBACKUP_POSITION", value_name = "POS")]
    pub position: Option<i64>,
    /// Restore the log up to the last record written before this moment (RFC 3339, or an
    /// age: 90m, 2h).
    #[arg(long, env = "ESBACKUP_BEFORE", value_name = "TIME")]
    pub before: Option<String>,
    /// Restore the log up to just before the newest record that deleted or truncated this
    /// stream (a tombstone, or `$tb`/`$maxAge`/`$maxCount` in its metadata).
    #[arg(long, env = "ESBACKUP_BEFORE_STREAM_DELETE", value_name = "STREAM")]
    pub before_stream_delete: Option<String>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: TargetArg,
    #[command(flatten)]
    pub point: PointArgs,
    /// Read every object back: re-hash it and check chunk footers and index table MD5s.
    #[arg(long, env = "ESBACKUP_READ_DATA")]
    pub read_data: bool,
    /// Also fail (exit 5) when the root mirror of the newest point is damaged (by default a
    /// warning: restores do not use it, and the next backup rewrites it).
    #[arg(long, env = "ESBACKUP_STRICT")]
    pub strict: bool,
    /// With --read-data: only the N-th of M shares of the objects (1/7, 2/7, …: every object
    /// is in exactly one share).
    #[arg(long, env = "ESBACKUP_READ_DATA_SUBSET", value_name = "N/M", requires = "read_data",
          value_parser = parse_subset)]
    pub read_data_subset: Option<(u32, u32)>,
    #[command(flatten)]
    pub transfer: Transfer,
    #[command(flatten)]
    pub metrics: MetricsFile,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub target: TargetArg,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArg,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub target: TargetArg,
    /// The `--keep-*` rules; none given: the config's `retention:` block.
    #[command(flatten)]
    pub keep: KeepPolicy,
    /// Also delete every stored object no kept point needs (reclaims the space).
    #[arg(long, env = "ESBACKUP_PRUNE")]
    pub prune: bool,
    /// Show what would be forgotten and deleted; change nothing.
    #[arg(long, env = "ESBACKUP_DRY_RUN")]
    pub dry_run: bool,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub metrics: MetricsFile,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder for the sample database, backup and restores [default: a new temporary folder].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the folder afterwards (always kept when --dir is given).
    #[arg(long)]
    pub keep: bool,
    #[command(flatten)]
    pub output: Output,
}

/// `log`: which records of which point, and how to print them.
#[derive(Args, Debug)]
pub struct LogArgs {
    #[command(flatten)]
    pub target: TargetArg,
    #[command(flatten)]
    pub point: PointArgs,
    /// Only the records of this stream: its events, its tombstone, and the records of its
    /// metadata stream $$STREAM (where soft deletes and truncations are written).
    #[arg(long, env = "ESBACKUP_STREAM", value_name = "STREAM")]
    pub stream: Option<String>,
    /// Records from this log position (a number), or with a time at or after this time: RFC
    /// 3339 (2026-12-05T14:02:00Z) or an age (90m, 2h, 3d).
    #[arg(long = "from", env = "ESBACKUP_LOG_FROM", value_name = "POS|TIME")]
    pub log_from: Option<String>,
    /// Records before this log position, or with a time before this time (as --from).
    #[arg(long = "to", env = "ESBACKUP_LOG_TO", value_name = "POS|TIME")]
    pub log_to: Option<String>,
    /// Only stream deletions: tombstones (hard deletes), and $metadata events that set $tb
    /// (soft deletes: $tb = 9223372036854775807), $maxAge or $maxCount (truncations).
    #[arg(long, env = "ESBACKUP_DELETES")]
    pub deletes: bool,
    /// JSON lines: one object per record as it is read (a log holds millions of records; none
    /// is held back to build an array), then a last line {"ok": true, "point", "records", ...};
    /// a failure ends with {"ok": false, "exit_code", "error"}: output without an "ok" line was
    /// cut short.
    #[arg(long, env = "ESBACKUP_JSON")]
    pub json: bool,
}

/// The commands of `cmd` that take options, nested ones (`key add`) included.
pub fn subcommands(cmd: &clap::Command) -> Vec<&clap::Command> {
    cmd.get_subcommands()
        .flat_map(|c| std::iter::once(c).chain(c.get_subcommands()))
        .collect()
}
