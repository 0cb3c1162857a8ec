//! The settings of one run: the command line parsed again with the config file's values as its
//! defaults (so the command line wins, then the environment, then the file, then the defaults
//! in `args.rs`), and the values that need more than one option to resolve.

use std::ffi::OsString;
use std::path::Path;

use chrono::{DateTime, Utc};
use esbackup_engine::log::{Bound, LogFilter};
use esbackup_engine::{HumanDuration, Selection, Upto, Which};

use crate::args::{self, Cli, Command, CopyArgs, DbArgs, LogArgs, PointArgs, TargetArg, UptoArgs};
use crate::config::FileConfig;
use crate::exit::Failure;

/// Reads the config file `cli` names and parses `argv` again over it.
pub fn resolve(cli: &Cli, argv: &[OsString]) -> Result<(Command, FileConfig), Failure> {
    let file = FileConfig::load(cli.config.as_deref())?;
    let cmd = file.apply(args::command())?;
    let cli = args::parse(cmd, argv).map_err(|e| Failure::usage(args::first_line(&e)))?;
    Ok((cli.command, file))
}

impl TargetArg {
    /// The target URL, or a usage error naming the ways to give it.
    pub fn url(&self) -> Result<&str, Failure> {
        self.target.as_deref().ok_or_else(|| missing("target"))
    }
}

impl CopyArgs {
    /// `--from` and `--to`, or a usage error naming the ways to give the one missing.
    pub fn urls(&self) -> Result<(&str, &str), Failure> {
        Ok((given(&self.copy_from, "from")?, given(&self.copy_to, "to")?))
    }

    /// The points `--point` or `--latest` select, else every newer point.
    pub fn selection(&self) -> Selection {
        match (self.latest, self.point.is_empty()) {
            (true, _) => Selection::Latest,
            (false, false) => Selection::Ids(self.point.clone()),
            (false, true) => Selection::Newer,
        }
    }
}

impl UptoArgs {
    /// How far into the log `--position`, `--before` or `--before-stream-delete` says.
    pub fn upto(&self) -> Result<Option<Upto>, Failure> {
        Ok(
            match (&self.position, &self.before, &self.before_stream_delete) {
                (Some(p), _, _) => Some(Upto::Position(*p)),
                (_, Some(t), _) => Some(Upto::Before(parse_time(t, Utc::now())?)),
                (_, _, Some(s)) => Some(Upto::BeforeStreamDelete(s.clone())),
                _ => None,
            },
        )
    }
}

impl DbArgs {
    /// The database (or restore) folder, or a usage error naming the ways to give it.
    pub fn folder(&self) -> Result<&Path, Failure> {
        self.db.as_deref().ok_or_else(|| missing("db"))
    }
}

impl PointArgs {
    /// The point `--point` or `--at` names, else the newest.
    pub fn which(&self) -> Result<Which, Failure> {
        match (&self.point, &self.at) {
            (Some(_), Some(_)) => Err(Failure::usage("give --point or --at, not both")),
            (Some(id), None) => Ok(Which::Id(id.clone())),
            (None, Some(at)) => Ok(Which::At(parse_time(at, Utc::now())?)),
            (None, None) => Ok(Which::Latest),
        }
    }
}

/// `copy`'s `--from` or `--to` (`flag`), or a usage error naming the ways to give it.
fn given<'a>(value: &'a Option<String>, flag: &str) -> Result<&'a str, Failure> {
    value.as_deref().ok_or_else(|| {
        Failure::usage(format!(
            "missing --{flag} (or ESBACKUP_COPY_{} / `copy_{flag}:` in the config file): the location to copy {flag}",
            flag.to_uppercase()
        ))
    })
}

impl LogArgs {
    /// The records `--stream`, `--from`, `--to` and `--deletes` ask for.
    pub fn filter(&self, now: DateTime<Utc>) -> Result<LogFilter, Failure> {
        let bound = |flag: &str, text: &Option<String>| match text {
            None => Ok(None),
            Some(t) => parse_bound(flag, t, now).map(Some),
        };
        Ok(LogFilter {
            stream: self.stream.clone(),
            from: bound("from", &self.log_from)?,
            to: bound("to", &self.log_to)?,
            deletes: self.deletes,
        })
    }
}

/// `--from`/`--to`: a log position (a number), an RFC 3339 time or an age.
fn parse_bound(flag: &str, text: &str, now: DateTime<Utc>) -> Result<Bound, Failure> {
    if let Ok(position) = text.trim().parse::<i64>() {
        return match position {
            p if p >= 0 => Ok(Bound::Position(p)),
            _ => Err(Failure::usage(format!(
                "--{flag} {text}: a log position is 0 or more"
            ))),
        };
    }
    parse_time(text, now).map(Bound::Time).map_err(|_| {
        Failure::usage(format!(
            "--{flag} {text:?} is neither a log position (268435456), an RFC 3339 time (2026-12-05T14:02:00Z) nor an age (90m, 2h, 3d)"
        ))
    })
}

fn missing(what: &str) -> Failure {
    Failure::usage(format!(
        "missing --{what} (or ESBACKUP_{} / `{what}:` in the config file)",
        what.to_uppercase()
    ))
}

