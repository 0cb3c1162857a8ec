//! [`with_scavenge_paused`]: the vendor's rule for file-copy backups ("Stop the scavenge and
//! resume it after the backup") around a piece of work.
//!
//! Before the work: pause auto-scavenge where it is enabled and running (`POST
//! /auto-scavenge/pause`, asking again while it answers 202 "still stopping", within
//! [`ScavengePolicy::stop_wait`]), then ask for the current scavenge and stop it (`DELETE
//! /admin/scavenge/{id}`, which answers once it stopped). After the work — also when it
//! returned an error or panicked — start the stopped scavenge again (`POST /admin/scavenge`: it
//! resumes where it stopped; "already running" counts as running) and resume auto-scavenge,
//! each retried with backoff. An auto-scavenge found paused or pausing by someone else is left
//! paused. If the whole future is dropped before it could undo (a caller's `select!` or
//! timeout), the undoing goes on on a task of its own, logged with `tracing`; a process that
//! exits at once cannot undo anything, so an interrupted backup should return, not vanish.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use futures::FutureExt;

use crate::api::{AutoScavengeState, PauseOutcome, ResumeOutcome, StartOutcome, StopOutcome};
use crate::{NodeClient, NodeError};

/// What to do when the node cannot be prepared before the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Unreachable {
    /// Do not run the work (after undoing whatever was stopped).
    Fail,
    /// Run the work anyway (a capture copes with a scavenge by retrying) and report the error.
    Continue,
}

/// How [`with_scavenge_paused`] behaves.
#[derive(Clone, Debug)]
pub struct ScavengePolicy {
    /// When the node cannot be prepared (any error: unreachable, 401, 500, timeout).
    pub unreachable: Unreachable,
    /// Pause auto-scavenge where the node has it (`false`: never ask).
    pub pause_auto_scavenge: bool,
    /// How long a stop may take: the DELETE's timeout, and how long auto-scavenge's 202
    /// "still stopping" (and a resume's "currently pausing") is waited out.
    pub stop_wait: Duration,
    /// The first pause between asking again; retries back off from it.
    pub poll: Duration,
    /// Tries of each restart and resume after the work.
    pub restart_tries: usize,
}

impl Default for ScavengePolicy {
    fn default() -> ScavengePolicy {
        ScavengePolicy {
            unreachable: Unreachable::Fail,
            pause_auto_scavenge: true,
            stop_wait: Duration::from_secs(300),
            poll: Duration::from_millis(500),
            restart_tries: 4,
        }
    }
}

/// How a restart went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restarted {
    /// A new scavenge (resuming the stopped one) started: its id.
    Started(String),
    /// One was running already.
    AlreadyRunning,
}

/// What [`with_scavenge_paused`] did, for the run's log and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScavengeReport {
    /// The node answered before the work.
    pub reached: bool,
    /// The scavenge running before the work.
    pub found: Option<String>,
    /// The scavenge this stopped.
    pub stopped: Option<String>,
    /// Auto-scavenge's state before the work (`None`: not asked, or the node has none).
    pub auto_found: Option<AutoScavengeState>,
    /// Auto-scavenge was paused by this.
    pub auto_paused: bool,
    /// The scavenge started again after the work.
    pub restarted: Option<Restarted>,
    /// Auto-scavenge was resumed after the work.
    pub auto_resumed: bool,
    /// The scavenge was stopped and could not be started again: the last error.
    pub restart_failed: Option<String>,
    /// Auto-scavenge was paused and could not be resumed: the last error.
    pub resume_failed: Option<String>,
    /// Every error met, one line each, in order.
    pub errors: Vec<String>,
}

impl ScavengeReport {
    /// Something this stopped or paused is still stopped or paused.
    pub fn left_stopped(&self) -> bool {
        self.restart_failed.is_some() || self.resume_failed.is_some()
    }
}

