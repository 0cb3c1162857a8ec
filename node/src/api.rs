//! What the node's endpoints answer: their JSON bodies (camelCase, as the server writes them)
//! and the typed outcomes [`crate::NodeClient`] returns.

use serde::Deserialize;

/// `GET /admin/scavenge/current`: `scavengeId` is empty when none runs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CurrentDto {
    #[serde(default)]
    pub scavenge_id: String,
}

/// `POST /admin/scavenge`'s 200 body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StartedDto {
    pub scavenge_id: String,
}

/// `GET /auto-scavenge/status`.
#[derive(Deserialize)]
pub(crate) struct AutoStatusDto {
    pub state: String,
}

/// `GET /info`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InfoDto {
    #[serde(default)]
    pub es_version: String,
    pub state: String,
}

/// What `DELETE /admin/scavenge/{id}` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// Stopped (200, after the scavenge stopped): its id.
    Stopped(String),
    /// No such scavenge runs (404): it finished meanwhile.
    NotRunning,
}

/// What `POST /admin/scavenge` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartOutcome {
    /// Started (200): the new scavenge's id.
    Started(String),
    /// One runs already (400 "Scavenge is already running").
    AlreadyRunning,
}

/// What `POST /auto-scavenge/pause` answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseOutcome {
    /// 200: paused.
    Paused,
    /// 202: pausing, still stopping its node scavenge; ask again.
    StillStopping,
}

/// What `POST /auto-scavenge/resume` answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeOutcome {
    /// 200: resumed (or it was not paused).
    Resumed,
    /// 400 "currently pausing": ask again once paused.
    StillPausing,
}

/// The auto-scavenge process's state (`GET /auto-scavenge/status`'s `state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AutoScavengeState {
    NotConfigured,
    Waiting,
    InProgress,
    Pausing,
    Paused,
    Other(String),
}

impl AutoScavengeState {
    pub(crate) fn from_name(name: &str) -> AutoScavengeState {
        match name {
            "NotConfigured" => AutoScavengeState::NotConfigured,
            "Waiting" => AutoScavengeState::Waiting,
            "InProgress" => AutoScavengeState::InProgress,
            "Pausing" => AutoScavengeState::Pausing,
            "Paused" => AutoScavengeState::Paused,
            other => AutoScavengeState::Other(other.to_string()),
        }
    }
}

/// `GET /info`: the node's version and state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub version: String,
    /// The node's state in lower case: `leader`, `follower`, `readonlyreplica`, `clone`…
    pub state: String,
}

/// A node's role in its cluster, from its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeRole {
    Leader,
    Follower,
    ReadOnlyReplica,
    /// Any other state (catching up, electing, shutting down…), as the node names it.
    Other(String),
}

impl NodeInfo {
    /// The node's role; backing up a follower or a read-only replica is the vendor's advice.
    pub fn role(&self) -> NodeRole {
        match self.state.as_str() {
            "leader" => NodeRole::Leader,
            "follower" => NodeRole::Follower,
            "readonlyreplica" => NodeRole::ReadOnlyReplica,
            other => NodeRole::Other(other.to_string()),
        }
    }
}

/// The writer checkpoint in a Prometheus text exposition: the sample of
/// `kurrentdb_checkpoints` (or `eventstore_checkpoints`) labelled `name="writer"`.
pub(crate) fn writer_from_metrics(text: &str) -> Option<i64> {
    text.lines().find_map(|line| {
        let rest = line
            .strip_prefix("kurrentdb_checkpoints{")
            .or_else(|| line.strip_prefix("eventstore_checkpoints{"))?;
        let (labels, value) = rest.split_once('}')?;
        labels
            .split(',')
            .any(|l| l.trim() == "name=\"writer\"")
            .then(|| value.split_whitespace().next()?.parse::<f64>().ok())
            .flatten()
            .map(|v| v as i64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_sample_is_found_among_the_checkpoints() {
        let text = "# TYPE kurrentdb_checkpoints gauge\n\
            kurrentdb_checkpoints{name=\"replication\",read=\"non-flushed\"} 613363 1688054162478\n\
            kurrentdb_checkpoints{name=\"writer\",read=\"non-flushed\"} 613400 1688054162478\n";
        assert_eq!(writer_from_metrics(text), Some(613400));
        assert_eq!(
            writer_from_metrics("eventstore_checkpoints{name=\"writer\"} 12"),
            Some(12)
        );
        assert_eq!(
            writer_from_metrics("kurrentdb_checkpoints{name=\"index\"} 5"),
            None
        );
    }

    #[test]
    fn roles_come_from_the_lower_case_state() {
        let info = |s: &str| NodeInfo {
            version: "25.1.0".into(),
            state: s.into(),
        };
        assert_eq!(info("follower").role(), NodeRole::Follower);
        assert_eq!(info("readonlyreplica").role(), NodeRole::ReadOnlyReplica);
        assert_eq!(
            info("catchingup").role(),
            NodeRole::Other("catchingup".into())
        );
    }
}
