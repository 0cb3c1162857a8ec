//! A scavenge that runs only when asked, as the node admin API asks for one (`POST
//! /admin/scavenge`, `DELETE /admin/scavenge/{id}`), and the auto-scavenge process that starts
//! and pauses it.
//!
//! [`Node::controlled_scavenge`] switches a node to this mode and gives a [`ScavengeControl`],
//! shared with the API (or a test). The scavenge covers the completed chunks the chaser had
//! passed when it started (its scavenge point) and replaces them one at a time, each through the
//! usual three-stage chunk job (temp file, body, switch-in) as the node steps. A stop takes
//! effect between chunks; the next start resumes from the next chunk, as the server's does
//! ("The next time a scavenge is started, it will resume from the place the previous scavenge
//! stopped"). Random scavenges, merges and raw replication are off in this mode.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::node::{ChunkMeta, Node};
use crate::scavenge::JobKind;
use crate::Checkpoints;

/// Where the controlled scavenge is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScavengeStatus {
    /// None was ever started.
    Idle,
    /// Running (or about to start: the node picks the request up at its next step).
    Running,
    /// A stop was asked for; the node stops after the chunk in hand.
    Stopping,
    /// Stopped between chunks; a new start resumes from the next chunk.
    Stopped,
    /// Every chunk up to its scavenge point was scavenged.
    Completed,
}

/// The auto-scavenge process's state, as `GET /auto-scavenge/status` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoScavenge {
    /// No schedule.
    NotConfigured,
    /// Scheduled, between cycles.
    Waiting,
    /// A cycle runs: it started the node's scavenge.
    InProgress,
    /// Paused while its scavenge is being stopped (pause answers 202).
    Pausing,
    /// Paused; `while_scavenging` when a resume continues the interrupted cycle.
    Paused { while_scavenging: bool },
}

impl AutoScavenge {
    /// The name the server's status endpoint gives this state.
    pub fn name(self) -> &'static str {
        match self {
            AutoScavenge::NotConfigured => "NotConfigured",
            AutoScavenge::Waiting => "Waiting",
            AutoScavenge::InProgress => "InProgress",
            AutoScavenge::Pausing => "Pausing",
            AutoScavenge::Paused { .. } => "Paused",
        }
    }
}

/// What tests and the API see of the controlled scavenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScavengeState {
    /// The running or last scavenge's id (a new one per start, as on the server).
    pub id: Option<String>,
    pub status: ScavengeStatus,
    /// Chunks of the current scavenge point done so far (across stops and resumes).
    pub chunks_done: usize,
    /// Chunks up to the current scavenge point (0 until the node picked a start up).
    pub chunks_total: usize,
    /// Scavenges started so far.
    pub starts: u32,
    /// Stops that took effect so far.
    pub stops: u32,
}

/// Why a start or stop was refused (the server's 400 and 404 answers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `POST /admin/scavenge` while one runs: 400 "Scavenge is already running".
    AlreadyRunning(String),
    /// `DELETE /admin/scavenge/{id}` for no running scavenge of that id: 404.
    NotFound,
}

#[derive(Debug)]
struct Shared {
    state: ScavengeState,
    start_requested: bool,
    /// Logical chunk starts to scavenge up to the scavenge point, in order.
    todo: Vec<u32>,
    /// Do not start chunk `todo[limit]` or later (a throttle for tests).
    limit: Option<usize>,
    auto: AutoScavenge,
    checkpoints: Checkpoints,
    steps: u64,
}

/// The handle on a node's controlled scavenge, shared by the node and its admin API.
#[derive(Clone, Debug)]
pub struct ScavengeControl(Arc<Mutex<Shared>>);

impl ScavengeControl {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The scavenge's state now.
    pub fn state(&self) -> ScavengeState {
        self.lock().state.clone()
    }

    /// The node's checkpoints as of its last step.
    pub fn checkpoints(&self) -> Checkpoints {
        self.lock().checkpoints
    }

