#!/usr/bin/env bash
# What `esbackup run` costs while a node writes (issue 18): a simulated node (esdb-sim live)
# appends RATE bytes of log per second for MINUTES minutes while `esbackup run --every EVERY`
# backs it up, to a folder target and to Garage (S3). Every SCRAPE seconds the run's /metrics is
# read; the table gives, per target:
#   lag            esbackup_lag_bytes and esbackup_lag_seconds while the node writes: p50, p99, max
#   CPU s per hour the esbackup process's utime+stime (/proc/PID/stat) over the window, per hour
#   uploaded/hour  esbackup_uploaded_bytes_total over the window, against the log appended
#                  (writer.chk growth) over the same window
#   metadata       the bytes of the objects under .esbackup/points/ and .esbackup/pages/, per point (all points, and
#                  the points taken in the window alone)
# The window starts once the first point (the full backup of the INITIAL data) is stored and
# ends when, the writer stopped and settled, a point has caught up with it (lag 0).
# Then the idle run: a settled database of IDLE_FILES chunk files (bench/gen-db.py, sparse
# chunks of SMALL_CHUNK), backed up once, then again with nothing new: what that second
# `esbackup backup` uploads (bytes, objects, S3 requests) and its point's metadata.
#
# There is no peer: no other tool backs up a live EventStoreDB/KurrentDB folder continuously
# (Litestream is SQLite's; rclone and rsync have no continuous mode), so the table has
# esbackup's figures only, and says so.
#
#   bench/continuous.sh                        # 10 minutes per target, 256 KiB/s, every 10 s
#   MINUTES=3 bench/continuous.sh              # shorter
#   MINUTES=0.5 ROWS=folder IDLE_FILES=100 bench/continuous.sh   # smoke run
#
# Settings (environment):
#   MINUTES=10        how long the node writes, per target (decimals allowed)
#   RATE=256K         log bytes per second the node appends (esdb-sim live --rate)
#   EVERY=10s         esbackup run --every
#   ROWS=folder,s3    targets (comma or space separated): folder, s3 (Garage)
#   INITIAL=4M        log written when the database is created
#   CHUNK_SIZE=256M   the node's chunk size
#   SEED=1            esdb-sim's seed
#   SCRAPE=1          seconds between two reads of /metrics
#   CATCH_UP=300      seconds to wait, after the writer stopped, for a point with lag 0
#   IDLE_FILES=4000   chunk files of the idle-run database (0: no idle run)
#   SMALL_CHUNK=256K  their chunk size
#   BENCH_DIR=/tmp/esbackup-bench   (work folder: $BENCH_DIR/continuous, replaced on each run;
#                     the idle-run database is kept there for the next run)
#   ESBACKUP_BIN=, ESDB_SIM_BIN=    binaries (default: built with cargo, release)
#   RESULTS=bench/results/continuous.md   the summary (besides stdout)
set -euo pipefail

BENCH_NAME=continuous
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MINUTES=${MINUTES:-10}
RATE=${RATE:-256K}
EVERY=${EVERY:-10s}
ROWS=${ROWS:-folder,s3}
INITIAL=${INITIAL:-4M}
CHUNK_SIZE=${CHUNK_SIZE:-256M}
SEED=${SEED:-1}
SCRAPE=${SCRAPE:-1}
CATCH_UP=${CATCH_UP:-300}
IDLE_FILES=${IDLE_FILES:-4000}
SMALL_CHUNK=${SMALL_CHUNK:-256K}
RESULTS=${RESULTS:-$BENCH_ROOT/bench/results/continuous.md}
INVOCATION="MINUTES=$MINUTES RATE=$RATE EVERY=$EVERY ROWS=$ROWS IDLE_FILES=$IDLE_FILES bench/continuous.sh"

