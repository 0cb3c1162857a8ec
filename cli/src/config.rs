//! The YAML config file: every command-line option by its name (`dry_run` for `--dry-run`),
//! plus `storage:` (see the backends crate) and `retention:` (the policy `forget` uses, and
//! that each successful backup applies).

use std::path::{Path, PathBuf};

use esbackup_backends::TargetOptions;
use serde::Deserialize;

use crate::exit::Failure;

/// Keys of `esbackup.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub db: Option<PathBuf>,
    pub index: Option<PathBuf>,
    pub target: Option<String>,
    pub concurrency: Option<usize>,
    pub json: Option<bool>,
    pub quiet: Option<bool>,
    pub full: Option<bool>,
    pub dry_run: Option<bool>,
    pub include_secondary_index: Option<bool>,
    pub break_lock: Option<bool>,
    pub lock_stale_secs: Option<u64>,
    pub lock_wait: Option<String>,
    pub strict: Option<bool>,
    pub point: Option<String>,
    pub at: Option<String>,
    pub force: Option<bool>,
    pub read_data: Option<bool>,
    pub retention: Option<Retention>,
    pub storage: TargetOptions,
}

/// The `retention:` block.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    /// `30d`, `36h`, ...
    pub within: Option<String>,
    /// Delete what no kept point needs (default true).
    pub prune: Option<bool>,
}

impl FileConfig {
    /// Loads `path`, or `./esbackup.yaml` when no path is given and that file exists.
    pub fn load(path: Option<&Path>) -> Result<FileConfig, Failure> {
        let default = Path::new("esbackup.yaml");
        let path = match path {
            Some(p) => p,
            None if default.is_file() => default,
            None => return Ok(FileConfig::default()),
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::usage(format!("cannot read config file {}: {e}", path.display()))
        })?;
        serde_yaml::from_str(&text).map_err(|e| {
            Failure::usage(format!(
                "config file {}: {}",
                path.display(),
                e.to_string().replace('\n', " ")
            ))
        })
    }
}
