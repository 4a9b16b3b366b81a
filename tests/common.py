"""Shared helpers for the engine-internals tests (ring, purge, recovery)."""
import os
import subprocess
import sys
import time

import pyraftlog
from pyraftlog import Entry, WriteBatch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def state(log):
    """Every group's full readable state, for equality checks across reopen."""
    out = {}
    for g in log.groups():
        first, last = log.first_index(g), log.last_index(g)
        out[g] = (first, last, log.term(g, first - 1), log.entries(g, first, last + 1),
                  log.initial_state(g), log.snapshot(g))
    return out


def append(log, group, start, n, size=100, term=1, compact_to=None):
    b = WriteBatch()
    b.append(group, [Entry(i, term, bytes([i % 251]) * size) for i in range(start, start + n)])
    if compact_to:
        b.compact(group, compact_to)
    return log.write(b)


def seg_files(path):
    return sorted(n for n in os.listdir(path) if n.endswith(".seg"))


def free_files(path):
    return sorted(n for n in os.listdir(path) if n.endswith(".free"))


def wait_until(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def run_child(code, *args, timeout=60):
    """Run Python `code` in a child with the repository importable."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env,
                          capture_output=True, timeout=timeout)


__all__ = ["pyraftlog", "state", "append", "seg_files", "free_files", "wait_until", "run_child"]
