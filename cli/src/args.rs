//! Command-line arguments. Every option may also come from an `ESBACKUP_*` environment variable
//! or from the YAML config file (`--config`); the command line wins, then the environment, then
//! the file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Consistent, differential backups of a live EventStoreDB / KurrentDB node.
///
/// A backup location mirrors the database (chunks and checkpoints at its root, the index under
/// index/) plus esbackup's own files under .esbackup/. Targets: a folder (/backups/node1 or
/// file:///backups/node1), s3://bucket/prefix, az://container/prefix, gs://bucket/prefix.
///
/// Exit codes: 0 ok · 1 local I/O or unexpected error · 2 bad usage or config · 3 the source is
/// not a database or does not match the backup · 4 another run holds the lock · 5 the backup
/// fails verification · 6 the source changed too much to copy (a scavenge is running) ·
/// 7 storage error · 8 no (completed) backup at the target · 9 restore folder not empty.
#[derive(Parser, Debug)]
#[command(name = "esbackup", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    /// YAML config file (keys: db, index, target, concurrency, storage: {...}).
    #[arg(long, global = true, env = "ESBACKUP_CONFIG")]
    pub config: Option<PathBuf>,

    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Back up a database folder (differential: only what the backup lacks is copied).
    ///
    /// Safe on a live node. Do not run it while a scavenge runs: it stops with exit code 6 and
    /// leaves the backup restorable. Example:
    ///   esbackup backup --db /var/lib/eventstore/db --target s3://backups/node1
    Backup(BackupArgs),
    /// Restore a backup into an empty folder (the node must be stopped).
    ///
    /// Copies every file back, checking hashes against the manifest, and sets truncate.chk to
    /// chaser.chk. Example:
    ///   esbackup restore --target s3://backups/node1 --db /var/lib/eventstore/db
    Restore(RestoreArgs),
    /// Check a backup: manifest complete, every file present; --read-data re-hashes them all.
    Verify(VerifyArgs),
    /// Show the latest run, the last completed one and any lock of a backup location.
    Status(StatusArgs),
    /// Build a sample live database, back it up while it keeps writing, take a differential,
    /// restore and verify it — all in a local folder — and say what happened.
    Demo(DemoArgs),
}

#[derive(Args, Debug, Clone)]
pub struct TargetArg {
    /// Backup location: a folder, file://, s3://bucket/prefix, az://container/prefix, gs://bucket/prefix.
    #[arg(long, env = "ESBACKUP_TARGET")]
    pub target: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// The node's database folder (holds chunk-*.* and *.chk).
    #[arg(long, env = "ESBACKUP_DB")]
    pub db: Option<PathBuf>,
    /// The node's index folder [default: <db>/index].
    #[arg(long, env = "ESBACKUP_INDEX")]
    pub index: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Print one JSON object with the result on stdout (errors too).
    #[arg(long)]
    pub json: bool,
    /// Files transferred at once [default: 4].
    #[arg(long, env = "ESBACKUP_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// No progress bar.
    #[arg(long, env = "ESBACKUP_QUIET")]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub target: TargetArg,
    /// Copy every file again instead of only what the backup lacks.
    #[arg(long)]
    pub full: bool,
    /// Show what would be copied and deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also copy the KurrentDB secondary index (kurrent.ddb). Only when the node is stopped.
    #[arg(long, env = "ESBACKUP_INCLUDE_SECONDARY_INDEX")]
    pub include_secondary_index: bool,
    /// Take over the lock even if another run seems to hold it.
    #[arg(long)]
    pub break_lock: bool,
    /// A lock from another host without a heartbeat for this many seconds is stale [default: 900].
    #[arg(long, env = "ESBACKUP_LOCK_STALE_SECS")]
    pub lock_stale_secs: Option<u64>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub target: TargetArg,
    #[command(flatten)]
    pub db: DbArgs,
    /// Restore into folders that hold files: their database files are removed first.
    #[arg(long)]
    pub force: bool,
    /// Restore even if no backup run ever completed at the target.
    #[arg(long)]
    pub allow_incomplete: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: TargetArg,
    /// Read every file back: re-hash it and check chunk footers, PTables and indexmap MD5s.
    #[arg(long)]
    pub read_data: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder for the sample database, backup and restore [default: a new temporary folder].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the folder afterwards (always kept when --dir is given).
    #[arg(long)]
    pub keep: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
