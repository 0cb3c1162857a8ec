//! Shared helpers of the integration tests: the scenario suite every backend runs, and the real
//! storage servers the tests start.
pub mod scenarios;
pub mod servers;
pub mod support;
