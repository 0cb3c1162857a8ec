//! Progress reporting for long runs. The CLI shows a bar; library users may plug their own.

/// Receives progress events. Methods are called from the engine's task; keep them cheap.
pub trait Progress: Send + Sync {
    /// A phase starts (`"chunks"`, `"index"`, `"restore"`), moving about `total_bytes`.
    fn phase(&self, _name: &str, _total_bytes: u64) {}
    /// `bytes` more bytes were transferred (a file may be sent again after a retry).
    fn advance(&self, _bytes: u64) {}
    /// A file was transferred (or checked) completely.
    fn file_done(&self, _key: &str, _bytes: u64) {}
    /// The run is over.
    fn finish(&self) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