    /// The node's steps so far, as of its last step.
    pub fn node_steps(&self) -> u64 {
        self.lock().steps
    }

    /// Starts a scavenge (resuming a stopped one from its next chunk) and returns its new id.
    pub fn start(&self) -> Result<String, Refused> {
        let mut s = self.lock();
        start_locked(&mut s)
    }

    /// Asks the running scavenge with this id (or any, for `current`) to stop; it stops after
    /// the chunk in hand. Returns its id.
    pub fn request_stop(&self, id: &str) -> Result<String, Refused> {
        let mut s = self.lock();
        match (&s.state.id, s.state.status) {
            (Some(cur), ScavengeStatus::Running | ScavengeStatus::Stopping)
                if id == "current" || id == cur =>
            {
                let cur = cur.clone();
                s.state.status = ScavengeStatus::Stopping;
                Ok(cur)
            }
            _ => Err(Refused::NotFound),
        }
    }

    /// Lets the scavenge start only its first `chunks` chunks (`None`: all), like a throttled
    /// scavenge that is still running; tests use it to catch a scavenge mid-way.
    pub fn limit_chunks(&self, chunks: Option<usize>) {
        self.lock().limit = chunks;
    }

    /// The auto-scavenge process's state.
    pub fn auto_scavenge(&self) -> AutoScavenge {
        self.lock().auto
    }

    /// Gives auto-scavenge a schedule (NotConfigured → Waiting).
    pub fn configure_auto_scavenge(&self) {
        let mut s = self.lock();
        if s.auto == AutoScavenge::NotConfigured {
            s.auto = AutoScavenge::Waiting;
        }
    }

    /// A scheduled cycle begins (as when the schedule fires): Waiting → InProgress, starting
    /// the node's scavenge.
    pub fn begin_auto_cycle(&self) -> Result<String, Refused> {
        let mut s = self.lock();
        let id = start_locked(&mut s)?;
        s.auto = AutoScavenge::InProgress;
        Ok(id)
    }

    /// `POST /auto-scavenge/pause`: `true` when paused (200), `false` while still stopping
    /// its scavenge (202).
    pub fn pause_auto_scavenge(&self) -> bool {
        let mut s = self.lock();
        match s.auto {
            AutoScavenge::NotConfigured | AutoScavenge::Waiting => {
                s.auto = AutoScavenge::Paused {
                    while_scavenging: false,
                };
                true
            }
            AutoScavenge::InProgress => {
                if matches!(s.state.status, ScavengeStatus::Running) {
                    s.state.status = ScavengeStatus::Stopping;
                }
                s.auto = AutoScavenge::Pausing;
                false
            }
            AutoScavenge::Pausing => false,
            AutoScavenge::Paused { .. } => true,
        }
    }

