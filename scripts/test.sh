#!/usr/bin/env bash
# The one command that runs the whole test suite of esbackup on a fresh machine:
#   1. scripts/test-env.sh installs/prepares Docker, Garage, Azurite, fake-gcs-server, rclone;
#   2. the variables it wrote are exported;
#   3. cargo test --workspace --features esbackup/demo --no-fail-fast (every test binary runs
#      even after a failure, so one run reports every failing test; extra arguments are passed
#      on: scripts/test.sh --test suite wrong_folders -- --nocapture);
#   4. on exit, whatever this run started (the Docker daemon) is stopped again.
# Exits non-zero if any step or any test fails.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ESBACKUP_STATE=${ESBACKUP_STATE:-/tmp/esbackup-test-env}

# A daemon that test-env.sh started before this run (a developer's earlier call) is theirs to
# stop: this run stops it only if it is the one that started it. (A PID file whose daemon is
# gone, left by a machine restart, does not count.)
started_here=true
if [[ -s $ESBACKUP_STATE/dockerd.pid ]] && kill -0 "$(cat "$ESBACKUP_STATE/dockerd.pid")" 2>/dev/null; then
    started_here=false
fi

cleanup() {
    local rc=$?
    if $started_here && [[ -s $ESBACKUP_STATE/dockerd.pid ]]; then
        "$ROOT/scripts/test-env-stop.sh" || echo "[test] WARNING: test-env-stop.sh failed" >&2
    elif docker info >/dev/null 2>&1; then
        # Still remove containers the tests may have left (e.g. a test process that was killed).
        docker ps -aq --filter label=esbackup.test=1 | xargs -r docker rm -f >/dev/null || true
    fi
    exit "$rc"
}
trap cleanup EXIT

"$ROOT/scripts/test-env.sh"
# shellcheck source=/dev/null
source "$ESBACKUP_STATE/env"

cd "$ROOT"
echo "[test] cargo test --workspace --features esbackup/demo --no-fail-fast $*" >&2
if (($#)); then
    cargo test --workspace --features esbackup/demo --no-fail-fast "$@"
else
    # --show-output prints what passing tests report (live-round and crash-point counts).
    cargo test --workspace --features esbackup/demo --no-fail-fast -- --show-output
fi
