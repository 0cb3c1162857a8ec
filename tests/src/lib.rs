//! Shared helpers of the integration tests: the scenario suite every backend runs, the real
//! storage servers the tests start, and backup locations on them.
pub mod cloud;
pub mod copying;
pub mod positions;
pub mod scenarios;
pub mod servers;
pub mod support;