/// `--at`: an RFC 3339 time, or an age before `now` (`90m`, `2h`, `3d`, `1w`).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Failure> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    match text.parse::<HumanDuration>() {
        Ok(age) => chrono::Duration::from_std(age.0)
            .ok()
            .and_then(|age| now.checked_sub_signed(age))
            .ok_or_else(|| Failure::usage(format!("--at {text:?} is too far back"))),
        Err(_) => Err(Failure::usage(format!(
            "--at {text:?} is neither an RFC 3339 time (2026-11-30T06:00:00Z) nor an age (90m, 2h, 3d, 1w)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn at_takes_rfc3339_or_an_age() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        assert_eq!(
            parse_time("2026-11-30T06:00:00Z", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 30, 6, 0, 0).unwrap()
        );
        assert_eq!(
            parse_time("2026-11-30T07:00:00+01:00", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 30, 6, 0, 0).unwrap()
        );
        assert_eq!(
            parse_time("2h", now).unwrap(),
            now - chrono::Duration::hours(2)
        );
        assert_eq!(
            parse_time("3d", now).unwrap(),
            now - chrono::Duration::days(3)
        );
        assert!(parse_time("yesterday", now).is_err());
    }

    #[test]
    fn log_bounds_are_positions_times_or_ages() {
        let now = Utc.with_ymd_and_hms(2026, 12, 5, 15, 0, 0).unwrap();
        let at = |t: &str| parse_bound("from", t, now);
        assert_eq!(at("268435456").unwrap(), Bound::Position(268_435_456));
        assert_eq!(
            at("2026-12-05T14:02:00Z").unwrap(),
            Bound::Time(Utc.with_ymd_and_hms(2026, 12, 5, 14, 2, 0).unwrap())
        );
        assert_eq!(
            at("1h").unwrap(),
            Bound::Time(now - chrono::Duration::hours(1))
        );
        assert!(at("-5").unwrap_err().message.contains("0 or more"));
        assert!(at("soon").unwrap_err().message.contains("--from \"soon\""));
    }
}

/// The README's configuration table lists every option of every command with its flag,
/// environment variable, YAML key and default as `args.rs` defines them, and nothing else.
#[cfg(test)]
mod readme {
    use std::collections::BTreeMap;

    use clap::Arg;

    use crate::args::command;
    use crate::config::yaml_key;

    /// The default an option's definition states: clap's, else its help's `[default: ...]`.
    fn stated_default(arg: &Arg) -> String {
        let values: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if !values.is_empty() {
            return values.join(",");
        }
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        match help
            .split_once("[default: ")
            .and_then(|(_, r)| r.split_once(']'))
        {
            Some((default, _)) => default.replace('`', ""),
            None => "—".to_string(),
        }
    }

    /// The table's rows by flag and environment variable (a flag two commands use for different
    /// things, `--from` of `copy` and of `log`, has a row each): (YAML key, default), backticks
    /// removed.
    fn table() -> BTreeMap<(String, String), [String; 2]> {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md");
        let start = readme
            .find("| option | flag |")
            .expect("the configuration table");
        readme[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with("| "))
            .map(|row| {
                let cells: Vec<String> =
                    row.split('|').map(|c| c.trim().replace('`', "")).collect();
                (
                    (cells[2].clone(), cells[3].clone()),
                    [cells[4].clone(), cells[5].clone()],
                )
            })
            .collect()
    }

    #[test]
    fn the_readme_table_states_each_options_flag_environment_variable_yaml_key_and_default() {
        let rows = table();
        let mut seen = BTreeMap::new();
        // `completions` and `man` print a script or a page: no option to configure.
        let configurable = |name: &str| !["completions", "man"].contains(&name);
        let cmd = command();
        for sub in crate::args::subcommands(&cmd)
            .into_iter()
            .filter(|s| configurable(s.get_name()))
        {
            // Positional arguments (`key remove ID`) are not settings.
            let options = sub.get_arguments().filter(|a| !a.is_positional());
            for arg in options.filter(|a| a.get_long() != Some("help")) {
                let long = arg.get_long().expect("every option has a flag");
                let Some(key) = yaml_key(arg) else {
                    assert_eq!(
                        sub.get_name(),
                        "demo",
                        "--{long} has no environment variable"
                    );
                    continue;
                };
                let env = arg.get_env().unwrap().to_string_lossy().into_owned();
                let default = stated_default(arg);
                let flag = format!("--{long}");
                let id = (flag.clone(), env.clone());
                let [row_key, row_default] = rows
                    .get(&id)
                    .unwrap_or_else(|| panic!("README's configuration table lacks {flag} ({env})"));
                assert_eq!(row_key, &key, "README's row of {flag} ({env})");
                // One row per flag: a command whose default differs is named in the cell
                // ("the newest (copy: every point newer ...)").
                let own = format!("{}: {default}", sub.get_name());
                assert!(
                    *row_default == default
                        || row_default.starts_with(&format!("{default} "))
                        || row_default.contains(&own),
                    "README says {flag} defaults to {row_default:?}; args.rs says {default:?}"
                );
                seen.insert(id, key);
            }
        }
        let extra: Vec<_> = rows.keys().filter(|f| !seen.contains_key(*f)).collect();
        assert!(
            extra.is_empty(),
            "README lists options that do not exist: {extra:?}"
        );
        assert!(seen.len() > 20, "only {} options seen", seen.len());
        for key in seen.values() {
            let value = match key.as_str() {
                k if k.ends_with("prune") => "true",
                "metrics_addr" => "127.0.0.1:9464",
                "read_data_subset" => "1/7",
                "node_unreachable" => "continue",
                "schedule.cron" => "\"*/5 * * * *\"",
                _ => "1",
            };
            let yaml = match key.split_once('.') {
                Some((block, k)) => format!("{block}:\n  {k}: {value}\n"),
                None => format!("{key}: {value}\n"),
            };
            let file = crate::config::FileConfig::parse("t.yaml".as_ref(), &yaml);
            assert!(
                file.and_then(|f| f.apply(command()).map(drop)).is_ok(),
                "the config file does not accept `{key}`"
            );
        }
    }
}
