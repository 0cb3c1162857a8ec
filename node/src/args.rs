//! [`NodeArgs`]: the `--node-*` command-line options (feature `clap`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use esbackup_engine::parse_duration;

use crate::{NodeError, NodeSettings, PasswordSource, ScavengePolicy, Unreachable};

/// How to reach the node's admin API, to stop its scavenge during a capture and read its
/// writer checkpoint and role.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct NodeArgs {
    /// The node's HTTP address, e.g. https://127.0.0.1:2113. Without it, esbackup does not
    /// talk to the node (and does not stop its scavenge).
    #[arg(long, env = "ESBACKUP_NODE_URL", value_name = "URL")]
    pub node_url: Option<String>,

    /// The user to log in as (a member of $admins or $ops).
    #[arg(
        long,
        env = "ESBACKUP_NODE_USER",
        value_name = "USER",
        default_value = "admin"
    )]
    pub node_user: String,

    /// Read the node password from this environment variable (never from a command-line
    /// value, which other users can see).
    #[arg(
        long,
        env = "ESBACKUP_NODE_PASSWORD_ENV",
        value_name = "NAME",
        conflicts_with = "node_password_file"
    )]
    pub node_password_env: Option<String>,

    /// Read the node password from this file (its trailing line break is dropped).
    #[arg(long, env = "ESBACKUP_NODE_PASSWORD_FILE", value_name = "FILE")]
    pub node_password_file: Option<PathBuf>,

    /// The CA certificate(s) (PEM) that signed the node's certificate; without it the
    /// system's roots are trusted. Nodes use TLS by default, often with their own CA.
    #[arg(long, env = "ESBACKUP_NODE_CA", value_name = "FILE")]
    pub node_ca: Option<PathBuf>,

    /// How long one request to the node may take (e.g. 10s, 1m); stopping a scavenge may
    /// take longer and is waited for separately.
    #[arg(long, env = "ESBACKUP_NODE_TIMEOUT", value_name = "DURATION", default_value = "10s",
          value_parser = parse_duration)]
    pub node_timeout: Duration,

    /// When the node cannot be asked before a capture (down, unreachable, 401, 500, timeout):
    /// fail the run, or continue and rely on the capture's own retries while a scavenge
    /// replaces chunks. Reported either way.
    #[arg(
        long,
        env = "ESBACKUP_NODE_UNREACHABLE",
        value_name = "WHAT",
        value_enum,
        default_value = "fail"
    )]
    pub node_unreachable: Unreachable,
}

impl NodeArgs {
    /// The settings, reading the password; `None` without `--node-url`.
    pub fn settings(&self) -> Result<Option<NodeSettings>, NodeError> {
        let Some(url) = &self.node_url else {
            return Ok(None);
        };
        let source = match (&self.node_password_env, &self.node_password_file) {
            (Some(name), _) => PasswordSource::Env(name.clone()),
            (None, Some(path)) => PasswordSource::File(path.clone()),
            (None, None) => {
                return Err(NodeError::Password(
                    "--node-url needs --node-password-env NAME or --node-password-file FILE".into(),
                ))
            }
        };
        Ok(Some(NodeSettings {
            url: url.clone(),
            user: self.node_user.clone(),
            password: source.read()?,
            ca_file: self.node_ca.clone(),
            timeout: self.node_timeout,
        }))
    }

    /// The coordination policy these options ask for.
    pub fn policy(&self) -> ScavengePolicy {
        ScavengePolicy {
            unreachable: self.node_unreachable,
            ..ScavengePolicy::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        node: NodeArgs,
    }

    fn parse(args: &[&str]) -> Result<NodeArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied())).map(|c| c.node)
    }

    #[test]
    fn the_password_comes_from_a_file_and_the_timeout_reads_units() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let args = parse(&[
            "--node-url",
            "https://127.0.0.1:2113",
            "--node-password-file",
            file.to_str().unwrap(),
            "--node-timeout",
            "1m 30s",
            "--node-unreachable",
            "continue",
        ])
        .unwrap();
        let settings = args.settings().unwrap().unwrap();
        assert_eq!(settings.password.0, "s3cret");
        assert_eq!(settings.user, "admin");
        assert_eq!(settings.timeout, Duration::from_secs(90));
        assert_eq!(args.policy().unreachable, Unreachable::Continue);
    }

    #[test]
    fn a_node_url_without_a_password_source_is_refused_naming_the_options() {
        let args = parse(&["--node-url", "https://n:2113"]).unwrap();
        let err = args.settings().unwrap_err().to_string();
        assert!(err.contains("--node-password-env"), "{err}");
        assert!(args.node_password_env.is_none());
        assert!(
            parse(&["--node-password", "x"]).is_err(),
            "no password value option"
        );
    }

    #[test]
    fn a_missing_password_variable_is_named() {
        let args = parse(&[
            "--node-url",
            "https://n:2113",
            "--node-password-env",
            "ESBACKUP_NODE_TEST_UNSET_VARIABLE",
        ])
        .unwrap();
        let err = args.settings().unwrap_err().to_string();
        assert!(err.contains("ESBACKUP_NODE_TEST_UNSET_VARIABLE"), "{err}");
    }

    #[test]
    fn without_a_node_url_there_are_no_settings() {
        assert!(parse(&[]).unwrap().settings().unwrap().is_none());
    }
}
