#!/usr/bin/env python3
"""Run every registered pyraftlog benchmark (every perf/bench_*.py).

Prints each workload's detail table, then one summary table (workload,
ours, reference, ratio, target, met?), and writes perf/out/results.json
(and the charts perf/out/results-*.png when matplotlib is installed).  By default the
suite takes about 7 minutes; --quick about a minute and a half.  No target is
asserted: the exit status is 0 unless a benchmark crashed.
"""
from __future__ import annotations

import glob
import importlib
import os
import sys

PERF_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, PERF_DIR)

import harness  # noqa: E402


def load_all() -> None:
    for path in sorted(glob.glob(os.path.join(PERF_DIR, "bench_*.py"))):
        importlib.import_module(os.path.splitext(os.path.basename(path))[0])


# Write paths first; memory last (it leaves ~3 GB of dirty pages for the
# kernel to drop); reopen reuses its log across runs.
ORDER = ["ready_loop", "ready_loop_pipelined", "threads", "asyncio", "pysyncobj", "steady_state",
         "reads", "reopen", "groups", "memory"]


def main() -> int:
    harness.ensure_importable()
    load_all()
    names = [n for n in ORDER if n in harness.BENCHMARKS]
    names += [n for n in harness.BENCHMARKS if n not in names]
    comps = harness.main(names, description=__doc__, json_name="results.json")
    return 1 if any(c.error for c in comps) else 0


if __name__ == "__main__":
    sys.exit(main())
