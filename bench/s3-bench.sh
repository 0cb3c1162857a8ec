#!/usr/bin/env bash
# The S3 rows of bench/run.sh: esbackup against rclone on the same database, into Garage (full
# backup, the same again with nothing changed, a restore checked against the database).
#
#   bench/s3-bench.sh                 # 4 GiB database, one run of each
#   SIZE=200M bench/s3-bench.sh       # quick run
#
# Kept for its old name: it is `ROWS=s3 SIZE=4G REPEAT=1 bench/run.sh`, and takes every
# setting bench/run.sh takes (SIZE, CHUNK_SIZE, REPEAT, RCLONE_FLAGS, BENCH_DIR, KEEP_DB,
# ESBACKUP_BIN, RESULTS…). The table also goes to bench/results/s3-bench.md (not latest.md,
# which holds the table of a full bench/run.sh) unless RESULTS says otherwise.
set -euo pipefail
SIZE=${SIZE:-4G}
# A SIZE under 1 GiB gets smaller chunks, so that there are still at least 4 (as before).
if [[ -z ${CHUNK_SIZE:-} ]]; then
    bytes=$(numfmt --from=iec "$SIZE")
    chunk=$((256 << 20))
    ((bytes / 4 >= chunk)) || chunk=$((bytes / 4 / 4096 * 4096))
    CHUNK_SIZE=$chunk
fi
export SIZE CHUNK_SIZE
export ROWS=${ROWS:-s3} REPEAT=${REPEAT:-1}
export RESULTS=${RESULTS:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/results/s3-bench.md}
exec "$(dirname "${BASH_SOURCE[0]}")/run.sh" "$@"
