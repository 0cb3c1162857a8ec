//! Targets for tests: an in-memory store and a fault-injecting wrapper. Never a substitute for
//! testing a real backend.

mod faults;
mod memory;

pub use faults::{FaultPlan, FaultyTarget};
pub use memory::MemoryTarget;
