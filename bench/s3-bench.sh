#!/usr/bin/env bash
# S3 backup benchmark: esbackup against rclone, on the same database, into the same Garage.
#
#   bench/s3-bench.sh                 # 4 GiB database
#   SIZE=200M bench/s3-bench.sh       # quick run
#
# Steps:
#   1. scripts/test-env.sh (Docker daemon, Garage image, rclone, GNU time);
#   2. a database folder of about SIZE bytes (bench/gen-db.py: chunk-NNNNNN.000000 files with
#      valid headers/footers/MD5s around random data, checkpoints), reused by later runs;
#   3. Garage in Docker (--network host, data on a host folder), one bucket, one key;
#   4. `esbackup backup --db DB --target s3://BUCKET/esbackup`, then
#      `rclone copy DB garage:BUCKET/rclone`, each under /usr/bin/time -v, with Garage's
#      api_s3_request_counter read before and after;
#   5. a side-by-side table: wall time, MB/s, CPU time, peak RSS, S3 requests (total and by
#      API endpoint), bytes and objects stored.
# On exit it removes the Garage container and its data, and stops the Docker daemon if
# test-env.sh started it for this run. The database folder is kept for the next run
# (KEEP_DB=0 removes it).
#
# Settings (environment):
#   SIZE          database size, IEC suffixes accepted (default 4G)
#   CHUNK_SIZE    logical chunk size (default 256M as on a default node, smaller for a
#                 SIZE under 1 GiB so that there are at least 4 chunks)
#   BENCH_DIR     work folder (default /tmp/esbackup-bench)
#   ESBACKUP_BIN  the esbackup binary (default: target/release/esbackup, built if missing)
#   SKIP_ESBACKUP=1   run the rclone half only
#   RCLONE_FLAGS  extra flags for rclone copy (default: none, i.e. rclone's defaults:
#                 4 transfers, 5 MiB multipart chunks above 200 MiB)
#   KEEP_DB=0     remove the generated database at the end
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZE=${SIZE:-4G}
CHUNK_SIZE=${CHUNK_SIZE:-}
BENCH_DIR=${BENCH_DIR:-/tmp/esbackup-bench}
KEEP_DB=${KEEP_DB:-1}
SKIP_ESBACKUP=${SKIP_ESBACKUP:-0}
RCLONE_FLAGS=${RCLONE_FLAGS:-}
export ESBACKUP_STATE=${ESBACKUP_STATE:-/tmp/esbackup-test-env}

