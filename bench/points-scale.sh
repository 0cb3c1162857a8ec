#!/usr/bin/env bash
# What restore points cost at scale (issue 18, section 4): a database of FILES files (sparse
# completed chunks from bench/gen-db.py: a 1 TiB node with 256 MiB chunks has about 4,000),
# one full backup and then POINTS-1 idle ones, against a folder and against Garage (S3). Prints
# what an idle run uploads (bytes, requests), the metadata stored per point, and how long
# `list`, `status` and `forget --keep-last (90%) --prune` take over all the points, with their
# peak memory. PEER_BIN (e.g. a build of the version before point format 4) runs the same
# beside ours, with PEER_POINTS points (fewer: its points are large).
#
#   bench/points-scale.sh                               # 4,000 files, 1,000 points, both targets
#   FILES=500 POINTS=50 TARGETS=folder bench/points-scale.sh   # smoke run
#   PEER_BIN=/tmp/esbackup-050300f PEER_POINTS=100 bench/points-scale.sh
#
# Settings (environment):
#   FILES=4000        database files (about; chunks of 64 KiB, sparse)
#   POINTS=1000       restore points made (1 full run, then idle runs)
#   TARGETS="folder s3"
#   PEER_BIN=         another esbackup to measure beside ours (none by default)
#   PEER_POINTS=100   points made with PEER_BIN
#   BENCH_DIR=/tmp/esbackup-bench   (work folder: $BENCH_DIR/points-scale, replaced on each run)
#   ESBACKUP_BIN=     our binary (default: built with cargo, release)
#   RESULTS=bench/results/points-scale.md   the summary (besides stdout)
set -euo pipefail

BENCH_NAME=points-scale
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FILES=${FILES:-4000}
POINTS=${POINTS:-1000}
TARGETS=${TARGETS:-folder s3}
PEER_BIN=${PEER_BIN:-}
PEER_POINTS=${PEER_POINTS:-100}
RESULTS=${RESULTS:-$BENCH_ROOT/bench/results/points-scale.md}
for n in FILES POINTS PEER_POINTS; do [[ ${!n} =~ ^[0-9]+$ && ${!n} -ge 2 ]] || die "$n=${!n}: a number of at least 2"; done
for t in $TARGETS; do [[ $t == folder || $t == s3 ]] || die "TARGETS: unknown target '$t' (folder, s3)"; done

bench_fresh_work points-scale
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    bench_stop_all
    rm -rf "$BENCH_WORK"/srv-* "$BENCH_WORK"/target-*
    bench_stop_dockerd_if_ours
    exit "$rc"
}
bench_traps

needs=()
[[ " $TARGETS " != *" s3 "* ]] || needs+=(garage rclone)
bench_tools "${needs[@]}"
ESB=${ESBACKUP_BIN:-$(bench_build esbackup esbackup)}
CHUNK=65536
DB=$BENCH_WORK/db
bench_gen_db "$DB" $((FILES * CHUNK)) "$CHUNK" sparse

