#!/usr/bin/env python3
"""What zstd level 3 makes of a database folder (issue 19), file by file as a backup stores
the files: completed chunks whole, the active (last) chunk only its 128-byte header and the
data up to writer.chk (never the preallocated zero tail), every other file (index, checkpoints,
kurrent.ddb) whole. Each file is compressed on its own with the `zstd` CLI.

    target/debug/esdb-sim create --db /dev/shm/j --bytes 64M --chunk-size 16M --payload json
    bench/zstd-ratio.py /dev/shm/j
"""
import os
import struct
import subprocess
import sys


def packed_len(data):
    out = subprocess.run(["zstd", "-3", "-c", "-q"], input=data,
                         stdout=subprocess.PIPE, check=True).stdout
    return len(out)


def main(db):
    with open(os.path.join(db, "writer.chk"), "rb") as f:
        writer = struct.unpack("<q", f.read(8))[0]
    chunks = sorted(n for n in os.listdir(db) if n.startswith("chunk-") and not n.endswith(".tmp"))
    totals = {"chunks": [0, 0], "other files": [0, 0]}
    for root, _, files in os.walk(db):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                data = f.read()
            is_chunk = root == db and name in chunks
            if is_chunk and name == chunks[-1]:
                # Header: chunk size (i32) at offset 2, chunk start number (i32) at 6.
                size, start = struct.unpack("<ii", data[2:10])
                data = data[:128 + writer - start * size]
            t = totals["chunks" if is_chunk else "other files"]
            t[0] += len(data)
            t[1] += packed_len(data)
    whole = [sum(t[i] for t in totals.values()) for i in (0, 1)]
    print(f"{db}: writer.chk {writer:,}")
    for label, (raw, packed) in [*totals.items(), ("whole db", whole)]:
        print(f"  {label:<11} {raw:>13,} B -> {packed:>13,} B  ratio {packed / max(raw, 1):.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
