"""Common harness of the pyraftlog benchmarks.

A benchmark compares two *sides* measured in the same run, in the same
process: ``ours`` (pyraftlog) and a ``reference`` (raw syscalls, RocksDB, ...).
Every figure is printed as ours, reference and the ratio ours / reference, so
a slower or busier machine moves both columns and the ratio stays meaningful.

How a comparison is measured (:func:`compare`):

* both sides are set up, then warmed up (``--warmup`` seconds each, ours
  first so that the reference can be sized from what ours really writes);
* then ``runs`` rounds; each round runs both sides for ``seconds / runs``
  seconds, alternating which goes first (ABBA) so that slow drift of the
  machine (other engineers' tests, page-cache writeback) hits both alike;
* around each run a :class:`Meter` takes, with ``psutil``: wall time, CPU
  user/sys of this process (all threads: the C flusher, RocksDB's
  background threads, executor threads), RSS, bytes this process caused to
  be written to storage (``io_counters().write_bytes``: counted when a page
  goes from clean to dirty, by ``write``/``pwrite`` or through a shared
  mapping, so it is what ``fdatasync`` has to send), bytes written to the
  whole block device (shared with everyone on the machine: informative
  only) and the CPU the *other* processes used meanwhile (noise gauge);
* between runs each side gets an untimed ``maintain()`` (pyraftlog compacts
  every group so that the disk stays bounded).

The parts, one module each: ``registry`` (``@benchmark``, ``Target``,
``add_option``), ``config`` (budgets, work directories), ``environment``
(the machine, the file system, what a results file records), ``meter``
(``Side``, ``Meter``, one run's figures), ``results`` (``Result``,
``Comparison``), ``schedule`` (``measure``, ``compare``: warm-up and ABBA
runs) and ``cli`` (options, running the selected benchmarks, ``main``).
Printing and saving (tables, JSON, PNG) live in ``perf/report.py`` and
``perf/plots.py``.  A benchmark is one file ``perf/bench_*.py`` whose
functions register themselves with ``@benchmark``; ``perf/run_all.py``
imports every such file and runs them all, and each bench script runs its
own with :func:`main`.  Nothing here asserts on time: targets are
evaluated and printed, never raised.
"""
from __future__ import annotations

import os
import sys

PERF_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if PERF_DIR not in sys.path:  # report.py and plots.py are perf/'s own modules
    sys.path.insert(0, PERF_DIR)

from report import OUT_DIR, fmt_num, print_comparison, save_json  # noqa: E402

from .cli import config_from_args, main, parser, run_benchmarks  # noqa: E402
from .config import (DEFAULT_RUNS, DEFAULT_SECONDS, DEFAULT_WARMUP, QUICK_RUNS,  # noqa: E402
                     QUICK_SECONDS, QUICK_WARMUP, Config)
from .environment import (REPO_DIR, TMPFS_TYPES, block_device, default_base_dir,  # noqa: E402
                          ensure_importable, environment, fs_type, proc_status)
from .meter import CDF_POINTS, Meter, Recorder, RunResult, Side, _percentile, psutil  # noqa: E402
from .registry import BENCHMARKS, EXTRA_OPTIONS, Benchmark, Target, add_option, benchmark  # noqa: E402
from .results import Comparison, Result  # noqa: E402
from .schedule import compare, io_notes, measure  # noqa: E402

__all__ = [
    "PERF_DIR", "REPO_DIR", "OUT_DIR", "TMPFS_TYPES", "BENCHMARKS", "EXTRA_OPTIONS", "CDF_POINTS",
    "DEFAULT_SECONDS", "DEFAULT_RUNS", "DEFAULT_WARMUP", "QUICK_SECONDS", "QUICK_RUNS",
    "QUICK_WARMUP", "Benchmark", "Target", "Config", "Side", "Recorder", "Meter", "RunResult",
    "Result", "Comparison", "benchmark", "add_option", "measure", "compare", "io_notes",
    "environment", "ensure_importable", "proc_status", "fs_type", "default_base_dir",
    "block_device", "parser", "config_from_args", "run_benchmarks", "main", "fmt_num",
    "print_comparison", "save_json", "psutil", "_percentile",
]
