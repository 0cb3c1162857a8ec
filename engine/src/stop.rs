//! [`Stop`]: a request, from another task (a signal handler), that a running backup or forget
//! end at once and release its lock.
//!
//! The run is dropped at the await it is waiting on. That is safe at every await of a run:
//! the crash guarantees (a kill at any moment leaves every point restorable, see
//! `docs/FORMAT.md`) hold there, and what a drop leaves behind (an unreferenced object, an
//! incomplete multipart upload) is what a kill leaves, cleaned up by a later run. Unlike a
//! kill, the lock is then removed, so the next run does not wait for it to go stale.

use std::future::Future;

use tokio_util::sync::CancellationToken;

use crate::error::{EngineError, ErrorKind, Result};

/// A stop request shared by the run and whoever may stop it; clones share it.
#[derive(Clone, Debug, Default)]
pub struct Stop(CancellationToken);

impl Stop {
    /// A request nobody has made yet.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Asks every run holding this `Stop` (or a clone) to end.
    pub fn request(&self) {
        self.0.cancel();
    }

    pub fn is_requested(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Completes once a stop is requested.
    pub async fn requested(&self) {
        self.0.cancelled().await
    }

    /// `work`'s result, or an [`ErrorKind::Interrupted`] error naming `what` as soon as a stop
    /// is requested (then `work` is dropped where it waits).
    pub async fn or_interrupted<T>(
        &self,
        what: &str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::select! {
            biased;
            _ = self.requested() => Err(EngineError::new(
                ErrorKind::Interrupted,
                format!("{what} stopped on request before it completed: the points stored before it are intact"),
            )),
            result = work => result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_requested_stop_ends_the_work_where_it_waits() {
        let stop = Stop::new();
        let waiting = {
            let stop = stop.clone();
            tokio::spawn(async move {
                stop.or_interrupted("the backup", std::future::pending::<Result<()>>())
                    .await
            })
        };
        stop.request();
        let err = waiting.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Interrupted);
        assert!(err.to_string().contains("the backup stopped"), "{err}");
    }

    #[tokio::test]
    async fn work_that_ends_first_gives_its_own_result() {
        let stop = Stop::new();
        assert_eq!(stop.or_interrupted("x", async { Ok(7) }).await.unwrap(), 7);
    }
}
