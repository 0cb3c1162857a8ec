//! The YAML config file: every option by its field name in `args.rs` (`dry_run` for
//! `--dry-run`), plus `storage:` (the backends' [`TargetOptions`]), `retention:` (the
//! engine's [`KeepPolicy`] and `prune`: the policy `forget` and `run` use without `--keep-*`,
//! and that each successful backup applies) and `schedule:` (`run`'s `every`, `cron`,
//! `forget_every`, `verify_every`, `read_data_over`).
//!
//! An option's value in the file becomes the default of its command-line option
//! ([`FileConfig::apply`]): the command line and the environment win over it, the value is read
//! by the option's own parser, and no option is listed here.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, Command};
use esbackup_backends::TargetOptions;
use esbackup_engine::{KeepPolicy, Retention};
use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

use crate::args::first_line;
use crate::exit::Failure;

/// What `esbackup.yaml` says.
#[derive(Debug, Default)]
pub struct FileConfig {
    /// The file, for messages.
    path: PathBuf,
    /// The options, by YAML key, as text for their command-line parsers.
    options: BTreeMap<String, String>,
    /// The `retention:` block.
    retention: Option<RetentionBlock>,
    /// The `storage:` block.
    pub storage: TargetOptions,
}

/// The `retention:` block: the keep rules and whether to prune.
#[derive(Debug, Default)]
struct RetentionBlock {
    policy: KeepPolicy,
    prune: Option<bool>,
}

/// `run`'s options that the `schedule:` block holds.
const SCHEDULE: [&str; 6] = [
    "every",
    "cron",
    "forget_every",
    "verify_every",
    "read_data_over",
    "copy_every",
];

