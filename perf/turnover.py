#!/usr/bin/env python3
"""Durable writes per second as segments turn over, window by window.

The workload of issue 13: 16 KiB segments, four groups appending 1 entry of
256 B each per write and compacting behind their heads (so one segment is in
use, and every rotation recycles the one before), one durable write at a
time.  Prints writes/s and rotations per window; the reference is the run's
own first window (a log whose cost grows with its history slows down
here: before the segment-table rework, 2,230 writes/s in the first 20 s
fell to 632 at 100 s, after 28,000 rotations).

    .venv/bin/python perf/turnover.py --seconds 100 --window 20
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time

import pyraftlog
from pyraftlog import Entry, WriteBatch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=100.0)
    ap.add_argument("--window", type=float, default=20.0)
    a = ap.parse_args(argv)
    path = tempfile.mkdtemp(prefix="pyraftlog-turnover-")
    log = pyraftlog.open(path, segment_size=16 << 10)
    data = b"t" * 256
    i = 0
    rows = []
    t_end = time.monotonic() + a.seconds
    print(f"{'t(s)':>6} {'writes/s':>9} {'rotations':>10} {'segments':>8}")
    try:
        while time.monotonic() < t_end:
            t0, n, r0 = time.monotonic(), 0, log.stats()["rotations"]
            while time.monotonic() - t0 < a.window:
                i += 1
                b = WriteBatch()
                for g in range(4):
                    b.append(g, [Entry(i, 1, data)])
                    if i > 2:
                        b.compact(g, i - 2)
                log.write(b).wait()
                n += 1
            s = log.stats()
            rows.append(n / (time.monotonic() - t0))
            print(f"{a.window * len(rows):6.0f} {rows[-1]:9.0f} {s['rotations'] - r0:10d} "
                  f"{s['segments']:8d}", flush=True)
    finally:
        log.close()
        shutil.rmtree(path, ignore_errors=True)
    print(f"last window / first window: {rows[-1] / rows[0]:.2f}x (target >= 0.85x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
