#!/usr/bin/env bash
# What a backup every few minutes costs (issue 8): a simulated node (esdb-sim) with 256 MiB
# chunks and a few MiB of data, then N rounds of "append about 1 MiB of events, run
# `esbackup backup --json`", against a folder target and against Garage (S3), and one last
# idle round (nothing appended). Per round it prints the bytes appended (writer.chk delta), the
# bytes uploaded (`uploaded.bytes` of the JSON), the files uploaded, the S3 requests (Garage's
# api_s3_request_counter delta), wall and CPU time; then the totals and
# total uploaded ÷ total appended, and what the idle round uploaded.
#
#   bench/cost.sh                  # N=100 rounds, both targets
#   N=3 bench/cost.sh              # smoke run
#   TARGETS=s3 N=20 APPEND=4M bench/cost.sh
#
# Settings (environment):
#   N=100            rounds with appends (round 0, the first full backup, is not counted)
#   APPEND=1M        log appended before each round (esdb-sim append --bytes; whole records)
#   INITIAL=4M       log written when the database is created
#   CHUNK_SIZE=256M  the node's chunk size
#   SEED=1           esdb-sim's seed (both targets get the same database and appends)
#   MEMTABLE=1000000 esdb-sim --memtable-entries (the server's default; smaller values make the
#                    node write index tables, and so more files change between rounds)
#   TARGETS="folder s3"
#   BENCH_DIR=/tmp/esbackup-bench   (work folder: $BENCH_DIR/cost, replaced on each run)
#   ESBACKUP_BIN=, ESDB_SIM_BIN=    binaries (default: built with cargo, release)
#   RESULTS=bench/results/cost-latest.md   the summary (besides stdout)
set -euo pipefail

BENCH_NAME=cost
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${N:-100}
APPEND=${APPEND:-1M}
INITIAL=${INITIAL:-4M}
CHUNK_SIZE=${CHUNK_SIZE:-256M}
SEED=${SEED:-1}
MEMTABLE=${MEMTABLE:-1000000}
TARGETS=${TARGETS:-folder s3}
RESULTS=${RESULTS:-$BENCH_ROOT/bench/results/cost-latest.md}
[[ $N =~ ^[0-9]+$ ]] || die "N=$N: a number"
for t in $TARGETS; do [[ $t == folder || $t == s3 ]] || die "TARGETS: unknown target '$t' (folder, s3)"; done

bench_fresh_work cost
cleanup() { bench_scratch_cleanup; }
bench_traps

needs=()
[[ " $TARGETS " != *" s3 "* ]] || needs+=(garage)
bench_tools "${needs[@]}"
ESB=${ESBACKUP_BIN:-$(bench_build esbackup esbackup)}
SIM=${ESDB_SIM_BIN:-$(bench_build esdb-sim esdb-sim)}

writer() { od -An -t d8 "$1/writer.chk" | tr -d ' '; }

summary=$BENCH_WORK/summary.md
{
    echo "# esbackup cost of frequent backups"
    echo
    echo "\`N=$N APPEND=$APPEND INITIAL=$INITIAL CHUNK_SIZE=$CHUNK_SIZE SEED=$SEED MEMTABLE=$MEMTABLE TARGETS=\"$TARGETS\" bench/cost.sh\`"
    echo "— $(date -u +%Y-%m-%dT%H:%M:%SZ); esbackup $("$ESB" --version) (git $(git -C "$BENCH_ROOT" rev-parse --short HEAD)); $(nproc) CPUs, $(uname -r)."
    echo
    echo "Each round: \`esdb-sim append --db DB --bytes $APPEND\` (then the node is settled, as if idle),"
    echo "then \`esbackup backup --db DB --target TARGET --json --quiet\`. Round 0 is the first full backup;"
    echo "the idle round appends nothing. Appended = writer.chk delta; uploaded = the JSON's uploaded.bytes."
    echo
} >"$summary"