impl fmt::Display for ScavengeReport {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.reached {
            parts.push("the node could not be asked about its scavenge".to_string());
        }
        match (&self.found, &self.stopped) {
            (Some(_), Some(id)) => parts.push(format!("stopped scavenge {id}")),
            (Some(id), None) => parts.push(format!("scavenge {id} was running")),
            (None, _) if self.reached => parts.push("no scavenge was running".into()),
            _ => {}
        }
        if self.auto_paused {
            parts.push("paused auto-scavenge".into());
        }
        match &self.restarted {
            Some(Restarted::Started(id)) => parts.push(format!("started it again as {id}")),
            Some(Restarted::AlreadyRunning) => parts.push("a scavenge was running again".into()),
            None => {}
        }
        if self.auto_resumed {
            parts.push("resumed auto-scavenge".into());
        }
        if let Some(e) = &self.restart_failed {
            parts.push(format!(
                "THE SCAVENGE IS STILL STOPPED: starting it again failed ({e}); start it with \
                 POST /admin/scavenge"
            ));
        }
        if let Some(e) = &self.resume_failed {
            parts.push(format!(
                "AUTO-SCAVENGE IS STILL PAUSED: resuming it failed ({e}); resume it with POST \
                 /auto-scavenge/resume"
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// The node could not be prepared and the policy is [`Unreachable::Fail`]: the work did not run.
#[derive(Debug, thiserror::Error)]
#[error(
    "the backup did not start because the node's scavenge could not be paused: {error} ({report})"
)]
pub struct NotPaused {
    pub error: NodeError,
    /// What was done and undone before giving up.
    pub report: ScavengeReport,
}

/// Runs `work` with the node's scavenge stopped and auto-scavenge paused (see the module
/// docs), and reports what was done. `Err` only when the node could not be prepared under
/// [`Unreachable::Fail`]; whatever `work` returns (its own errors too) comes back in `Ok`.
pub async fn with_scavenge_paused<T, F, Fut>(
    client: &NodeClient,
    policy: &ScavengePolicy,
    work: F,
) -> Result<(T, ScavengeReport), NotPaused>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    let mut guard = UndoOnDrop(Some(Coordination {
        client: client.clone(),
        policy: policy.clone(),
        report: ScavengeReport::default(),
        must_restart: false,
        must_resume: false,
    }));
    let c = guard.0.as_mut().expect("set above");
    if let Err(error) = c.prepare().await {
        c.report.errors.push(error.to_string());
        if policy.unreachable == Unreachable::Fail {
            c.undo().await;
            let report = guard.disarm();
            return Err(NotPaused { error, report });
        }
    }
    let outcome = AssertUnwindSafe(work()).catch_unwind().await;
    let c = guard.0.as_mut().expect("still armed");
    c.undo().await;
    let report = guard.disarm();
    match outcome {
        Ok(value) => Ok((value, report)),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

struct Coordination {
    client: NodeClient,
    policy: ScavengePolicy,
    report: ScavengeReport,
    /// A scavenge ran and a stop was asked for: one must run after the work.
    must_restart: bool,
    /// This paused auto-scavenge (or asked to).
    must_resume: bool,
}

/// Undoes the stop and the pause on a task of its own when the coordination's future is
/// dropped before it could (a caller's `select!` or timeout), as long as a runtime is there.
struct UndoOnDrop(Option<Coordination>);

impl UndoOnDrop {
    fn disarm(&mut self) -> ScavengeReport {
        self.0.take().expect("armed").report
    }
}

impl Drop for UndoOnDrop {
    fn drop(&mut self) {
        let Some(mut c) = self.0.take().filter(|c| c.must_restart || c.must_resume) else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                c.undo().await;
                tracing::warn!(
                    node = c.client.url(),
                    "interrupted while the scavenge was paused: {}",
                    c.report
                );
            });
        }
    }
}

