#!/usr/bin/env python3
"""Writes a synthetic EventStoreDB/KurrentDB database folder for the benchmarks (bench/run.sh).

It writes structurally valid files (what esbackup reads: chunk headers, footers, MD5s,
checkpoints), but the chunks' data areas are random bytes, not log records, and there is no
index. That is enough for an upload benchmark (incompressible data, real file sizes), not for
a restore that a server would open. (The simulator, esdb-sim, makes real log records and
index tables, but writes with the server's fsyncs and takes minutes for gigabytes.)

Layout (docs/FORMAT.md §1-2):
  chunk-000000.000000 … chunk-(N-2).000000  completed chunks: 128-byte header, data, zero
      padding to a multiple of 4096, 128-byte footer (flags 0x03, sizes, MD5 of [0, len-16))
  chunk-(N-1).000000  the active chunk: header, data up to the writer position, zeros up to
      align4096(128 + chunk_size + 128); no footer
  writer.chk = chaser.chk = the writer position; epoch.chk = proposal.chk = truncate.chk = -1
  index/  (empty)

With --sparse the data areas are holes (they read as zeros) and only headers and footers take
disk space: a 64 GiB database costs a few MiB of disk. The footers' MD5s are still those of the
whole file (zeros included), so the chunks stay valid. Use it where the data is read once
(a scale test); zeros compress and deduplicate, so it is not the fair case for a transfer
benchmark. Completed chunks are written in parallel (one process per CPU).

Usage: gen-db.py --size BYTES --chunk-size BYTES [--sparse] DIR
"""

import argparse
import hashlib
import multiprocessing
import os
import struct
import uuid

HEADER_LEN = 128
FOOTER_LEN = 128
ALIGN = 4096
BLOCK = 8 << 20  # write in 8 MiB pieces


def align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def header(chunk_size, number):
    b = bytearray(HEADER_LEN)
    b[0] = 2  # file type: chunk
    b[1] = 3  # min compatible version
    struct.pack_into("<iiii", b, 2, chunk_size, number, number, 0)  # size, start, end, scavenged
    b[18:34] = uuid.uuid4().bytes_le  # .NET Guid byte order
    b[34] = 4  # chunk version (current)
    b[35] = 0  # no transform
    return bytes(b)


ZEROS = bytes(BLOCK)


def write_data(f, n, sparse, md5=None):
    """n bytes of random data, or with sparse a hole of n bytes (zeros, still hashed)."""
    if sparse:
        f.seek(n, os.SEEK_CUR)
    while n > 0:
        piece = ZEROS[: min(n, BLOCK)] if sparse else os.urandom(min(n, BLOCK))
        if not sparse:
            f.write(piece)
        if md5 is not None:
            md5.update(piece)
        n -= len(piece)


def completed_chunk(path, chunk_size, number, sparse=False):
    md5 = hashlib.md5()
    with open(path, "wb") as f:
        h = header(chunk_size, number)
        f.write(h)
        md5.update(h)
        write_data(f, chunk_size, sparse, md5)
        padding = bytes(align(HEADER_LEN + chunk_size + FOOTER_LEN) - (HEADER_LEN + chunk_size + FOOTER_LEN))
        f.write(padding)
        md5.update(padding)
        footer = bytearray(FOOTER_LEN)
        footer[0] = 0x03  # completed | 12-byte posmap entries
        struct.pack_into("<iqi", footer, 1, chunk_size, chunk_size, 0)  # physical, logical, map size
        md5.update(footer[:112])
        footer[112:128] = md5.digest()
        f.write(footer)


def active_chunk(path, chunk_size, number, data, sparse=False):
    with open(path, "wb") as f:
        f.write(header(chunk_size, number))
        write_data(f, data, sparse)
        # The server preallocates the whole file; the tail reads as zeros.
        f.truncate(align(HEADER_LEN + chunk_size + FOOTER_LEN))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, required=True, help="about how many bytes the chunk files hold")
    p.add_argument("--chunk-size", type=int, required=True, help="logical chunk size (256 MiB on a default node)")
    p.add_argument("--sparse", action="store_true", help="data areas as holes (zeros): no disk space for data")
    p.add_argument("dir")
    a = p.parse_args()
    count = max(1, a.size // a.chunk_size)
    os.makedirs(os.path.join(a.dir, "index"), exist_ok=True)
    jobs = [(os.path.join(a.dir, f"chunk-{n:06d}.000000"), a.chunk_size, n, a.sparse) for n in range(count - 1)]
    if len(jobs) > 1:
        with multiprocessing.Pool(os.cpu_count() or 1) as pool:
            pool.starmap(completed_chunk, jobs, chunksize=max(1, min(64, len(jobs) // (4 * (os.cpu_count() or 1)))))
    else:
        for job in jobs:
            completed_chunk(*job)
    last = count - 1
    data = a.chunk_size // 2
    active_chunk(os.path.join(a.dir, f"chunk-{last:06d}.000000"), a.chunk_size, last, data, a.sparse)
    writer = last * a.chunk_size + data
    for name, value in [("writer", writer), ("chaser", writer), ("epoch", -1), ("proposal", -1), ("truncate", -1)]:
        with open(os.path.join(a.dir, f"{name}.chk"), "wb") as f:
            f.write(struct.pack("<q", value))


if __name__ == "__main__":
    main()
