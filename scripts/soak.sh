#!/usr/bin/env bash
# A longer soak run than CI's: thousands of seeded live-mutation rounds against the in-memory
# target and the folder target, the simulator's own crash-snapshot soak, then the concurrent
# history test (cli/tests/history.rs) for a given time on the folder target and Garage (S3).
#   scripts/soak.sh [SECS]
#   SECS (or ESBACKUP_HISTORY_SECS; default 600): how long the history test runs on each target
#   (both at once). ESBACKUP_HISTORY_SEED picks its seed (default: a new one each soak).
#   ESBACKUP_LIVE_ROUNDS (default 2000) rounds on memory, ESBACKUP_LIVE_ROUNDS_BACKENDS
#   (default 300) on the folder target.
# The history test runs on Garage when the S3 test environment is there (scripts/test-env.sh;
# its $ESBACKUP_STATE/env is sourced here), else it says it skipped. Its summary lines
# (history: rounds=... kills=... problems=...) are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export ESBACKUP_LIVE_ROUNDS=${ESBACKUP_LIVE_ROUNDS:-2000}
export ESBACKUP_LIVE_ROUNDS_BACKENDS=${ESBACKUP_LIVE_ROUNDS_BACKENDS:-300}
export ESBACKUP_HISTORY_SECS=${1:-${ESBACKUP_HISTORY_SECS:-600}}
export ESBACKUP_HISTORY_SEED=${ESBACKUP_HISTORY_SEED:-$(( $(date +%s) % 100000 ))}
cargo test --release -p esdb-sim --test soak -- --ignored --nocapture
cargo test --release -p esbackup-tests --test suite backups_of_a_live_node the_scenario_suite_passes_on_the_folder_target -- --nocapture

state=${ESBACKUP_STATE:-/tmp/esbackup-test-env}
if [[ -f $state/env ]]; then
    # shellcheck source=/dev/null
    source "$state/env"
fi
log=$(mktemp /tmp/esbackup-history-soak.XXXXXX.log)
echo "[soak] history test: ${ESBACKUP_HISTORY_SECS}s per target, seed $ESBACKUP_HISTORY_SEED (log: $log)" >&2
status=0
cargo test --release -p esbackup --test history -- --nocapture >"$log" 2>&1 || status=$?
grep -E '^history \(s3\): SKIPPED' "$log" || true
grep -E '^history: ' "$log" || echo "[soak] history test printed no summary (see $log)" >&2
if ((status != 0)); then
    echo "[soak] history test FAILED (exit $status): its problems are in $log" >&2
    exit "$status"
fi
