# shellcheck shell=bash
# Shared pieces of the benchmarks (bench/run.sh, bench/cost.sh, bench/continuous.sh), sourced,
# not run.
#
#   tools      bench_tools: installs what is missing (scripts/test-env.sh: Garage, Azurite,
#              fake-gcs-server, rclone, GNU time; apt-get: rsync, eatmydata), builds
#              esbackup/esdb-sim
#   data       bench_gen_db DIR SIZE CHUNK [sparse]: a database from bench/gen-db.py, reused
#   servers    garage_start/garage_stop, azurite_start/azurite_stop, gcs_start/gcs_stop: each a
#              fresh server process on 127.0.0.1 with fresh data, its PID recorded so that
#              the clean-up stops exactly what was started here (bench_scratch_cleanup:
#              that and the scratch folders, for an exit trap)
#   measuring  measure NAME CMD…: GNU time -v, server request counters and server CPU,
#              before and after; then bench_wall/bench_field read the results
#
# Everything lives under $BENCH_DIR (default /tmp/esbackup-bench): databases (kept for the
# next run), $BENCH_WORK (logs, servers' data; data removed at exit).

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/esbackup-bench}
BENCH_NAME=${BENCH_NAME:-bench}
export ESBACKUP_STATE=${ESBACKUP_STATE:-/tmp/esbackup-test-env}
export ESBACKUP_CACHE=${ESBACKUP_CACHE:-${HOME:-/root}/.cache/esbackup}

