//! Running a node "live": a thread steps it continuously while tests read its files.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::Node;

/// A node being stepped on its own thread; [`LiveHandle::stop`] gives it back.
pub struct LiveHandle {
    stop: Arc<AtomicBool>,
    steps: Arc<AtomicU64>,
    thread: JoinHandle<(Node, io::Result<()>)>,
}

/// Spawns a thread that calls `node.step()` in a loop, sleeping 0–2 ms between steps, until
/// [`LiveHandle::stop`] is called or a step fails.
pub fn run_live(mut node: Node) -> LiveHandle {
    let stop = Arc::new(AtomicBool::new(false));
    let steps = Arc::new(AtomicU64::new(0));
    let (stop2, steps2) = (stop.clone(), steps.clone());
    let thread = thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            if let Err(e) = node.step() {
                return (node, Err(e));
            }
            let n = steps2.fetch_add(1, Ordering::Relaxed) + 1;
            let ms = n % 3;
            if ms > 0 {
                thread::sleep(Duration::from_millis(ms));
            }
        }
        (node, Ok(()))
    });
    LiveHandle {
        stop,
        steps,
        thread,
    }
}

impl LiveHandle {
    /// Steps completed so far.
    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }

    /// Stops the thread after its current step and returns the node (or the step's error).
    pub fn stop(self) -> io::Result<Node> {
        self.stop.store(true, Ordering::Relaxed);
        let (node, result) = self
            .thread
            .join()
            .map_err(|_| io::Error::other("the live node thread panicked"))?;
        result.map(|()| node)
    }
}