# run_target folder|s3
run_target() {
    local kind=$1 db=$BENCH_WORK/db-$1 url tsv=$BENCH_WORK/cost-$1.tsv i w0 w1 name appended up files req wall cpu
    rm -rf "$db"
    "$SIM" create --db "$db" --chunk-size "$CHUNK_SIZE" --bytes "$INITIAL" --seed "$SEED" \
        --memtable-entries "$MEMTABLE" >"$BENCH_WORK/create-$kind.json"
    if [[ $kind == s3 ]]; then
        garage_start "$BENCH_WORK/srv-garage"
        url=s3://$GARAGE_BUCKET/esbackup
    else
        url=$BENCH_WORK/target-folder
        rm -rf "$url"
    fi
    backup() { # NAME
        if [[ $kind == s3 ]]; then
            measure "$1" env "${s3_env[@]}" "$ESB" backup --db "$db" --target "$url" --json --quiet
        else
            measure "$1" "$ESB" backup --db "$db" --target "$url" --json --quiet
        fi
        jq -e '.ok == true' "$BENCH_WORK/m/$1.out" >/dev/null || die "$1: the backup did not complete (see $BENCH_WORK/m/$1.out)"
    }
    printf 'round\tappended\tuploaded\tfiles\trequests\twall_s\tcpu_s\n' >"$tsv"
    local total_app=0 total_up=0 total_req=0 total_wall=0
    echo >&2
    printf '%-6s %12s %12s %6s %9s %8s %8s   (%s)\n' round appended uploaded files requests wall_s cpu_s "$kind" >&2
    for ((i = 0; i <= N + 1; i++)); do
        w0=$(writer "$db")
        if ((i >= 1 && i <= N)); then
            "$SIM" append --db "$db" --bytes "$APPEND" --seed "$SEED" --memtable-entries "$MEMTABLE" \
                >"$BENCH_WORK/append-$kind-$i.json"
        fi
        w1=$(writer "$db")
        appended=$((i == 0 ? w1 : w1 - w0))
        name=$kind-$i
        backup "$name"
        up=$(jq -r .uploaded.bytes "$BENCH_WORK/m/$name.out")
        files=$(jq -r '.uploaded.objects // .uploaded.files' "$BENCH_WORK/m/$name.out")
        req=$(bench_requests "$name")
        wall=$(bench_wall "$name")
        cpu=$(awk -v u="$(bench_field "$name" "User time (seconds)")" -v s="$(bench_field "$name" "System time (seconds)")" 'BEGIN { printf "%.2f", u + s }')
        local label=$i
        ((i <= N)) || label=idle
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$appended" "$up" "$files" "${req:--}" "$wall" "$cpu" >>"$tsv"
        printf '%-6s %12s %12s %6s %9s %8s %8s\n' "$label" "$appended" "$up" "$files" "${req:--}" "$wall" "$cpu" >&2
        if ((i >= 1 && i <= N)); then
            total_app=$((total_app + appended))
            total_up=$((total_up + up))
            total_req=$((total_req + ${req:-0}))
            total_wall=$(awk -v a="$total_wall" -v b="$wall" 'BEGIN { printf "%.2f", a + b }')
        fi
    done
    [[ $kind != s3 ]] || garage_stop "$BENCH_WORK/srv-garage"
    local idle ratio
    idle=$(awk -F'\t' '$1 == "idle"' "$tsv")
    ratio=$(awk -v u="$total_up" -v a="$total_app" 'BEGIN { printf (a > 0 ? "%.1f" : "n/a"), (a > 0 ? u / a : 0) }')
    {
        echo "## Target: $kind ($url)"
        echo
        echo "| round | appended bytes | uploaded bytes | files | S3 requests | wall s | CPU s |"
        echo "|---|---:|---:|---:|---:|---:|---:|"
        awk -F'\t' 'NR > 1 { printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7 }' "$tsv"
        echo
        local reqs=""
        [[ $kind != s3 ]] || reqs=" $total_req S3 requests ($(awk -v r="$total_req" -v n="$N" 'BEGIN { printf "%.1f", (n > 0 ? r / n : 0) }') per round);"
        echo "Rounds 1..$N: appended $total_app bytes ($(numfmt --to=iec "$total_app")), uploaded $total_up bytes" \
            "($(numfmt --to=iec "$total_up")), **uploaded ÷ appended = $ratio**;$reqs $total_wall s of backup wall time."
        echo "Idle round (nothing appended): uploaded $(cut -f3 <<<"$idle") bytes in $(cut -f4 <<<"$idle") files$([[ $kind == s3 ]] && echo ", $(cut -f5 <<<"$idle") S3 requests"), $(cut -f6 <<<"$idle") s."
        echo
    } >>"$summary"
    log "$kind: appended $total_app, uploaded $total_up, ratio $ratio; idle round uploaded $(cut -f3 <<<"$idle") bytes"
    rm -rf "$db" "$BENCH_WORK/target-folder"
}

for t in $TARGETS; do run_target "$t"; done
mkdir -p "$(dirname "$RESULTS")"
cp "$summary" "$RESULTS"
echo
cat "$summary"
log "summary written to $RESULTS; per-round TSV, JSON and GNU time reports in $BENCH_WORK"