summary=$BENCH_WORK/summary.md
{
    echo "# esbackup restore points at scale"
    echo
    echo "\`FILES=$FILES POINTS=$POINTS TARGETS=\"$TARGETS\" PEER_POINTS=$PEER_POINTS bench/points-scale.sh\`"
    echo "— $(date -u +%Y-%m-%dT%H:%M:%SZ); ours: $("$ESB" --version) (git $(git -C "$BENCH_ROOT" rev-parse --short HEAD))${PEER_BIN:+; peer: $("$PEER_BIN" --version) at $PEER_BIN}; $(nproc) CPUs."
    echo
    echo "A database of $(bench_dir_files "$DB") files (sparse 64 KiB chunks, bench/gen-db.py); one full backup, then idle"
    echo "backups (nothing changed) up to the number of points; then \`list\`, \`status\` and"
    echo "\`forget --keep-last (90% of the points) --prune\` over all of them. Metadata per point: the bytes"
    echo "under .esbackup/points/ and .esbackup/pages/ divided by the points."
    echo
    echo "| esbackup | target | points | idle run: bytes up | idle run: requests | metadata per point (bytes) | list s | list peak MiB | status s | forget --prune s | forget peak MiB |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} >"$summary"

# metadata_bytes folder|s3 URL: bytes of the point records and pages stored.
metadata_bytes() {
    local kind=$1 url=$2
    if [[ $kind == folder ]]; then
        # Points before format 4 have no pages folder.
        { du -sb "$url/.esbackup/points" "$url/.esbackup/pages" 2>/dev/null || true; } | awk '{ s += $1 } END { printf "%.0f\n", s }'
    else
        for d in points pages; do
            { rclone_cmd size --json "garage:$GARAGE_BUCKET/${url#s3://"$GARAGE_BUCKET"/}/.esbackup/$d" 2>/dev/null || echo '{"bytes":0}'; } | jq -r .bytes
        done | awk '{ s += $1 } END { printf "%.0f\n", s }'
    fi
}

# run_case LABEL BIN KIND POINTS
run_case() {
    local label=$1 bin=$2 kind=$3 points=$4 url i name
    local -a env=()
    if [[ $kind == s3 ]]; then
        url=s3://$GARAGE_BUCKET/$label
        env=("${s3_env[@]}")
    else
        url=$BENCH_WORK/target-$label
        rm -rf "$url"
    fi
    esb() { env "${env[@]}" "$bin" "$@"; }
    log "$label on $kind: $points points"
    esb backup --db "$DB" --target "$url" --json --quiet >"$BENCH_WORK/$label-$kind-full.json"
    for ((i = 2; i < points; i++)); do
        esb backup --db "$DB" --target "$url" --json --quiet >/dev/null || die "$label: backup $i failed"
    done
    name=$label-$kind-idle
    measure "$name" env "${env[@]}" "$bin" backup --db "$DB" --target "$url" --json --quiet
    jq -e '.ok == true' "$BENCH_WORK/m/$name.out" >/dev/null || die "$name: the backup failed"
    local up req meta
    up=$(jq -r .uploaded.bytes "$BENCH_WORK/m/$name.out")
    req=$(jq -r .uploaded.requests "$BENCH_WORK/m/$name.out")
    meta=$(($(metadata_bytes "$kind" "$url") / points))
    local cmd
    for cmd in list status forget; do
        name=$label-$kind-$cmd
        case $cmd in
            forget) measure "$name" env "${env[@]}" "$bin" forget --target "$url" --keep-last $((points * 9 / 10)) --prune --json ;;
            *) measure "$name" env "${env[@]}" "$bin" "$cmd" --target "$url" --json ;;
        esac
        [[ $cmd == status ]] || jq -e '(type == "array") or .ok == true' "$BENCH_WORK/m/$name.out" >/dev/null || die "$name failed (see $BENCH_WORK/m/$name.err)"
    done
    rss() { awk -v k="$(bench_field "$1" "Maximum resident set size (kbytes)")" 'BEGIN { printf "%.0f", k / 1024 }'; }
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$kind" "$points" "$up" "$req" "$meta" \
        "$(bench_wall "$label-$kind-list")" "$(rss "$label-$kind-list")" "$(bench_wall "$label-$kind-status")" \
        "$(bench_wall "$label-$kind-forget")" "$(rss "$label-$kind-forget")" >>"$summary"
    tail -1 "$summary" >&2
    [[ $kind == s3 ]] || rm -rf "$url"
}

for t in $TARGETS; do
    [[ $t != s3 ]] || garage_start "$BENCH_WORK/srv-garage"
    run_case ours "$ESB" "$t" "$POINTS"
    [[ -z $PEER_BIN ]] || run_case peer "$PEER_BIN" "$t" "$PEER_POINTS"
    [[ $t != s3 ]] || garage_stop "$BENCH_WORK/srv-garage"
done
mkdir -p "$(dirname "$RESULTS")"
cp "$summary" "$RESULTS"
echo
cat "$summary"
log "summary written to $RESULTS; JSON and GNU time reports in $BENCH_WORK/m"
