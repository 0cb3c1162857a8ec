//! esbackup's integration tests: one test binary, a module per subject.

mod backends;
mod capture;
mod common;
mod copying;
mod cost;
mod crash;
mod damaged_sources;
mod faults;
mod foreign_db;
mod history;
mod locking;
mod positions;
mod restore_trust;
mod selection;
mod servers;
mod storage;
mod upgrade;
mod wrong_folders;
