//! Simulator of a live node (filled in by the simulator work).