log() { printf '[s3-bench] %s\n' "$*" >&2; }
die() { printf '[s3-bench] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'die "command failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

size_bytes=$(numfmt --from=iec "$SIZE") || die "SIZE=$SIZE is not a size (e.g. 4G, 200M)"
if [[ -n $CHUNK_SIZE ]]; then
    chunk_bytes=$(numfmt --from=iec "$CHUNK_SIZE") || die "CHUNK_SIZE=$CHUNK_SIZE is not a size"
else
    # 256 MiB (a default node's), but at least 4 chunks for small sizes.
    chunk_bytes=$((256 << 20))
    ((size_bytes / 4 >= chunk_bytes)) || chunk_bytes=$((size_bytes / 4 / 4096 * 4096))
fi
((chunk_bytes > 0)) || die "SIZE=$SIZE is too small"
DB=$BENCH_DIR/db-$SIZE
WORK=$BENCH_DIR/run
mkdir -p "$BENCH_DIR"
rm -rf "$WORK"
mkdir -p "$WORK"

# ---------------------------------------------------------------------------------------------
# Clean-up: what this script started, and only that.
# ---------------------------------------------------------------------------------------------
container=
dockerd_started_here=false
[[ -s $ESBACKUP_STATE/dockerd.pid ]] || dockerd_started_here=true
cleanup() {
    local rc=$?
    trap - ERR
    if [[ -n $container ]]; then
        log "removing the Garage container ${container:0:12}"
        docker rm -f "$container" >/dev/null 2>&1 || log "WARNING: could not remove container $container"
    fi
    # The Garage data folder is written by the container as root; it holds about 2×SIZE.
    rm -rf "$WORK/garage"
    if [[ $KEEP_DB == 0 ]]; then
        rm -rf "$DB" "$DB.gen"
    elif [[ -d $DB ]]; then
        log "database kept for the next run: $DB (KEEP_DB=0 removes it)"
    fi
    if $dockerd_started_here && [[ -s $ESBACKUP_STATE/dockerd.pid ]]; then
        "$ROOT/scripts/test-env-stop.sh" || log "WARNING: test-env-stop.sh failed"
    fi
    exit "$rc"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# 1. Tools.
# ---------------------------------------------------------------------------------------------
"$ROOT/scripts/test-env.sh"
# shellcheck source=/dev/null
source "$ESBACKUP_STATE/env"
[[ -x /usr/bin/time ]] || die "/usr/bin/time (Debian package time) is missing"

# ---------------------------------------------------------------------------------------------
# 2. The database, written by bench/gen-db.py: completed chunks with valid headers, footers and
# MD5s, an active last chunk, checkpoints; random (incompressible) data areas.
# Random data is the fair case for a transfer benchmark: nothing compresses or deduplicates.
# ---------------------------------------------------------------------------------------------
marker="gen-db.py v1 $size_bytes/$chunk_bytes"
# The marker lives beside the folder, not in it: both tools must copy exactly the same files.
if [[ -d $DB && -f $DB.gen && $(cat "$DB.gen") == "$marker" ]]; then
    log "reusing database $DB ($SIZE)"
else
    log "generating a $SIZE database in $DB (chunks of $(numfmt --to=iec "$chunk_bytes"))"
    rm -rf "$DB" "$DB.gen"
    python3 "$ROOT/bench/gen-db.py" --size "$size_bytes" --chunk-size "$chunk_bytes" "$DB" \
        || die "bench/gen-db.py failed"
    echo "$marker" >"$DB.gen"
fi
db_bytes=$(find "$DB" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f\n", s }')
db_files=$(find "$DB" -type f | wc -l)

# ---------------------------------------------------------------------------------------------
# 3. Garage: the recipe of tests/src/servers (single node, sqlite, region "garage").
# ---------------------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
s3_port=$(free_port)
rpc_port=$(free_port)
admin_port=$(free_port)
while [[ $rpc_port == "$s3_port" ]]; do rpc_port=$(free_port); done
while [[ $admin_port == "$s3_port" || $admin_port == "$rpc_port" ]]; do admin_port=$(free_port); done
admin_token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >"$WORK/garage.toml" <<EOF
metadata_dir = "/var/lib/garage/meta"
data_dir = "/var/lib/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
admin_token = "$admin_token"
EOF
mkdir -p "$WORK/garage"
log "starting Garage ($ESBACKUP_GARAGE_IMAGE) on 127.0.0.1:$s3_port"
# Data on a host folder (bind mount), not in the container's layer: the storage driver
# (possibly vfs here) would otherwise weigh on the numbers.
container=$(docker run -d --network host --label esbackup.test=1 \
    -v "$WORK/garage.toml:/etc/garage.toml:ro" -v "$WORK/garage:/var/lib/garage" \
    "$ESBACKUP_GARAGE_IMAGE" -c /etc/garage.toml server)
for _ in $(seq 200); do
    docker logs "$container" 2>&1 | grep -q "S3 API server listening" && break
    [[ $(docker inspect -f '{{.State.Running}}' "$container") == true ]] \
        || { docker logs "$container" 2>&1 | tail -20 >&2; die "Garage exited while starting"; }
    sleep 0.1
done
garage() { docker exec "$container" /garage -c /etc/garage.toml "$@"; }
node=$(garage node id -q | cut -d@ -f1)
garage layout assign -z dc1 -c 10G "$node" >/dev/null
garage layout apply --version 1 >/dev/null
key_id=GK$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
bucket=bench
garage key import --yes -n bench "$key_id" "$secret" >/dev/null
garage bucket create "$bucket" >/dev/null
garage bucket allow --read --write --owner "$bucket" --key bench >/dev/null
for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$admin_port/health" 2>/dev/null && break
    sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$admin_port/health" || die "Garage's admin /health does not answer 200"

endpoint=http://127.0.0.1:$s3_port
# What an esbackup run reads (the same names as tests/src/servers' S3Server::env()).
s3_env=(
    AWS_ENDPOINT_URL="$endpoint" AWS_ENDPOINT="$endpoint"
    AWS_ACCESS_KEY_ID="$key_id" AWS_SECRET_ACCESS_KEY="$secret"
    AWS_REGION=garage AWS_DEFAULT_REGION=garage AWS_ALLOW_HTTP=true
    AWS_VIRTUAL_HOSTED_STYLE_REQUEST=false AWS_EC2_METADATA_DISABLED=true
)
# rclone's remote "garage", from the environment only (no config file).
rclone_env=(
    RCLONE_CONFIG_GARAGE_TYPE=s3 RCLONE_CONFIG_GARAGE_PROVIDER=Other
    RCLONE_CONFIG_GARAGE_ENDPOINT="$endpoint" RCLONE_CONFIG_GARAGE_REGION=garage
    RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE=true RCLONE_CONFIG_GARAGE_NO_CHECK_BUCKET=true
    RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID="$key_id" RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY="$secret"
    RCLONE_CONFIG=/dev/null
)
# rclone 1.60 fails when AWS_CA_BUNDLE is set (it is, on these machines), even over plain HTTP.
rclone_cmd() { env -u AWS_CA_BUNDLE "${rclone_env[@]}" rclone "$@"; }

# ---------------------------------------------------------------------------------------------
# 4. Measurements.
# ---------------------------------------------------------------------------------------------
# "endpoint count" lines from Garage's Prometheus metrics (api_s3_request_counter by
# api_endpoint, e.g. PutObject, UploadPart, CompleteMultipartUpload).
s3_counters() {
    curl -fsS "http://127.0.0.1:$admin_port/metrics" |
        awk '/^api_s3_request_counter[{ ]/ {
                 ep = "all"
                 if (match($0, /api_endpoint="[^"]*"/)) ep = substr($0, RSTART + 14, RLENGTH - 15)
                 n[ep] += $NF
             }
             END { for (e in n) printf "%s %.0f\n", e, n[e] }' | sort
}

# measure NAME COMMAND…: runs it under GNU time, records the results in $WORK/NAME.*.
# Returns the command's exit status (so that one tool failing still lets the other run).
measure() {
    local name=$1 rc=0
    shift
    s3_counters >"$WORK/$name.before"
    # The command line goes to the log only: it holds the (throw-away) secret key.
    log "running $name"
    echo "$*" >"$WORK/$name.cmd"
    /usr/bin/time -v -o "$WORK/$name.time" "$@" >"$WORK/$name.log" 2>&1 || rc=$?
    if ((rc != 0)); then
        tail -20 "$WORK/$name.log" >&2
        log "$name FAILED with exit status $rc (log: $WORK/$name.log)"
        return "$rc"
    fi
    s3_counters >"$WORK/$name.after"
    # Requests by endpoint: after − before.
    join -a2 -e0 -o 0,1.2,2.2 "$WORK/$name.before" "$WORK/$name.after" |
        awk '{ d = $3 - $2; if (d > 0) printf "%s %.0f\n", $1, d }' >"$WORK/$name.requests"
}

# Wall time in seconds from GNU time's "h:mm:ss" or "m:ss.ss".
wall_seconds() {
    sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$1" |
        awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }'
}
time_field() { sed -n "s/.*$2: //p" "$1"; }

declare -A results
record() {
    local name=$1 prefix=$2
    local wall user sys rss reqs stored
    wall=$(wall_seconds "$WORK/$name.time")
    user=$(time_field "$WORK/$name.time" "User time (seconds)")
    sys=$(time_field "$WORK/$name.time" "System time (seconds)")
    rss=$(time_field "$WORK/$name.time" "Maximum resident set size (kbytes)")
    reqs=$(awk '{ s += $2 } END { printf "%.0f\n", s }' "$WORK/$name.requests")
    stored=$(rclone_cmd size --json "garage:$bucket/$prefix")
    results[$name.wall]=$wall
    results[$name.mbps]=$(awk -v b="$db_bytes" -v s="$wall" 'BEGIN { printf "%.1f", (s > 0 ? b / 1e6 / s : 0) }')
    results[$name.cpu]=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
    results[$name.rss]=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')
    results[$name.reqs]=$reqs
    results[$name.bytes]=$(jq -r .bytes <<<"$stored")
    results[$name.objects]=$(jq -r .count <<<"$stored")
}

ran=()
failed=false
esbackup_note=
if [[ $SKIP_ESBACKUP == 1 ]]; then
    esbackup_note="skipped (SKIP_ESBACKUP=1)"
else
    if [[ -z ${ESBACKUP_BIN:-} ]]; then
        ESBACKUP_BIN=$ROOT/target/release/esbackup
        log "building esbackup (release)"
        (cd "$ROOT" && cargo build --release -q -p esbackup) || die "cargo build --release -p esbackup failed"
    fi
    # The CLI is written in parallel with this script: run it only once it has `backup`.
    # (Captured, not piped into grep -q: with pipefail, grep closing early would fail the test.)
    backup_help=
    [[ ! -x $ESBACKUP_BIN ]] || backup_help=$("$ESBACKUP_BIN" backup --help 2>&1 || true)
    if [[ $backup_help == *--target* ]]; then
        if measure esbackup env "${s3_env[@]}" "$ESBACKUP_BIN" backup --db "$DB" --target "s3://$bucket/esbackup"; then
            record esbackup esbackup
            ran+=(esbackup)
        else
            esbackup_note="FAILED (log: $WORK/esbackup.log)"
            failed=true
        fi
    else
        esbackup_note="skipped: $ESBACKUP_BIN has no 'backup --target' command yet"
    fi
fi
[[ -z $esbackup_note ]] || log "esbackup $esbackup_note"

# shellcheck disable=SC2086 # RCLONE_FLAGS is a list of flags
if measure rclone env -u AWS_CA_BUNDLE "${rclone_env[@]}" \
    rclone copy $RCLONE_FLAGS "$DB" "garage:$bucket/rclone"; then
    record rclone rclone
    ran+=(rclone)
    if [[ ${results[rclone.bytes]} != "$db_bytes" ]]; then
        log "rclone stored ${results[rclone.bytes]} bytes, the database has $db_bytes"
        failed=true
    fi
else
    failed=true
fi

# ---------------------------------------------------------------------------------------------
# 4b. Follow-ups of each tool: the same backup again with nothing changed (what a run every few
#     minutes costs), and a restore into an empty folder, checked against the database.
# ---------------------------------------------------------------------------------------------
check_restore() {
    # Same files, same bytes (rclone leaves out empty folders, such as an empty index/).
    { diff -rq --exclude=truncate.chk "$DB" "$1" || true; } | while read -r line; do
        if [[ $line =~ ^Only\ in\ (.*):\ (.*)$ && -d ${BASH_REMATCH[1]}/${BASH_REMATCH[2]} ]] &&
            [[ -z $(find "${BASH_REMATCH[1]}/${BASH_REMATCH[2]}" -type f | head -1) ]]; then
            continue
        fi
        echo "$line"
    done >"$WORK/$2.diff"
    [[ ! -s $WORK/$2.diff ]] ||
        { head "$WORK/$2.diff" >&2; log "$2: the restored folder differs from the database"; failed=true; }
}
if [[ " ${ran[*]} " == *" esbackup "* ]]; then
    if measure esbackup-again env "${s3_env[@]}" "$ESBACKUP_BIN" backup --db "$DB" --target "s3://$bucket/esbackup"; then
        record esbackup-again esbackup
        ran+=(esbackup-again)
    else failed=true; fi
    rm -rf "$WORK/restore-esbackup"
    if measure esbackup-restore env "${s3_env[@]}" "$ESBACKUP_BIN" restore --target "s3://$bucket/esbackup" --db "$WORK/restore-esbackup"; then
        record esbackup-restore esbackup
        ran+=(esbackup-restore)
        check_restore "$WORK/restore-esbackup" esbackup-restore
    else failed=true; fi
    rm -rf "$WORK/restore-esbackup"
fi
if [[ " ${ran[*]} " == *" rclone "* ]]; then
    # shellcheck disable=SC2086
    if measure rclone-again env -u AWS_CA_BUNDLE "${rclone_env[@]}" rclone copy $RCLONE_FLAGS "$DB" "garage:$bucket/rclone"; then
        record rclone-again rclone
        ran+=(rclone-again)
    else failed=true; fi
    rm -rf "$WORK/restore-rclone"
    # shellcheck disable=SC2086
    if measure rclone-restore env -u AWS_CA_BUNDLE "${rclone_env[@]}" rclone copy $RCLONE_FLAGS "garage:$bucket/rclone" "$WORK/restore-rclone"; then
        record rclone-restore rclone
        ran+=(rclone-restore)
        check_restore "$WORK/restore-rclone" rclone-restore
    else failed=true; fi
    rm -rf "$WORK/restore-rclone"
fi

# ---------------------------------------------------------------------------------------------
# 5. The table.
# ---------------------------------------------------------------------------------------------
row() { printf '%-28s' "$1"; shift; for v in "$@"; do printf '%16s' "$v"; done; printf '\n'; }
cell() { [[ " ${ran[*]} " == *" $1 "* ]] && echo "${results[$1.$2]}" || echo "-"; }
echo
echo "S3 backup benchmark: $(numfmt --to=iec "$db_bytes") in $db_files files ($DB) into Garage ${ESBACKUP_GARAGE_IMAGE#*:} on loopback, $(nproc) cores"
echo "esbackup: ${esbackup_note:-$("$ESBACKUP_BIN" --version 2>/dev/null || echo "$ESBACKUP_BIN")}"
echo "rclone:   $(rclone version 2>/dev/null | head -1) ${RCLONE_FLAGS:+(flags: $RCLONE_FLAGS)}"
echo
row "" esbackup rclone
row "wall time (s)" "$(cell esbackup wall)" "$(cell rclone wall)"
row "throughput (MB/s)" "$(cell esbackup mbps)" "$(cell rclone mbps)"
row "CPU user+sys (s)" "$(cell esbackup cpu)" "$(cell rclone cpu)"
row "peak RSS (MiB)" "$(cell esbackup rss)" "$(cell rclone rss)"
row "S3 requests" "$(cell esbackup reqs)" "$(cell rclone reqs)"
# shellcheck disable=SC2013 # endpoint names are single words
for ep in $(cat "$WORK"/esbackup.requests "$WORK"/rclone.requests 2>/dev/null | awk '{ print $1 }' | sort -u); do
    vals=()
    for t in esbackup rclone; do
        if [[ " ${ran[*]} " == *" $t "* ]]; then
            vals+=("$(awk -v e="$ep" '$1 == e { print $2; f = 1 } END { if (!f) print 0 }' "$WORK/$t.requests")")
        else
            vals+=("-")
        fi
    done
    row "  $ep" "${vals[@]}"
done
row "bytes stored" "$(cell esbackup bytes)" "$(cell rclone bytes)"
row "objects stored" "$(cell esbackup objects)" "$(cell rclone objects)"
echo
echo "The same backup again, nothing changed:"
row "wall time (s)" "$(cell esbackup-again wall)" "$(cell rclone-again wall)"
row "CPU user+sys (s)" "$(cell esbackup-again cpu)" "$(cell rclone-again cpu)"
row "S3 requests" "$(cell esbackup-again reqs)" "$(cell rclone-again reqs)"
echo
echo "Restore into an empty folder (checked equal to the database, except truncate.chk):"
row "wall time (s)" "$(cell esbackup-restore wall)" "$(cell rclone-restore wall)"
row "throughput (MB/s)" "$(cell esbackup-restore mbps)" "$(cell rclone-restore mbps)"
row "CPU user+sys (s)" "$(cell esbackup-restore cpu)" "$(cell rclone-restore cpu)"
row "peak RSS (MiB)" "$(cell esbackup-restore rss)" "$(cell rclone-restore rss)"
row "S3 requests" "$(cell esbackup-restore reqs)" "$(cell rclone-restore reqs)"
echo
log "logs and GNU time reports: $WORK"
if $failed; then
    die "a run failed (see above)"
fi
