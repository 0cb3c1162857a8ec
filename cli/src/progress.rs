//! A progress bar on stderr for long runs (only when stderr is a terminal).

use std::io::IsTerminal;
use std::sync::Arc;

use esbackup_engine::{NoProgress, Progress};
use indicatif::{ProgressBar, ProgressStyle};

struct Bar(ProgressBar);

impl Progress for Bar {
    fn phase(&self, name: &str, total_bytes: u64) {
        self.0.set_position(0);
        self.0.set_length(total_bytes);
        self.0.set_message(name.to_string());
    }

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// A bar when it can be seen and is wanted, nothing otherwise.
pub fn for_terminal(quiet: bool) -> Arc<dyn Progress> {
    if quiet || !std::io::stderr().is_terminal() {
        return Arc::new(NoProgress);
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>8} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    Arc::new(Bar(bar))
}