log() { printf '[%s %s] %s\n' "$BENCH_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
warn() { printf '[%s %s] WARNING: %s\n' "$BENCH_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$BENCH_NAME" "$*" >&2; exit 1; }

# The script's traps: its function `cleanup` on exit; a failed command, ^C or a hangup end the
# script (and so run it).
bench_traps() {
    trap cleanup EXIT
    trap 'die "command failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
    trap 'exit 130' INT
    trap 'exit 143' TERM HUP
}

# ---------------------------------------------------------------------------------------------
# Processes started here. Each server's PID goes to $BENCH_WORK/pids with its start time (field
# 22 of /proc/PID/stat, which an exec does not change); bench_stop_pid and the exit trap signal a
# PID only while it still has that start time (PIDs get reused).
# ---------------------------------------------------------------------------------------------
# Prints nothing (and succeeds: callers run under set -e -o pipefail) for a process that is gone.
proc_start() { { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null || true; } | awk '{ print $20 }'; }

bench_track_pid() { # PID: remember a process this script started
    echo "$1 $(proc_start "$1")" >>"$BENCH_WORK/pids"
}

bench_stop_pid() { # PID: TERM, wait up to 10 s, KILL; only if it is still the process we started
    local pid=$1 want now
    want=$(awk -v p="$pid" '$1 == p { print $2 }' "$BENCH_WORK/pids" 2>/dev/null | tail -1)
    now=$(proc_start "$pid")
    if [[ -n $want && $now == "$want" ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            [[ $(proc_start "$pid") == "$want" ]] || break
            # A zombie child of this shell keeps its /proc entry until reaped.
            [[ $(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1) != Z ]] || break
            sleep 0.1
        done
        if [[ $(proc_start "$pid") == "$want" && $(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1) != Z ]]; then
            warn "PID $pid still alive after 10 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        # Reap it if it is this shell's child (no zombie); it is dead or dying, so no wait.
        wait "$pid" 2>/dev/null || true
    fi
    if [[ -f $BENCH_WORK/pids ]]; then
        awk -v p="$pid" '$1 != p' "$BENCH_WORK/pids" >"$BENCH_WORK/pids.tmp" && mv "$BENCH_WORK/pids.tmp" "$BENCH_WORK/pids"
    fi
}

bench_stop_all() { # every process still listed in $BENCH_WORK/pids
    [[ -s $BENCH_WORK/pids ]] || return 0
    local pid
    for pid in $(awk '{ print $1 }' "$BENCH_WORK/pids"); do
        log "stopping PID $pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo "already gone"))"
        bench_stop_pid "$pid"
    done
}

bench_fresh_work() { # NAME: BENCH_WORK=$BENCH_DIR/NAME, emptied; servers a killed run left are stopped
    mkdir -p "$BENCH_DIR"
    BENCH_WORK=$BENCH_DIR/$1
    if [[ -d $BENCH_WORK ]]; then
        [[ ! -s $BENCH_WORK/pids ]] || bench_stop_all
        rm -rf "$BENCH_WORK"
    fi
    mkdir -p "$BENCH_WORK"
}

# An exit trap's cleanup (cost.sh, continuous.sh): the processes started here, the scratch
# folders of $BENCH_WORK (srv-*, target-*, db-*; logs stay), the Docker daemon if started for
# this run; then exits with the script's status. Call it first thing in `cleanup`.
bench_scratch_cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    bench_stop_all
    rm -rf "$BENCH_WORK"/srv-* "$BENCH_WORK"/target-* "$BENCH_WORK"/db-*
    bench_stop_dockerd_if_ours
    exit "$rc"
}

# The Docker daemon: test-env.sh starts one when none answers. None of the benchmarks needs it
# (the servers run as plain processes); if test-env.sh started it during this run, it is
# stopped at exit (scripts/test-env-stop.sh stops it and only it).
BENCH_DOCKERD_STARTED=false
bench_stop_dockerd_if_ours() {
    if $BENCH_DOCKERD_STARTED && [[ -s $ESBACKUP_STATE/dockerd.pid ]]; then
        log "stopping the Docker daemon test-env.sh started for this run"
        "$BENCH_ROOT/scripts/test-env-stop.sh" || warn "test-env-stop.sh failed"
    fi
}

# ---------------------------------------------------------------------------------------------
# Tools.
# ---------------------------------------------------------------------------------------------
# bench_tools NEED…: makes sure what the rows need is there: garage, azurite, gcs, rclone (through
# scripts/test-env.sh, which installs all of them, when one is missing), rsync and eatmydata
# (apt-get); GNU time, jq and curl always.
bench_tools() {
    local need_env=false
    if [[ -s $ESBACKUP_STATE/env ]]; then
        # shellcheck source=/dev/null
        source "$ESBACKUP_STATE/env"
    fi
    [[ " $* " != *" garage "* || -x ${ESBACKUP_GARAGE_BIN:-} ]] || need_env=true
    [[ " $* " != *" azurite "* || -x ${ESBACKUP_AZURITE_BIN:-} ]] || need_env=true
    [[ " $* " != *" gcs "* || -x ${ESBACKUP_FAKE_GCS_BIN:-} ]] || need_env=true
    [[ " $* " != *" rclone "* ]] || command -v rclone >/dev/null || need_env=true
    [[ -x /usr/bin/time ]] && command -v curl >/dev/null || need_env=true
    if $need_env; then
        [[ -s $ESBACKUP_STATE/dockerd.pid ]] || BENCH_DOCKERD_STARTED=true
        log "installing the test tools (scripts/test-env.sh)"
        "$BENCH_ROOT/scripts/test-env.sh" || die "scripts/test-env.sh failed"
        [[ -s $ESBACKUP_STATE/dockerd.pid ]] || BENCH_DOCKERD_STARTED=false
        # shellcheck source=/dev/null
        source "$ESBACKUP_STATE/env"
    fi
    local pkgs=()
    command -v jq >/dev/null || pkgs+=(jq)
    if [[ " $* " == *" rsync "* ]]; then command -v rsync >/dev/null || pkgs+=(rsync); fi
    if [[ " $* " == *" eatmydata "* ]]; then command -v eatmydata >/dev/null || pkgs+=(eatmydata); fi
    if ((${#pkgs[@]})); then
        [[ $(id -u) == 0 ]] || die "missing ${pkgs[*]}: install with apt-get (not root here)"
        log "apt-get install ${pkgs[*]}"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"; } \
            >"$BENCH_WORK/apt.log" 2>&1 || { tail "$BENCH_WORK/apt.log" >&2; die "apt-get install ${pkgs[*]} failed"; }
    fi
    [[ -x /usr/bin/time ]] || die "/usr/bin/time (Debian package time) is missing"
}

# bench_build PACKAGE BINARY: prints the path of a release binary of the workspace, built
# (incrementally) unless $ESBACKUP_BIN / $ESDB_SIM_BIN names one.
bench_build() {
    local pkg=$1 bin=$2 target
    target=${CARGO_TARGET_DIR:-$BENCH_ROOT/target}
    log "cargo build --release -p $pkg --bin $bin"
    (cd "$BENCH_ROOT" && cargo build --release -q -p "$pkg" --bin "$bin") >&2 || die "cargo build -p $pkg failed"
    [[ -x $target/release/$bin ]] || die "$target/release/$bin missing after the build"
    echo "$target/release/$bin"
}

# ---------------------------------------------------------------------------------------------
# Data.
# ---------------------------------------------------------------------------------------------
# bench_gen_db DIR SIZE_BYTES CHUNK_BYTES [sparse]: a database from bench/gen-db.py, reused when
# DIR.gen says it was made with the same settings (the marker sits beside the folder, not in it,
# so that every tool copies exactly the same files).
bench_gen_db() {
    local dir=$1 size=$2 chunk=$3 sparse=${4:-}
    local marker="gen-db.py v2 $size/$chunk${sparse:+/sparse}"
    if [[ -d $dir && -f $dir.gen && $(cat "$dir.gen") == "$marker" ]]; then
        log "reusing $dir ($(numfmt --to=iec "$size") in chunks of $(numfmt --to=iec "$chunk")${sparse:+, sparse})"
        return 0
    fi
    local avail need=$((size / 1024 + 1048576))
    # Sparse: a header and a footer block per chunk (KiB), plus the same 1 GiB margin.
    [[ -n $sparse ]] && need=$((size / chunk * 16 + 1048576))
    avail=$(df -k --output=avail "$(dirname "$dir")" | tail -1)
    ((avail > need)) || die "not enough disk for $dir: $((need >> 20)) GiB needed, $((avail >> 20)) GiB free"
    log "generating $dir ($(numfmt --to=iec "$size") in chunks of $(numfmt --to=iec "$chunk")${sparse:+, sparse})"
    rm -rf "$dir" "$dir.gen"
    python3 "$BENCH_ROOT/bench/gen-db.py" --size "$size" --chunk-size "$chunk" ${sparse:+--sparse} "$dir" \
        || die "bench/gen-db.py failed"
    echo "$marker" >"$dir.gen"
}

bench_dir_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
bench_dir_files() { find "$1" -type f | wc -l; }

# Reads every file of a folder once, so that the measured run finds it in the page cache.
bench_warm() { find "$1" -type f -exec cat {} + >/dev/null; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
rand_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# bench_wait_http URL SECONDS PID LOG: waits until URL answers (any HTTP status), failing early
# if PID died.
bench_wait_http() {
    local url=$1 secs=$2 pid=$3 logf=$4 i
    for ((i = 0; i < secs * 10; i++)); do
        curl -s -o /dev/null --max-time 1 "$url" && return 0
        kill -0 "$pid" 2>/dev/null || { tail -20 "$logf" >&2; die "the server (PID $pid) exited while starting (log: $logf)"; }
        sleep 0.1
    done
    tail -20 "$logf" >&2
    die "$url did not answer within $secs s (log: $logf)"
}

# ---------------------------------------------------------------------------------------------
# Garage (S3), a plain process (no container): fresh data each start, so that no run benefits
# from blocks an earlier run stored (Garage deduplicates blocks by content).
# Sets GARAGE_PID, GARAGE_ENDPOINT, GARAGE_ADMIN, GARAGE_BUCKET, s3_env (what an esbackup run
# reads) and rclone_env (rclone's remote "garage", from the environment only).
# ---------------------------------------------------------------------------------------------
GARAGE_PID=
garage_start() { # DIR
    local dir=$1 s3_port rpc_port admin_port
    [[ -x ${ESBACKUP_GARAGE_BIN:-} ]] || die "no Garage binary (ESBACKUP_GARAGE_BIN); run scripts/test-env.sh"
    rm -rf "$dir"
    mkdir -p "$dir/meta" "$dir/data"
    s3_port=$(free_port)
    rpc_port=$(free_port)
    admin_port=$(free_port)
    while [[ $rpc_port == "$s3_port" ]]; do rpc_port=$(free_port); done
    while [[ $admin_port == "$s3_port" || $admin_port == "$rpc_port" ]]; do admin_port=$(free_port); done
    cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(rand_hex 32)"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
admin_token = "$(rand_hex 16)"
EOF
    RUST_LOG=${GARAGE_LOG:-garage=info} "$ESBACKUP_GARAGE_BIN" -c "$dir/garage.toml" server \
        >"$dir/garage.log" 2>&1 </dev/null &
    GARAGE_PID=$!
    bench_track_pid "$GARAGE_PID"
    local i
    for ((i = 0; i < 300; i++)); do
        grep -q "S3 API server listening" "$dir/garage.log" && break
        kill -0 "$GARAGE_PID" 2>/dev/null || { tail -20 "$dir/garage.log" >&2; die "Garage exited while starting (log: $dir/garage.log)"; }
        sleep 0.1
    done
    local g=("$ESBACKUP_GARAGE_BIN" -c "$dir/garage.toml")
    local node key_id secret
    node=$("${g[@]}" node id -q 2>>"$dir/admin.log" | cut -d@ -f1)
    "${g[@]}" layout assign -z dc1 -c 100G "$node" >>"$dir/admin.log" 2>&1
    "${g[@]}" layout apply --version 1 >>"$dir/admin.log" 2>&1
    key_id=GK$(rand_hex 12)
    secret=$(rand_hex 32)
    GARAGE_BUCKET=bench
    "${g[@]}" key import --yes -n bench "$key_id" "$secret" >>"$dir/admin.log" 2>&1
    "${g[@]}" bucket create "$GARAGE_BUCKET" >>"$dir/admin.log" 2>&1
    "${g[@]}" bucket allow --read --write --owner "$GARAGE_BUCKET" --key bench >>"$dir/admin.log" 2>&1
    GARAGE_ADMIN=http://127.0.0.1:$admin_port
    for ((i = 0; i < 100; i++)); do
        curl -fsS -o /dev/null "$GARAGE_ADMIN/health" 2>/dev/null && break
        sleep 0.1
    done
    curl -fsS -o /dev/null "$GARAGE_ADMIN/health" || die "Garage's admin /health does not answer 200 (log: $dir/garage.log)"
    GARAGE_ENDPOINT=http://127.0.0.1:$s3_port
    # shellcheck disable=SC2034 # read by the scripts that source this file
    s3_env=(
        AWS_ENDPOINT_URL="$GARAGE_ENDPOINT" AWS_ENDPOINT="$GARAGE_ENDPOINT"
        AWS_ACCESS_KEY_ID="$key_id" AWS_SECRET_ACCESS_KEY="$secret"
        AWS_REGION=garage AWS_DEFAULT_REGION=garage AWS_ALLOW_HTTP=true
        AWS_VIRTUAL_HOSTED_STYLE_REQUEST=false AWS_EC2_METADATA_DISABLED=true
    )
    rclone_env=(
        RCLONE_CONFIG_GARAGE_TYPE=s3 RCLONE_CONFIG_GARAGE_PROVIDER=Other
        RCLONE_CONFIG_GARAGE_ENDPOINT="$GARAGE_ENDPOINT" RCLONE_CONFIG_GARAGE_REGION=garage
        RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE=true RCLONE_CONFIG_GARAGE_NO_CHECK_BUCKET=true
        RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID="$key_id" RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY="$secret"
        RCLONE_CONFIG=/dev/null
    )
    BENCH_SERVER_PID=$GARAGE_PID
    BENCH_COUNTERS=garage_counters
    log "Garage up on $GARAGE_ENDPOINT (PID $GARAGE_PID, data $dir)"
}

bench_server_stop() { # PID [PATH...]: stops the server, which is then no longer measured; removes PATHs
    [[ -z $1 ]] || bench_stop_pid "$1"
    BENCH_SERVER_PID=
    BENCH_COUNTERS=
    shift
    (($#)) && rm -rf "$@"
    return 0
}

garage_stop() { bench_server_stop "$GARAGE_PID" ${1:+"$1/data" "$1/meta"}; GARAGE_PID=; } # [DIR]: also removes its data

# "endpoint count" lines from Garage's Prometheus metrics (api_s3_request_counter summed by
# api_endpoint, e.g. PutObject, UploadPart, CompleteMultipartUpload).
garage_counters() {
    curl -fsS "$GARAGE_ADMIN/metrics" |
        awk '/^api_s3_request_counter[{ ]/ {
                 ep = "all"
                 if (match($0, /api_endpoint="[^"]*"/)) ep = substr($0, RSTART + 14, RLENGTH - 15)
                 n[ep] += $NF
             }
             END { for (e in n) printf "%s %.0f\n", e, n[e] }' | sort
}

# rclone 1.60 fails when AWS_CA_BUNDLE is set (it is, on these machines), even over plain HTTP.
rclone_cmd() { env -u AWS_CA_BUNDLE "${rclone_env[@]}" rclone "$@"; }

# ---------------------------------------------------------------------------------------------
# Azurite (Azure Blob emulator), a process with fresh data each start.
# Sets AZURITE_PID, az_env (esbackup) and rclone_az_env (rclone's remote "az").
# ---------------------------------------------------------------------------------------------
AZURITE_PID=
AZ_ACCOUNT=devstoreaccount1
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
azurite_start() { # DIR [PORT]
    local dir=$1 port=${2:-}
    [[ -x ${ESBACKUP_AZURITE_BIN:-} ]] || die "no Azurite (ESBACKUP_AZURITE_BIN); run scripts/test-env.sh"
    [[ -n $port ]] || port=$(free_port)
    rm -rf "$dir"
    mkdir -p "$dir/data"
    "$ESBACKUP_AZURITE_BIN" --blobHost 127.0.0.1 --blobPort "$port" --location "$dir/data" \
        --disableTelemetry --skipApiVersionCheck >"$dir/azurite.log" 2>&1 </dev/null &
    AZURITE_PID=$!
    bench_track_pid "$AZURITE_PID"
    AZ_ENDPOINT=http://127.0.0.1:$port
    bench_wait_http "$AZ_ENDPOINT/$AZ_ACCOUNT?comp=list" 30 "$AZURITE_PID" "$dir/azurite.log"
    AZ_CONTAINER=bench
    # The container, and a SAS URL for it (rclone's way in: see bench/run.sh).
    # shellcheck disable=SC2034 # read by bench/run.sh
    AZ_SAS_URL=$(python3 "$BENCH_ROOT/bench/azure-mkcontainer.py" --sas-url "$AZ_ENDPOINT" "$AZ_ACCOUNT" "$AZ_KEY" "$AZ_CONTAINER") \
        || die "could not create the Azure container"
    AZURITE_LOG=$dir/azurite.log
    # shellcheck disable=SC2034 # read by the scripts that source this file
    az_env=(
        AZURE_STORAGE_USE_EMULATOR=true AZURITE_BLOB_STORAGE_URL="$AZ_ENDPOINT"
        AZURE_STORAGE_ACCOUNT_NAME="$AZ_ACCOUNT" AZURE_STORAGE_ACCOUNT_KEY="$AZ_KEY"
        AZURE_STORAGE_ENDPOINT="$AZ_ENDPOINT/$AZ_ACCOUNT" AZURE_ALLOW_HTTP=true
    )
    BENCH_SERVER_PID=$AZURITE_PID
    BENCH_COUNTERS=azurite_counters
    log "Azurite up on $AZ_ENDPOINT (PID $AZURITE_PID)"
}

# Azurite and fake-gcs-server (at log level info) write one access-log line per request
# ("PUT /account/container/blob?comp=block HTTP/1.1" 201): requests counted by method and
# comp= or uploadType= parameter (PUT:block, PUT:blocklist, POST:resumable, …).
access_log_counters() { # LOG
    awk 'match($0, /[A-Z]+ \/[^ ]* HTTP\/1\.[01]/) {
             split(substr($0, RSTART, RLENGTH), parts, " ")
             ep = parts[1]
             if (match(parts[2], /[?&](comp|uploadType)=[a-zA-Z]+/)) {
                 q = substr(parts[2], RSTART + 1, RLENGTH - 1)
                 sub(/^[a-zA-Z]+=/, "", q)
                 ep = ep ":" q
             }
             n[ep]++
         }
         END { for (e in n) printf "%s %d\n", e, n[e] }' "$1" | sort
}
azurite_counters() { access_log_counters "$AZURITE_LOG"; }
gcs_counters() { access_log_counters "$GCS_LOG"; }

azurite_stop() { bench_server_stop "$AZURITE_PID" ${1:+"$1/data"}; AZURITE_PID=; } # [DIR]: also removes its data

# ---------------------------------------------------------------------------------------------
# fake-gcs-server (GCS emulator), a process with a fresh filesystem backend each start (its
# memory backend would hold every object in RAM). Sets GCS_PID, gcs_env (esbackup).
# ---------------------------------------------------------------------------------------------
GCS_PID=
gcs_start() { # DIR
    local dir=$1 port
    [[ -x ${ESBACKUP_FAKE_GCS_BIN:-} ]] || die "no fake-gcs-server (ESBACKUP_FAKE_GCS_BIN); run scripts/test-env.sh"
    port=$(free_port)
    rm -rf "$dir"
    mkdir -p "$dir/data"
    GCS_ENDPOINT=http://127.0.0.1:$port
    "$ESBACKUP_FAKE_GCS_BIN" -scheme http -host 127.0.0.1 -port "$port" \
        -backend filesystem -filesystem-root "$dir/data" \
        -public-host "127.0.0.1:$port" -external-url "$GCS_ENDPOINT" -log-level info \
        >"$dir/fake-gcs.log" 2>&1 </dev/null &
    GCS_PID=$!
    bench_track_pid "$GCS_PID"
    bench_wait_http "$GCS_ENDPOINT/storage/v1/b" 30 "$GCS_PID" "$dir/fake-gcs.log"
    GCS_BUCKET=bench
    curl -fsS -o /dev/null -X POST -H 'content-type: application/json' \
        -d "{\"name\":\"$GCS_BUCKET\"}" "$GCS_ENDPOINT/storage/v1/b?project=bench" \
        || die "could not create the GCS bucket"
    cat >"$dir/service-account.json" <<EOF
{"gcs_base_url": "$GCS_ENDPOINT", "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}
EOF
    # shellcheck disable=SC2034 # read by the scripts that source this file
    gcs_env=(GOOGLE_SERVICE_ACCOUNT="$dir/service-account.json" STORAGE_EMULATOR_HOST="$GCS_ENDPOINT")
    GCS_LOG=$dir/fake-gcs.log
    BENCH_SERVER_PID=$GCS_PID
    BENCH_COUNTERS=gcs_counters
    log "fake-gcs-server up on $GCS_ENDPOINT (PID $GCS_PID)"
}

gcs_stop() { bench_server_stop "$GCS_PID" ${1:+"$1/data"}; GCS_PID=; } # [DIR]: also removes its data

# ---------------------------------------------------------------------------------------------
# Measuring.
# ---------------------------------------------------------------------------------------------
BENCH_SERVER_PID=
BENCH_COUNTERS=

# CPU seconds (user+sys) a process has used so far, from /proc/PID/stat.
proc_cpu() {
    local pid=$1
    [[ -n $pid && -r /proc/$pid/stat ]] || { echo 0; return 0; }
    # Fields after the ")" of comm: utime is the 12th, stime the 13th.
    sed 's/^.*) //' "/proc/$pid/stat" | awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($12 + $13) / hz }'
}

# measure NAME COMMAND…: runs COMMAND under GNU time -v (stdout to NAME.out, stderr to NAME.err),
# and notes the server's request counters (NAME.requests: endpoint count, the delta) and the
# server's CPU seconds (NAME.server_cpu). Returns the command's exit status.
measure() {
    local name=$1 rc=0 c0 c1
    shift
    local base=$BENCH_WORK/m/$name
    mkdir -p "$BENCH_WORK/m"
    sync # the previous step's dirty pages are not this step's cost
    [[ -z $BENCH_COUNTERS ]] || $BENCH_COUNTERS >"$base.before"
    c0=$(proc_cpu "$BENCH_SERVER_PID")
    /usr/bin/time -v -o "$base.time" "$@" >"$base.out" 2>"$base.err" || rc=$?
    c1=$(proc_cpu "$BENCH_SERVER_PID")
    if [[ -n $BENCH_SERVER_PID ]]; then
        awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f\n", b - a }' >"$base.server_cpu"
    else
        : >"$base.server_cpu"
    fi
    if [[ -n $BENCH_COUNTERS ]]; then
        $BENCH_COUNTERS >"$base.after"
        join -a2 -e0 -o 0,1.2,2.2 "$base.before" "$base.after" |
            awk '{ d = $3 - $2; if (d > 0) printf "%s %.0f\n", $1, d }' >"$base.requests"
    else
        rm -f "$base.requests"
    fi
    if ((rc != 0)); then
        tail -5 "$base.err" >&2
        warn "$name failed with exit status $rc (log: $base.err)"
    fi
    return "$rc"
}

# Results of a measure: wall seconds, a GNU time field, total requests ("" without counters).
bench_wall() {
    sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$BENCH_WORK/m/$1.time" |
        awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }'
}
bench_field() { sed -n "s/.*$2: //p" "$BENCH_WORK/m/$1.time"; }
bench_requests() {
    local f=$BENCH_WORK/m/$1.requests
    [[ -f $f ]] && awk '{ s += $2 } END { printf "%.0f\n", s }' "$f" || echo ""
}
bench_requests_detail() { # "PutObject:8 UploadPart:120 …"
    local f=$BENCH_WORK/m/$1.requests
    [[ -f $f ]] && awk '{ printf "%s%s:%s", (NR > 1 ? " " : ""), $1, $2 }' "$f" || echo ""
}

# check_same SRC RESTORED LABEL: same files with the same bytes, except truncate.chk (a restore
# sets it) and empty folders (rclone does not create them). Prints the differences.
check_same() {
    local src=$1 got=$2 out
    out=$({ diff -rq --exclude=truncate.chk "$src" "$got" || true; } | while read -r line; do
        if [[ $line =~ ^Only\ in\ (.*):\ (.*)$ && -d ${BASH_REMATCH[1]}/${BASH_REMATCH[2]} ]] &&
            [[ -z $(find "${BASH_REMATCH[1]}/${BASH_REMATCH[2]}" -type f -print -quit) ]]; then
            continue
        fi
        echo "$line"
    done)
    [[ -z $out ]] && return 0
    head <<<"$out" >&2
    return 1
}