/// The YAML key of a command-line option, when it has one: its field name, or
/// `retention.<name>` for the keep rules and `--prune`, or `schedule.<name>` for `run`'s
/// schedule. Only options with an environment variable are config keys (not `demo`'s).
pub fn yaml_key(arg: &Arg) -> Option<String> {
    arg.get_env()?;
    let id = arg.get_id().as_str();
    let keep_rule = arg.get_long().is_some_and(|l| l.starts_with("keep-"));
    Some(if keep_rule || id == "prune" {
        format!("retention.{id}")
    } else if SCHEDULE.contains(&id) {
        format!("schedule.{id}")
    } else {
        id.to_string()
    })
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
        FileConfig::parse(path, &text)
    }

    /// Reads the text of the file at `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<FileConfig, Failure> {
        let mut file = FileConfig {
            path: path.to_path_buf(),
            ..FileConfig::default()
        };
        let mut map = match serde_yaml::from_str(text).map_err(|e| file.error(e))? {
            Value::Null => Mapping::new(),
            Value::Mapping(m) => m,
            _ => return Err(file.error("expected keys such as `target: s3://bucket/prefix`")),
        };
        if let Some(storage) = map.remove("storage") {
            file.storage = file.value("storage", storage)?;
        }
        if let Some(retention) = map.remove("retention") {
            file.retention = Some(file.retention_block(retention)?);
        }
        let schedule = match map.remove("schedule") {
            None | Some(Value::Null) => Mapping::new(),
            Some(Value::Mapping(m)) => m,
            Some(_) => return Err(file.error("`schedule:` takes keys such as `every: 5m`")),
        };
        let scheduled = schedule.into_iter().map(|(k, v)| match k {
            Value::String(k) => (Value::String(format!("schedule.{k}")), v),
            k => (k, v),
        });
        for (key, value) in map.into_iter().chain(scheduled) {
            let Value::String(key) = key else {
                return Err(file.error(format!("the key {key:?} is not a name")));
            };
            let text = match value {
                Value::Null => continue,
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                Value::String(s) => s,
                _ => return Err(file.error(format!("`{key}` takes one value"))),
            };
            file.options.insert(key, text);
        }
        Ok(file)
    }

    fn retention_block(&self, block: Value) -> Result<RetentionBlock, Failure> {
        let mut block = match block {
            Value::Null => Mapping::new(),
            Value::Mapping(m) => m,
            _ => return Err(self.error("`retention:` takes keys such as `daily: 7`")),
        };
        let prune = block.remove("prune");
        Ok(RetentionBlock {
            prune: prune
                .map(|p| self.value("retention.prune", p))
                .transpose()?,
            policy: self.value("retention", Value::Mapping(block))?,
        })
    }

    fn value<T: DeserializeOwned>(&self, key: &str, value: Value) -> Result<T, Failure> {
        serde_yaml::from_value(value).map_err(|e| self.error(format!("{key}: {e}")))
    }

    fn error(&self, e: impl std::fmt::Display) -> Failure {
        let message = e.to_string().replace('\n', " ");
        Failure::usage(format!("config file {}: {message}", self.path.display()))
    }

    /// `cmd` with the file's values as the defaults of their options; an unknown key or a value
    /// the option's parser refuses is an error naming the file and the key.
    pub fn apply(&self, cmd: Command) -> Result<Command, Failure> {
        let options: BTreeMap<String, Arg> = crate::args::subcommands(&cmd)
            .into_iter()
            .flat_map(|c| c.get_arguments())
            .filter_map(|a| Some((yaml_key(a)?, a.clone())))
            .filter(|(key, _)| !key.starts_with("retention."))
            .collect();
        for (key, value) in &self.options {
            let arg = options.get(key).ok_or_else(|| {
                self.error(format!(
                    "unknown key `{key}` (the keys are the options' names, such as `dry_run`, plus `storage:`, `retention:` and `schedule:`)"
                ))
            })?;
            self.check(key, arg, value)?;
        }
        // `key add` and its siblings are one level further down.
        Ok(cmd.mut_subcommands(|c| {
            c.mut_args(|a| self.default_of(a))
                .mut_subcommands(|k| k.mut_args(|a| self.default_of(a)))
        }))
    }

    /// `arg` with the file's value as its default, when the file has one.
    fn default_of(&self, arg: Arg) -> Arg {
        match self.value_of(&arg) {
            Some(value) => arg.default_value(value),
            None => arg,
        }
    }

    /// The file's value of the option `arg`, as text. The keep rules have none: `forget` takes
    /// the `retention:` block whole or not at all ([`FileConfig::policy_or`]).
    fn value_of(&self, arg: &Arg) -> Option<String> {
        match yaml_key(arg)?.as_str() {
            "retention.prune" => self.retention.as_ref()?.prune.map(|p| p.to_string()),
            key => self.options.get(key).cloned(),
        }
    }

    /// Parses `value` as the option `arg` would on the command line.
    fn check(&self, key: &str, arg: &Arg, value: &str) -> Result<(), Failure> {
        let long = arg.get_long().unwrap_or(key).to_string();
        let names = arg.get_value_names().unwrap_or_default().to_vec();
        let alone = Command::new("esbackup").no_binary_name(true).arg(
            Arg::new(arg.get_id().clone())
                .long(long.clone())
                .value_names(names)
                .value_parser(arg.get_value_parser().clone()),
        );
        match alone.try_get_matches_from([OsString::from(format!("--{long}={value}"))]) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.error(format!("`{key}: {value}`: {}", first_line(&e)))),
        }
    }

    /// The policy `forget` applies: its `--keep-*` rules, else the `retention:` block.
    pub fn policy_or(&self, keep: &KeepPolicy) -> KeepPolicy {
        match &self.retention {
            Some(block) if keep.is_empty() => block.policy.clone(),
            _ => keep.clone(),
        }
    }

    /// The `retention:` block a backup applies after each successful run (pruning unless
    /// `prune: false`).
    pub fn retention(&self) -> Option<Retention> {
        let block = self.retention.as_ref().filter(|r| !r.policy.is_empty())?;
        Some(Retention {
            policy: block.policy.clone(),
            prune: block.prune.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{self, Command as Cmd};

    fn run(yaml: &str, argv: &[&str]) -> Result<Cmd, Failure> {
        let file = FileConfig::parse(Path::new("esbackup.yaml"), yaml)?;
        let argv: Vec<OsString> = std::iter::once("esbackup")
            .chain(argv.iter().copied())
            .map(OsString::from)
            .collect();
        args::parse(file.apply(args::command())?, &argv)
            .map(|cli| cli.command)
            .map_err(|e| Failure::usage(args::first_line(&e)))
    }

    fn backup(yaml: &str, argv: &[&str]) -> crate::args::BackupArgs {
        match run(yaml, &[&["backup"], argv].concat()).unwrap() {
            Cmd::Backup(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_command_line_wins_over_the_file_which_wins_over_the_default() {
        let a = backup("", &[]);
        assert_eq!((a.full, a.storing.lock.lock_wait.0.as_secs()), (false, 600));
        assert_eq!(a.storing.lock.lock_stale_secs, 900);
        let yaml = "full: true\nlock_wait: 90s\nlock_stale_secs: 60\nconcurrency: 3\n";
        let a = backup(yaml, &[]);
        assert_eq!((a.full, a.storing.lock.lock_wait.0.as_secs()), (true, 90));
        assert_eq!(
            (
                a.storing.lock.lock_stale_secs,
                a.storing.transfer.concurrency
            ),
            (60, Some(3))
        );
        let a = backup(
            yaml,
            &["--full=false", "--lock-wait", "0", "--concurrency=5"],
        );
        assert_eq!((a.full, a.storing.lock.lock_wait.0.as_secs()), (false, 0));
        assert_eq!(a.storing.transfer.concurrency, Some(5));
        assert!(backup("", &["--full"]).full);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_file_and_the_key() {
        let message = |yaml: &str| run(yaml, &["status"]).unwrap_err().message;
        let m = message("dry-run: true\n");
        assert!(
            m.contains("esbackup.yaml") && m.contains("`dry-run`"),
            "{m}"
        );
        let m = message("concurrency: 0\n");
        assert!(
            m.contains("concurrency: 0") && m.contains("at least 1"),
            "{m}"
        );
        let m = message("lock_wait: soon\n");
        assert!(m.contains("lock_wait") && m.contains("soon"), "{m}");
        let m = message("retention:\n  dialy: 7\n");
        assert!(m.contains("retention") && m.contains("dialy"), "{m}");
        assert!(
            run("keep: true\n", &["status"]).is_err(),
            "demo's options are not keys"
        );
    }

    #[test]
    fn forget_uses_its_keep_rules_or_else_the_retention_block_whole() {
        let yaml = "retention:\n  daily: 7\n  within: 2d\n  prune: true\n";
        let forget = |argv: &[&str]| match run(yaml, &[&["forget"], argv].concat()).unwrap() {
            Cmd::Forget(a) => a,
            other => panic!("{other:?}"),
        };
        let file = FileConfig::parse(Path::new("esbackup.yaml"), yaml).unwrap();
        let a = forget(&[]);
        assert_eq!(file.policy_or(&a.keep).daily, 7);
        assert!(a.prune, "retention.prune");
        let a = forget(&["--keep-last", "3", "--prune=false"]);
        let policy = file.policy_or(&a.keep);
        assert_eq!((policy.last, policy.daily, policy.within), (3, 0, None));
        assert!(!a.prune);
        let after_backup = file.retention().unwrap();
        assert!(after_backup.prune);
        assert_eq!(after_backup.policy.within.unwrap().as_secs(), 2 * 86400);
        let no_prune = FileConfig::parse(Path::new("x"), "retention:\n  last: 2\n").unwrap();
        assert!(
            no_prune.retention().unwrap().prune,
            "a backup prunes by default"
        );
    }

    #[test]
    fn the_storage_block_reads_sizes_and_durations() {
        let storage = "storage:\n  part_size: 8M\n  request_timeout: 90\n";
        let storage = FileConfig::parse(Path::new("x"), storage).unwrap().storage;
        assert_eq!(storage.part_size, Some(esbackup_engine::ByteSize(8 << 20)));
        assert_eq!(storage.request_timeout.unwrap().0.as_secs(), 90);
    }
}
