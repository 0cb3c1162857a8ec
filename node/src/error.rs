//! [`NodeError`]: what went wrong talking to the node, each in one line naming what to fix.

use std::path::PathBuf;
use std::time::Duration;

/// An error of the node's admin API.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot reach the node at {url}: {reason} (check --node-url and that the node is up)")]
    Unreachable { url: String, reason: String },
    #[error(
        "the node at {url} did not answer within {} (raise --node-timeout, or check the node)",
        humanise(*timeout)
    )]
    Timeout { url: String, timeout: Duration },
    #[error("the node at {url} refused user {user:?} with 401 Unauthorized (check --node-user and the node password)")]
    Unauthorized { url: String, user: String },
    #[error("TLS with the node at {url} failed: {reason} (check {})", trusted(ca))]
    Tls {
        url: String,
        /// The CA file trusted, or `None` for the system roots.
        ca: Option<PathBuf>,
        reason: String,
    },
    #[error("the node answered {method} {url} with {status}: {body}")]
    Status {
        method: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error("the node answered {url} with something unexpected: {reason}")]
    BadBody { url: String, reason: String },
    #[error("cannot use the node CA file {}: {reason} (check --node-ca)", path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error("invalid node URL {url:?}: {reason} (write e.g. --node-url https://127.0.0.1:2113)")]
    BadUrl { url: String, reason: String },
    #[error(
        "auto-scavenge on the node at {url} was still stopping its scavenge after {} (the \
         node answers 202 until it stopped; try again later)",
        humanise(*waited)
    )]
    StillPausing { url: String, waited: Duration },
    #[error("no node password: {0}")]
    Password(String),
}

fn trusted(ca: &Option<PathBuf>) -> String {
    match ca {
        Some(path) => format!("the CA file {} given by --node-ca", path.display()),
        None => "the system's roots, or give the node's CA with --node-ca".into(),
    }
}

fn humanise(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl NodeError {
    /// The node could not be asked at all (down, unreachable, too slow, TLS refused): the
    /// cases the unreachable policy covers.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            NodeError::Unreachable { .. } | NodeError::Timeout { .. } | NodeError::Tls { .. }
        )
    }
}
