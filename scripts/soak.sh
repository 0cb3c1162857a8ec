#!/usr/bin/env bash
# A longer soak run than CI's: thousands of seeded live-mutation rounds against the in-memory
# target and the folder target, and the simulator's own crash-snapshot soak.
#   ESBACKUP_LIVE_ROUNDS (default 2000) rounds on memory, ESBACKUP_LIVE_ROUNDS_BACKENDS
#   (default 300) on the folder target.
set -euo pipefail
cd "$(dirname "$0")/.."
export ESBACKUP_LIVE_ROUNDS=${ESBACKUP_LIVE_ROUNDS:-2000}
export ESBACKUP_LIVE_ROUNDS_BACKENDS=${ESBACKUP_LIVE_ROUNDS_BACKENDS:-300}
cargo test --release -p esdb-sim --test soak -- --ignored --nocapture
cargo test --release -p esbackup-tests --test suite backups_of_a_live_node the_scenario_suite_passes_on_the_folder_target -- --nocapture
