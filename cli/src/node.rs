//! `--node-url`: backups with the node's scavenge stopped around them (esbackup-node's
//! `with_scavenge_paused`), for `backup` and `run`. What was stopped and started again goes
//! into the backup's notes, and into its warnings when something is left stopped.

use std::sync::Arc;

use esbackup_engine::{backup, BackupOptions, BackupReport, EngineError, ErrorKind, Target};
use esbackup_node::{with_scavenge_paused, NodeArgs, NodeClient, ScavengePolicy, ScavengeReport};

use crate::exit::Failure;

/// The node to coordinate with.
pub struct Node {
    client: NodeClient,
    policy: ScavengePolicy,
}

impl Node {
    /// `None` without `--node-url`; a usage error for settings that cannot work (no password
    /// source, an unreadable password or CA file, a bad URL).
    pub fn from_args(a: &NodeArgs) -> Result<Option<Node>, Failure> {
        let usage = |e: esbackup_node::NodeError| Failure::usage(e.to_string());
        let Some(settings) = a.settings().map_err(usage)? else {
            return Ok(None);
        };
        let client = NodeClient::new(settings).map_err(usage)?;
        Ok(Some(Node {
            client,
            policy: a.policy(),
        }))
    }
}

/// A backup, with `node`'s scavenge stopped around it when there is one; also what was done
/// to the scavenge.
pub async fn backup_beside(
    node: Option<&Node>,
    target: Arc<dyn Target>,
    opts: &BackupOptions,
) -> (Result<BackupReport, EngineError>, Option<ScavengeReport>) {
    let Some(node) = node else {
        return (backup(target, opts).await, None);
    };
    // The node's state goes into the point (backing up a follower is the vendor's advice).
    let mut opts = opts.clone();
    match node.client.info().await {
        Ok(info) => opts.node_state = Some(info.state),
        Err(e) => tracing::warn!("the node's /info did not answer, its state is not recorded: {e}"),
    }
    let opts = &opts;
    let (result, report) =
        match with_scavenge_paused(&node.client, &node.policy, || backup(target, opts)).await {
            Ok(done) => done,
            Err(not_paused) => {
                let message = not_paused.to_string();
                return (
                    Err(EngineError::new(ErrorKind::Node, message)),
                    Some(not_paused.report),
                );
            }
        };
    let summary = format!("the node's scavenge: {report}");
    if report.left_stopped() {
        tracing::error!("{summary}");
    }
    let result = result.map(|mut r| {
        match report.left_stopped() {
            true => r.warnings.push(summary),
            false => r.notes.push(summary),
        }
        r
    });
    (result, Some(report))
}
