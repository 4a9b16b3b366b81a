#!/usr/bin/env python3
"""How a segment is written decides what its fdatasync costs.

Each variant writes N batches of --batch bytes (default 18 KiB: one blocking
Ready-loop write, 64 records of 288 B) one after another into a 64 MiB file
and calls fdatasync after each, as the blocking Ready loop does:

  mmap/fallocated   through a MAP_SHARED mapping, file only posix_fallocate'd
                    (a fresh segment today)
  mmap/written      through a mapping, file written once before (a recycled
                    segment today)
  pwrite/fallocated os.pwrite into a posix_fallocate'd file
  pwrite/written    os.pwrite into blocks written once before (the raw
                    reference of perf/bench_ready_loop.py)

Prints microseconds per write+fdatasync and each variant's ratio to
pwrite/written.  Variants are interleaved over --rounds (ABAB...) so a busy
machine hurts them alike.  The design notes (DESIGN.md, "ext4 on our
machines") measured the first two; this script measures them next to pwrite.
"""
from __future__ import annotations

import argparse
import mmap
import os
import statistics
import tempfile
import time

SIZE = 64 << 20


def prepare(path: str, written: bool) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    if written:
        zero = bytes(1 << 20)
        for k in range(SIZE >> 20):
            os.pwrite(fd, zero, k << 20)
    else:
        os.posix_fallocate(fd, 0, SIZE)
    os.fdatasync(fd)
    return fd


def run(path: str, method: str, written: bool, batch: int, n: int) -> float:
    fd = prepare(path, written)
    data = bytes(range(256)) * (batch // 256)
    try:
        if method == "mmap":
            m = mmap.mmap(fd, SIZE)
            m.madvise(mmap.MADV_RANDOM)
            t0 = time.perf_counter()
            for k in range(n):
                m[k * batch:(k + 1) * batch] = data
                os.fdatasync(fd)
            took = time.perf_counter() - t0
            m.close()
        else:
            t0 = time.perf_counter()
            for k in range(n):
                os.pwrite(fd, data, k * batch)
                os.fdatasync(fd)
            took = time.perf_counter() - t0
    finally:
        os.close(fd)
        os.unlink(path)
    return took / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--batch", type=int, default=64 * 288)
    ap.add_argument("-n", type=int, default=1000, help="writes per variant and round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    variants = [("mmap", False), ("mmap", True), ("pwrite", False), ("pwrite", True)]
    got: dict = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        path = os.path.join(d, "segment")
        for _ in range(args.rounds):
            for v in variants:
                got[v].append(run(path, v[0], v[1], args.batch, args.n))
    ref = statistics.median(got[("pwrite", True)])
    print(f"{args.n} writes of {args.batch} B + fdatasync each, {args.rounds} rounds, medians:")
    for (method, written), us in got.items():
        med = statistics.median(us)
        print(f"  {method}/{'written' if written else 'fallocated':10s} {med:8.1f} us   "
              f"{med / ref:5.2f}x pwrite/written   (runs: {', '.join(f'{u:.0f}' for u in us)})")


if __name__ == "__main__":
    main()
