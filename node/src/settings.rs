//! [`NodeSettings`]: where the node is and how to log in. The password comes from an
//! environment variable or a file, never from a command-line value.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::NodeError;

/// How to reach a node's admin API.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// `https://127.0.0.1:2113` (or `http://` for a node run insecure).
    pub url: String,
    pub user: String,
    pub password: Password,
    /// The CA that signed the node's certificate; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// For one request (a stop waits longer: see `ScavengePolicy::stop_wait`).
    pub timeout: Duration,
}

/// A password, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Where the password is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    /// An environment variable's value.
    Env(String),
    /// A file's content, without its trailing line break.
    File(PathBuf),
}

impl PasswordSource {
    /// Reads the password.
    pub fn read(&self) -> Result<Password, NodeError> {
        match self {
            PasswordSource::Env(name) => std::env::var(name).map(Password).map_err(|_| {
                NodeError::Password(format!(
                    "the environment variable {name} (--node-password-env) is not set"
                ))
            }),
            PasswordSource::File(path) => std::fs::read_to_string(path)
                .map(|text| Password(text.trim_end_matches(['\r', '\n']).to_string()))
                .map_err(|e| {
                    NodeError::Password(format!(
                        "cannot read {} (--node-password-file): {e}",
                        path.display()
                    ))
                }),
        }
    }
}
