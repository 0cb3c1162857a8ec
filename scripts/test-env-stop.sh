#!/usr/bin/env bash
# Stops what scripts/test-env.sh started, and nothing else:
#   - containers left over by the tests or the benchmark (they carry the label
#     esbackup.test=1; normally each one is removed by its fixture or script already),
#   - the Docker daemon, only if test-env.sh started it (its PID is in $ESBACKUP_STATE/dockerd.pid).
# A daemon that was already running before test-env.sh (systemd, Docker Desktop…) is left alone.
set -euo pipefail

STATE=${ESBACKUP_STATE:-/tmp/esbackup-test-env}
log() { printf '[test-env-stop] %s\n' "$*" >&2; }

if docker info >/dev/null 2>&1; then
    mapfile -t leftovers < <(docker ps -aq --filter label=esbackup.test=1)
    if ((${#leftovers[@]})); then
        log "removing left-over test containers: ${leftovers[*]}"
        docker rm -f "${leftovers[@]}" >/dev/null
    fi
fi

pidfile=$STATE/dockerd.pid
if [[ ! -s $pidfile ]]; then
    log "no dockerd was started by test-env.sh: nothing to stop"
    exit 0
fi
pid=$(cat "$pidfile")
# Only signal the process if that PID is still a dockerd (PIDs are reused).
if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]]; then
    # dockerd runs its own containerd as a child: note it, to be sure it goes too.
    children=$(pgrep -P "$pid" || true)
    log "stopping dockerd (PID $pid)"
    kill -TERM "$pid"
    for _ in $(seq 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "dockerd (PID $pid) still alive after 30 s: sending SIGKILL"
        kill -KILL "$pid"
    fi
    for child in $children; do
        if kill -0 "$child" 2>/dev/null; then
            log "stopping dockerd's child $(cat "/proc/$child/comm" 2>/dev/null) (PID $child)"
            kill -TERM "$child" 2>/dev/null || true
        fi
    done
else
    log "dockerd PID $pid is no longer running"
fi
rm -f "$pidfile"
