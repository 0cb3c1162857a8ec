//! The signals `run` obeys. The first SIGTERM or SIGINT requests a stop: the current run ends
//! at once, releases its lock, and the process exits 0. A second one exits at once with
//! [`INTERRUPTED`]. Either way every point stays restorable (the crash guarantees). SIGHUP
//! asks for the config to be read again.

use esbackup_engine::Stop;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::exit::{Failure, INTERRUPTED};

/// The reload requests (SIGHUP) of a process whose stop requests go to a [`Stop`].
pub struct Signals {
    reloads: mpsc::UnboundedReceiver<()>,
}

impl Signals {
    /// Installs the handlers; stops go to `stop`.
    pub fn install(stop: Stop) -> Result<Signals, Failure> {
        let failed = |e: std::io::Error| Failure {
            code: 1,
            message: format!("cannot install the signal handlers: {e}"),
        };
        let mut term = signal(SignalKind::terminate()).map_err(failed)?;
        let mut int = signal(SignalKind::interrupt()).map_err(failed)?;
        let mut hup = signal(SignalKind::hangup()).map_err(failed)?;
        let (reload, reloads) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                    _ = hup.recv() => {
                        let _ = reload.send(());
                        continue;
                    }
                };
                if stop.is_requested() {
                    tracing::warn!("{name} again: exiting at once (every point stays restorable)");
                    std::process::exit(INTERRUPTED);
                }
                tracing::info!("{name}: stopping (the current run ends and releases its lock)");
                stop.request();
            }
        });
        Ok(Signals { reloads })
    }

    /// Completes at the next SIGHUP.
    pub async fn reload_requested(&mut self) {
        if self.reloads.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}
