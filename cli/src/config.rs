//! The YAML config file and how it merges with the command line and environment.

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
    pub include_secondary_index: Option<bool>,
    pub lock_stale_secs: Option<u64>,
    /// Storage options: endpoint, region, path_style, allow_http, part_size, ...
    pub storage: TargetOptions,
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
        serde_yaml::from_str(&text)
            .map_err(|e| Failure::usage(format!("config file {}: {e}", path.display())))
    }
}

/// The first value given, or a usage error naming the option.
pub fn required<T>(cli: Option<T>, file: Option<T>, what: &str) -> Result<T, Failure> {
    cli.or(file).ok_or_else(|| {
        Failure::usage(format!(
            "missing --{what} (or ESBACKUP_{} / `{what}:` in the config file)",
            what.to_uppercase()
        ))
    })
}
