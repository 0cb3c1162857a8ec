//! esbackup-node: the EventStoreDB / KurrentDB node's admin HTTP API as a backup needs it.
//!
//! * [`NodeClient`]: typed calls over HTTPS with basic auth (a CA file or the system's roots)
//!   for the scavenge and auto-scavenge endpoints, `/info` (the node's role) and `/metrics`
//!   (the writer checkpoint, for the lag); errors are [`NodeError`]s naming what to fix.
//! * [`with_scavenge_paused`]: stop the scavenge and pause auto-scavenge around a piece of
//!   work, and start them again afterwards whatever the work did ([`ScavengeReport`]).
//! * `NodeArgs` (feature `clap`): the `--node-*` options.
//!
//! The endpoints and their answers are those of the server (docs/FORMAT.md, "Node admin API
//! (modelled)"); the simulator (`esdb_sim::admin_api`) serves the same for tests.

mod api;
#[cfg(feature = "clap")]
mod args;
mod client;
mod coordinate;
mod error;
mod settings;

pub use api::{
    AutoScavengeState, NodeInfo, NodeRole, PauseOutcome, ResumeOutcome, StartOutcome, StopOutcome,
};
#[cfg(feature = "clap")]
pub use args::NodeArgs;
pub use client::NodeClient;
pub use coordinate::{
    with_scavenge_paused, NotPaused, Restarted, ScavengePolicy, ScavengeReport, Unreachable,
};
pub use error::NodeError;
pub use settings::{NodeSettings, Password, PasswordSource};