impl Coordination {
    async fn prepare(&mut self) -> Result<(), NodeError> {
        if self.policy.pause_auto_scavenge {
            self.pause_auto().await?;
        }
        let current = self.client.current_scavenge().await?;
        self.report.reached = true;
        let Some(id) = current else {
            return Ok(());
        };
        self.report.found = Some(id.clone());
        // From here on, whatever the stop answers, a scavenge must run after the work.
        self.must_restart = true;
        match self
            .client
            .stop_scavenge(&id, self.policy.stop_wait)
            .await?
        {
            StopOutcome::Stopped(id) => self.report.stopped = Some(id),
            StopOutcome::NotRunning => self.must_restart = false,
        }
        Ok(())
    }

    async fn pause_auto(&mut self) -> Result<(), NodeError> {
        let Some(state) = self.client.auto_scavenge_status().await? else {
            return Ok(());
        };
        self.report.reached = true;
        self.report.auto_found = Some(state.clone());
        match state {
            AutoScavengeState::NotConfigured | AutoScavengeState::Paused => return Ok(()),
            // Someone else asked for the pause: wait for it, but leave resuming to them.
            AutoScavengeState::Pausing => {}
            _ => self.must_resume = true,
        }
        let deadline = Instant::now() + self.policy.stop_wait;
        let mut wait = self.policy.poll;
        loop {
            match self.client.pause_auto_scavenge().await? {
                PauseOutcome::Paused => {
                    self.report.auto_paused = self.must_resume;
                    return Ok(());
                }
                PauseOutcome::StillStopping if Instant::now() >= deadline => {
                    return Err(NodeError::StillPausing {
                        url: self.client.url().to_string(),
                        waited: self.policy.stop_wait,
                    })
                }
                PauseOutcome::StillStopping => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(self.policy.poll * 8);
                }
            }
        }
    }

    /// Starts the stopped scavenge again and resumes auto-scavenge, noting what failed.
    async fn undo(&mut self) {
        if self.must_restart {
            let client = self.client.clone();
            match self.retried(|| client.start_scavenge()).await {
                Ok(StartOutcome::Started(id)) => {
                    self.report.restarted = Some(Restarted::Started(id))
                }
                Ok(StartOutcome::AlreadyRunning) => {
                    self.report.restarted = Some(Restarted::AlreadyRunning)
                }
                Err(e) => self.report.restart_failed = Some(e.to_string()),
            }
        }
        if self.must_resume {
            match self.resume().await {
                Ok(()) => self.report.auto_resumed = true,
                Err(e) => self.report.resume_failed = Some(e.to_string()),
            }
        }
    }

    /// Resumes auto-scavenge, waiting out "currently pausing" within the stop wait.
    async fn resume(&mut self) -> Result<(), NodeError> {
        let deadline = Instant::now() + self.policy.stop_wait;
        let client = self.client.clone();
        loop {
            match self.retried(|| client.resume_auto_scavenge()).await? {
                ResumeOutcome::Resumed => return Ok(()),
                ResumeOutcome::StillPausing if Instant::now() >= deadline => {
                    return Err(NodeError::StillPausing {
                        url: client.url().to_string(),
                        waited: self.policy.stop_wait,
                    })
                }
                ResumeOutcome::StillPausing => tokio::time::sleep(self.policy.poll).await,
            }
        }
    }

    /// Calls `f` up to `restart_tries` times with backoff (not again after a 401), noting
    /// every error in the report.
    async fn retried<T, F, Fut>(&mut self, f: F) -> Result<T, NodeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, NodeError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.policy.poll)
            .with_max_delay(self.policy.poll * 8)
            .with_max_times(self.policy.restart_tries.saturating_sub(1));
        let errors = &mut self.report.errors;
        let result = f
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|e| !matches!(e, NodeError::Unauthorized { .. }))
            .notify(|e, _| errors.push(e.to_string()))
            .await;
        if let Err(e) = &result {
            self.report.errors.push(e.to_string());
        }
        result
    }
}