    /// `POST /auto-scavenge/resume`: `Err` while pausing (the server's 400), else resumed (a
    /// cycle interrupted by the pause continues: its scavenge starts again and resumes).
    pub fn resume_auto_scavenge(&self) -> Result<(), &'static str> {
        let mut s = self.lock();
        match s.auto {
            AutoScavenge::Pausing => Err("Auto scavenge process is currently pausing"),
            AutoScavenge::Paused { while_scavenging } => {
                if while_scavenging {
                    // A scavenge started by hand meanwhile is adopted by the cycle.
                    let _ = start_locked(&mut s);
                    s.auto = AutoScavenge::InProgress;
                } else {
                    s.auto = AutoScavenge::Waiting;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn start_locked(s: &mut Shared) -> Result<String, Refused> {
    if let (Some(id), ScavengeStatus::Running | ScavengeStatus::Stopping) =
        (&s.state.id, s.state.status)
    {
        return Err(Refused::AlreadyRunning(id.clone()));
    }
    let id = uuid::Uuid::new_v4().to_string();
    s.state.id = Some(id.clone());
    s.state.status = ScavengeStatus::Running;
    s.state.starts += 1;
    s.start_requested = true;
    Ok(id)
}

impl Node {
    /// Switches this node to scavenges run only through the returned control (see the module
    /// docs); random scavenges, merges and raw replication stop. Calling it again gives the
    /// same control.
    pub fn controlled_scavenge(&mut self) -> ScavengeControl {
        self.cfg.scavenge = false;
        let steps = self.steps;
        let cps = self.cps;
        self.control
            .get_or_insert_with(|| {
                ScavengeControl(Arc::new(Mutex::new(Shared {
                    state: ScavengeState {
                        id: None,
                        status: ScavengeStatus::Idle,
                        chunks_done: 0,
                        chunks_total: 0,
                        starts: 0,
                        stops: 0,
                    },
                    start_requested: false,
                    todo: Vec::new(),
                    limit: None,
                    auto: AutoScavenge::NotConfigured,
                    checkpoints: cps,
                    steps,
                })))
            })
            .clone()
    }

    /// After each step: picks up a start, makes a stop take effect between chunks, notes a
    /// completion, and publishes the checkpoints.
    pub(crate) fn sync_controlled_scavenge(&mut self) {
        let Some(ctl) = self.control.clone() else {
            return;
        };
        let mut s = ctl.lock();
        s.checkpoints = self.cps;
        s.steps = self.steps;
        if std::mem::take(&mut s.start_requested)
            && (s.todo.is_empty() || s.state.chunks_done >= s.todo.len())
        {
            // A fresh scavenge point: every completed chunk the chaser has passed.
            s.todo = self.passed_chunks().iter().map(|m| m.start).collect();
            s.state.chunks_done = 0;
            s.state.chunks_total = s.todo.len();
        }
        if self.chunk_job.is_some() {
            return;
        }
        match s.state.status {
            ScavengeStatus::Stopping => {
                s.state.status = ScavengeStatus::Stopped;
                s.state.stops += 1;
                if s.auto == AutoScavenge::Pausing {
                    s.auto = AutoScavenge::Paused {
                        while_scavenging: true,
                    };
                }
            }
            ScavengeStatus::Running if s.state.chunks_done >= s.todo.len() => {
                s.state.status = ScavengeStatus::Completed;
                if s.auto == AutoScavenge::InProgress {
                    s.auto = AutoScavenge::Waiting;
                }
            }
            _ => {}
        }
    }

    /// The next chunk the controlled scavenge may start now, if any.
    pub(crate) fn controlled_chunk_due(&self) -> Option<u32> {
        let s = self.control.as_ref()?.lock();
        let next = s.state.chunks_done;
        let allowed = s.limit.is_none_or(|l| next < l);
        (s.state.status == ScavengeStatus::Running && self.chunk_job.is_none() && allowed)
            .then(|| s.todo.get(next).copied())
            .flatten()
    }

    /// One step of the controlled scavenge: starts the job of its next chunk (a chunk the
    /// node no longer has, e.g. archived, counts as done).
    pub(crate) fn controlled_scavenge_step(&mut self) -> io::Result<String> {
        let Some(start) = self.controlled_chunk_due() else {
            return Ok("controlled scavenge: nothing to do".into());
        };
        match self.chunks.get(&start).cloned() {
            Some(meta) => self.begin_chunk_job(JobKind::Scavenge, vec![meta]),
            None => {
                self.controlled_chunk_switched(start);
                Ok(format!(
                    "controlled scavenge: chunk {start} is gone, skipped"
                ))
            }
        }
    }

    /// Counts a switched-in chunk toward the controlled scavenge.
    pub(crate) fn controlled_chunk_switched(&mut self, start: u32) {
        if let Some(ctl) = &self.control {
            let mut s = ctl.lock();
            let next = s.state.chunks_done;
            if s.todo.get(next) == Some(&start) {
                s.state.chunks_done += 1;
            }
        }
    }

    fn passed_chunks(&self) -> Vec<ChunkMeta> {
        let size = self.cfg.chunk_size as i64;
        self.chunks
            .values()
            .filter(|m| (m.end as i64 + 1) * size <= self.cps.chaser)
            .cloned()
            .collect()
    }
}