[[ $MINUTES =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "MINUTES=$MINUTES: a number of minutes (e.g. 10 or 0.5)"
[[ $SCRAPE =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "SCRAPE=$SCRAPE: a number of seconds"
[[ $CATCH_UP =~ ^[1-9][0-9]*$ ]] || die "CATCH_UP=$CATCH_UP: a number of seconds"
[[ $IDLE_FILES =~ ^[0-9]+$ ]] || die "IDLE_FILES=$IDLE_FILES: a number of files"
numfmt --from=iec "$RATE" >/dev/null 2>&1 || die "RATE=$RATE is not a size (e.g. 256K, 1M)"
small_bytes=$(numfmt --from=iec "$SMALL_CHUNK" 2>/dev/null) || die "SMALL_CHUNK=$SMALL_CHUNK is not a size (e.g. 256K)"
SECONDS_WRITING=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 + 0.5 }')
((SECONDS_WRITING > 0)) || die "MINUTES=$MINUTES: less than a second"
read -r -a rows <<<"${ROWS//,/ }"
((${#rows[@]})) || die "ROWS is empty (folder, s3)"
for r in "${rows[@]}"; do [[ $r == folder || $r == s3 ]] || die "ROWS: unknown target '$r' (folder, s3)"; done

bench_fresh_work continuous
cleanup() { bench_scratch_cleanup; }
bench_traps

needs=()
[[ " ${rows[*]} " != *" s3 "* ]] || needs+=(garage rclone)
bench_tools "${needs[@]}"
ESB=${ESBACKUP_BIN:-$(bench_build esbackup esbackup)}
SIM=${ESDB_SIM_BIN:-$(bench_build esdb-sim esdb-sim)}

writer() { od -An -t d8 "$1/writer.chk" | tr -d ' '; }
now() { date +%s.%N; }
alive() { [[ -r /proc/$1/stat && $(sed 's/^.*) //' "/proc/$1/stat" | cut -c1) != Z ]]; }
# 1234567 -> 1,234,567
commas() {
    awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); o = ""
        while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
        print s o }'
}
per_hour() { awk -v d="$1" -v t="$2" 'BEGIN { printf "%.0f", (t > 0 ? d / t * 3600 : 0) }'; } # DELTA SECONDS
# pct FILE COLUMN P: the P-th percentile (nearest rank) of a TSV column.
pct() {
    cut -f"$2" "$1" | sort -g | awk -v p="$3" '{ v[NR] = $1 }
        END { if (!NR) { print "-"; exit } i = int((p / 100) * NR + 0.999999); if (i < 1) i = 1; print v[i] }'
}

# The target of a row: TARGET_URL and target_env (what esbackup reads), the server started.
target_env=()
row_target() { # KIND NAME
    if [[ $1 == s3 ]]; then
        [[ -n $GARAGE_PID ]] || garage_start "$BENCH_WORK/srv-garage"
        TARGET_URL=s3://$GARAGE_BUCKET/$2
        target_env=("${s3_env[@]}")
    else
        TARGET_URL=$BENCH_WORK/target-$2
        rm -rf "$TARGET_URL"
        target_env=()
    fi
}
# "objects bytes" of the points' metadata: the records under .esbackup/points/ and the pages of
# their file tables under .esbackup/pages/ (point format 4).
points_size() { # KIND URL
    local d
    for d in points pages; do
        if [[ $1 == s3 ]]; then
            rclone_cmd size --json "garage:${2#s3://}/.esbackup/$d" | jq -r '"\(.count) \(.bytes)"'
        else
            find "$2/.esbackup/$d" -type f -printf '%s\n' 2>/dev/null | awk '{ n++; s += $1 } END { printf "%d %.0f\n", n, s }'
        fi
    done | awk '{ n += $1; s += $2 } END { printf "%d %.0f\n", n, s }'
}
points_count() { # URL: restore points esbackup lists
    env "${target_env[@]}" "$ESB" list --target "$1" --json | jq 'if type == "array" then length else (.points | length) end'
}

# ---------------------------------------------------------------------------------------------
# The steady writer and `esbackup run`.
# ---------------------------------------------------------------------------------------------
METRICS_URL=
# metric NAME…: the values of unlabelled metrics from one scrape, tab-separated ("" if absent).
metric() {
    curl -fsS --max-time 2 "$METRICS_URL" 2>/dev/null | awk -v names="$*" '
        BEGIN { n = split(names, want, " ") }
        { got[$1] = $2 }
        END { for (i = 1; i <= n; i++) printf "%s%s", (i > 1 ? "\t" : ""), got[want[i]]; print "" }'
}
wait_metric() { # WHAT SECONDS PID AWK-CONDITION-ON-$1 NAME: waits until the metric NAME meets it
    local what=$1 secs=$2 pid=$3 cond=$4 name=$5 i v
    for ((i = 0; i < secs * 2; i++)); do
        v=$(metric "$name")
        [[ -n $v ]] && awk -v x="$v" "BEGIN { exit !(x $cond) }" && return 0
        alive "$pid" || die "esbackup run (PID $pid) exited while waiting for $what (log: $BENCH_WORK/run-$KIND.log)"
        sleep 0.5
    done
    die "no $what within $secs s ($name = ${v:-absent}; log: $BENCH_WORK/run-$KIND.log)"
}

steady_row() { # KIND
    KIND=$1
    local db=$BENCH_WORK/db-$KIND port run_pid sim_pid samples=$BENCH_WORK/lag-$KIND.tsv
    rm -rf "$db"
    "$SIM" create --db "$db" --chunk-size "$CHUNK_SIZE" --bytes "$INITIAL" --seed "$SEED" >"$BENCH_WORK/create-$KIND.json"
    row_target "$KIND" continuous
    port=$(free_port)
    METRICS_URL=http://127.0.0.1:$port/metrics
    log "$KIND: esbackup run --every $EVERY into $TARGET_URL"
    env "${target_env[@]}" "$ESB" run --db "$db" --target "$TARGET_URL" --every "$EVERY" \
        --metrics-addr "127.0.0.1:$port" --log-format json >"$BENCH_WORK/run-$KIND.log" 2>&1 </dev/null &
    run_pid=$!
    bench_track_pid "$run_pid"
    bench_wait_http "$METRICS_URL" 30 "$run_pid" "$BENCH_WORK/run-$KIND.log"
    wait_metric "first point" 300 "$run_pid" ">= 1" esbackup_points

    local t0 cpu0 up0 w0 p0 ps0
    t0=$(now) cpu0=$(proc_cpu "$run_pid") w0=$(writer "$db") p0=$(points_count "$TARGET_URL")
    up0=$(metric esbackup_uploaded_bytes_total) ps0=$(points_size "$KIND" "$TARGET_URL")
    log "$KIND: the node writes $RATE/s for ${SECONDS_WRITING}s (esdb-sim live); /metrics read every ${SCRAPE}s"
    "$SIM" live --db "$db" --rate "$RATE" --for "${SECONDS_WRITING}s" --seed "$SEED" \
        >"$BENCH_WORK/live-$KIND.json" 2>"$BENCH_WORK/live-$KIND.err" &
    sim_pid=$!
    bench_track_pid "$sim_pid"
    printf 'time\tlag_bytes\tlag_seconds\twriter\n' >"$samples.all"
    while alive "$sim_pid"; do
        printf '%s\t%s\t%s\n' "$(now)" "$(metric esbackup_lag_bytes esbackup_lag_seconds)" "$(writer "$db")" >>"$samples.all"
        alive "$run_pid" || die "esbackup run exited while the node wrote (log: $BENCH_WORK/run-$KIND.log)"
        sleep "$SCRAPE"
    done
    wait "$sim_pid" || die "esdb-sim live failed: $(tail -1 "$BENCH_WORK/live-$KIND.err")"
    bench_stop_pid "$sim_pid" # gone: only forgotten
    # Scrapes that failed (an empty field) are dropped, and counted.
    awk -F'\t' 'NR > 1 && $2 != "" && $3 != ""' "$samples.all" >"$samples"
    local scrapes missed
    scrapes=$(($(wc -l <"$samples.all") - 1))
    missed=$((scrapes - $(wc -l <"$samples")))
    ((missed == 0)) || warn "$KIND: $missed of $scrapes scrapes of /metrics failed (left out)"
    # The node's own pace between two samples (bytes/s): how steady the writer was.
    awk -F'\t' 'NR > 2 && $1 > t { printf "%.0f\n", ($4 - w) / ($1 - t) } NR > 1 { t = $1; w = $4 }' \
        "$samples.all" >"$BENCH_WORK/pace-$KIND.tsv"
    log "$KIND: the writer stopped; waiting for a point with lag 0"
    wait_metric "point with lag 0" "$CATCH_UP" "$run_pid" "== 0" esbackup_lag_bytes

    local t1 cpu1 up1 w1 p1 ps1 secs
    t1=$(now) cpu1=$(proc_cpu "$run_pid") w1=$(writer "$db") p1=$(points_count "$TARGET_URL")
    up1=$(metric esbackup_uploaded_bytes_total) ps1=$(points_size "$KIND" "$TARGET_URL")
    local failures
    failures=$(curl -fsS "$METRICS_URL" | awk '/^esbackup_runs_total\{.*result="failure"/ { s += $NF } END { printf "%.0f", s }')
    bench_stop_pid "$run_pid"
    [[ $KIND != s3 ]] || garage_stop "$BENCH_WORK/srv-garage"

    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    local appended=$((w1 - w0)) uploaded
    uploaded=$(awk -v a="$up0" -v b="$up1" 'BEGIN { printf "%.0f", b - a }')
    local cpu_h up_h app_h ratio meta_all meta_new
    cpu_h=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$secs" 'BEGIN { printf "%.1f", (b - a) / t * 3600 }')
    up_h=$(per_hour "$uploaded" "$secs")
    app_h=$(per_hour "$appended" "$secs")
    ratio=$(awk -v u="$uploaded" -v a="$appended" 'BEGIN { printf (a > 0 ? "%.3f" : "n/a"), (a > 0 ? u / a : 0) }')
    meta_all=$(awk -v b="${ps1#* }" -v p="$p1" 'BEGIN { printf "%.0f", (p > 0 ? b / p : 0) }')
    meta_new=$(awk -v a="${ps0#* }" -v b="${ps1#* }" -v p="$((p1 - p0))" 'BEGIN { printf "%.0f", (p > 0 ? (b - a) / p : 0) }')
    local lb ls
    lb="$(commas "$(pct "$samples" 2 50)") / $(commas "$(pct "$samples" 2 99)") / $(commas "$(pct "$samples" 2 100)")"
    ls="$(pct "$samples" 3 50) / $(pct "$samples" 3 99) / $(pct "$samples" 3 100)"
    local pace=$BENCH_WORK/pace-$KIND.tsv
    pace="$(commas "$(pct "$pace" 1 50)") / $(commas "$(pct "$pace" 1 100)")"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |\n' \
        "$(label "$KIND")" "$secs" "$((p1 - p0)) ($p1)" "$(wc -l <"$samples")" "$pace" "$lb" "$ls" "$cpu_h" \
        "$(commas "$up_h")" "$(commas "$app_h")" "$ratio" "$(commas "$meta_all")" "$(commas "$meta_new")" >>"$BENCH_WORK/steady.md"
    log "$KIND: ${secs}s, $((p1 - p0)) points, node pace $pace B/s, lag bytes $lb, lag s $ls, CPU $cpu_h s/h, uploaded $up_h B/h vs appended $app_h B/h ($ratio), $meta_new B per new point, $failures failed runs"
    echo "$KIND $failures" >>"$BENCH_WORK/failures"
    rm -rf "$db" "$BENCH_WORK/target-continuous"
}

label() { [[ $1 == s3 ]] && echo "S3 (Garage)" || echo "folder"; }

# ---------------------------------------------------------------------------------------------
# The idle run: a backup of a settled database of IDLE_FILES files with nothing new.
# ---------------------------------------------------------------------------------------------
IDLE_DB=$BENCH_DIR/db-$IDLE_FILES-files-$SMALL_CHUNK-sparse
idle_row() { # KIND
    KIND=$1
    row_target "$KIND" idle
    local first=idle-$KIND-first name=idle-$KIND files up objects req wall ps p
    files=$(bench_dir_files "$IDLE_DB")
    log "$KIND: idle run on $files files (a first backup, then one with nothing new)"
    measure "$first" env "${target_env[@]}" "$ESB" backup --db "$IDLE_DB" --target "$TARGET_URL" --json --quiet ||
        die "$first failed (log: $BENCH_WORK/m/$first.err)"
    measure "$name" env "${target_env[@]}" "$ESB" backup --db "$IDLE_DB" --target "$TARGET_URL" --json --quiet ||
        die "$name failed (log: $BENCH_WORK/m/$name.err)"
    jq -e '.ok == true' "$BENCH_WORK/m/$name.out" >/dev/null || die "$name: the backup did not complete"
    up=$(jq -r .uploaded.bytes "$BENCH_WORK/m/$name.out")
    objects=$(jq -r '.uploaded.objects // .uploaded.files' "$BENCH_WORK/m/$name.out")
    req=$(bench_requests "$name")
    wall=$(bench_wall "$name")
    ps=$(points_size "$KIND" "$TARGET_URL")
    p=$(points_count "$TARGET_URL")
    [[ $KIND != s3 ]] || garage_stop "$BENCH_WORK/srv-garage"
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$(label "$KIND")" "$(commas "$files")" "$(commas "$up")" \
        "$objects" "${req:-—}" "$wall" "$(commas "$(awk -v b="${ps#* }" -v p="$p" 'BEGIN { printf "%.0f", (p > 0 ? b / p : 0) }')")" \
        >>"$BENCH_WORK/idle.md"
    log "$KIND: idle run uploaded $up bytes in $objects objects${req:+, $req requests}, ${wall}s"
    rm -rf "$BENCH_WORK/target-idle"
}

for r in "${rows[@]}"; do steady_row "$r"; done
if ((IDLE_FILES > 0)); then
    # gen-db.py makes SIZE/CHUNK chunk files: IDLE_FILES files need IDLE_FILES chunks' worth.
    bench_gen_db "$IDLE_DB" $((IDLE_FILES * small_bytes)) "$small_bytes" sparse
    for r in "${rows[@]}"; do idle_row "$r"; done
fi

summary=$BENCH_WORK/summary.md
{
    echo "# esbackup run: continuous protection of a writing node"
    echo
    echo "\`$INVOCATION\`"
    echo "— $(date -u +%Y-%m-%dT%H:%M:%SZ); $("$ESB" --version) (git $(git -C "$BENCH_ROOT" rev-parse --short HEAD)); $(nproc) CPUs, $(uname -r); every server on 127.0.0.1."
    echo
    echo "**No peer**: no other tool backs up a live EventStoreDB/KurrentDB folder continuously"
    echo "(Litestream is SQLite's; rclone and rsync have no continuous mode), so these are esbackup's figures alone."
    echo
    echo "## A node writing $RATE/s for $MINUTES min, \`esbackup run --every $EVERY\`"
    echo
    echo "\`esdb-sim create --chunk-size $CHUNK_SIZE --bytes $INITIAL\`, then \`esbackup run --every $EVERY --metrics-addr …\`;"
    echo "once its first point is stored, \`esdb-sim live --rate $RATE --for ${SECONDS_WRITING}s\` appends whole transactions"
    echo "ten times a second. The window ends at the first point with lag 0 after the writer settled."
    echo "Lag: esbackup_lag_bytes / esbackup_lag_seconds read from /metrics every ${SCRAPE}s while the node writes"
    echo "(p50 / p99 / max); the node's pace: writer.chk growth between two reads (p50 / max; the writer tops"
    echo "the log up to RATE × elapsed, so a stall of the disk is followed by a burst, and a higher lag). CPU: the esbackup process's utime+stime over the window, per hour. Uploaded:"
    echo "esbackup_uploaded_bytes_total; appended: writer.chk growth; both over the window, per hour."
    echo "Metadata: bytes under .esbackup/points/ and .esbackup/pages/ per point, over all points / over the window's points."
    echo
    echo "| target | window s | points (held) | scrapes | node's pace B/s p50 / max | lag bytes p50 / p99 / max | lag s p50 / p99 / max | CPU s per hour | uploaded B per hour | appended B per hour | uploaded ÷ appended | metadata B per point (all / window) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    cat "$BENCH_WORK/steady.md"
    echo
    awk '$2 > 0 { printf "%s: %s runs failed and were retried (see the run log).\n", $1, $2 }' "$BENCH_WORK/failures"
    if ((IDLE_FILES > 0)); then
        echo "## Idle run: $(commas "$(bench_dir_files "$IDLE_DB")") files, nothing new"
        echo
        echo "\`bench/gen-db.py --sparse\` database of $IDLE_FILES chunks of $SMALL_CHUNK (settled), backed up once, then"
        echo "\`esbackup backup --json\` again with nothing changed: that second run's uploaded bytes and objects"
        echo "(points and lock included), S3 requests (Garage's counters), wall time; and the location's point metadata per point."
        echo
        echo "| target | files | idle run uploaded bytes | objects | S3 requests | wall s | metadata B per point |"
        echo "|---|---:|---:|---:|---:|---:|---:|"
        cat "$BENCH_WORK/idle.md"
        echo
    fi
} >"$summary"
mkdir -p "$(dirname "$RESULTS")"
cp "$summary" "$RESULTS"
echo
cat "$summary"
log "summary written to $RESULTS; lag samples, run logs and GNU time reports in $BENCH_WORK"
