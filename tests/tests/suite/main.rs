//! esbackup's integration tests: one test binary, a module per subject.

mod backends;
mod capture;
mod common;
mod cost;
mod crash;
mod faults;
mod foreign_db;
mod guards;
mod history;
mod locking;
mod safety;
mod servers;
mod storage;
mod upgrade;
