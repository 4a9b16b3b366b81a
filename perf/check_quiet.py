#!/usr/bin/env python3
"""A steady state with a lagging group and no logging configured must print
nothing on stderr (README, "Logging").

    .venv/bin/python perf/check_quiet.py --seconds 60 2>/tmp/quiet.err; wc -c < /tmp/quiet.err

The workload is bench_steady_state's in small: 1000 groups, each write
appends one 256-byte entry to 32 of them and waits for durability; every
group but group 1 compacts to its last 40 entries; 1 MiB segments and a
32 MiB purge threshold, so the log turns over and the purge rewrites the
lagging group many times a minute.  This script never touches `logging`;
what it prints (stdout) are the figures showing that purges did run."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import pyraftlog
from pyraftlog import Entry, WriteBatch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--dir", default="/var/tmp" if os.path.isdir("/var/tmp") else None)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="pyraftlog-quiet-", dir=args.dir)
    try:
        last = [0] * 1000
        writes = 0
        with pyraftlog.open(os.path.join(work, "log"), segment_size=1 << 20,
                            purge_threshold=32 << 20) as log:
            end = time.monotonic() + args.seconds
            k = 0
            while time.monotonic() < end:
                b = WriteBatch()
                for g in range(k * 32 % 1000, k * 32 % 1000 + 32):
                    g %= 1000
                    last[g] += 1
                    b.append(g, [Entry(last[g], 1, b"x" * 256)])
                    if g != 1 and last[g] > 40:
                        b.compact(g, last[g] - 40)
                log.write(b).wait()
                writes += 1
                k += 1
            s = log.stats()
        print(f"{writes} writes in {args.seconds:.0f} s; purge passes {s['purge_runs']}, "
              f"rewrote {s['purge_rewritten_bytes']} bytes; segments recycled "
              f"{s['segments_recycled']}; disk use at the end {s['disk_bytes']} bytes")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
