//! Storage targets (filled in by the backends work).
