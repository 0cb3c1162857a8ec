//! Example custom backend (filled in by the backends work).
