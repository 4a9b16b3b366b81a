"""Shared helpers of the tests: engine state and writes, segment files, bounded
waits, and child Python processes that see the repository as the tests do."""
import os
import subprocess
import sys
import threading
import time

import pyraftlog
from pyraftlog import Entry, WriteBatch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAIT = 20  # seconds: the bound on a call that must not hang

# A child Python started as this one was.  `make test-asan` runs the tests
# with -P: the working directory (the repository, with its unsanitized build)
# does not come first on the import path, the sanitized build on PYTHONPATH
# does; a child started without -P would import the unsanitized one.
PYTHON = (sys.executable, "-P") if getattr(sys.flags, "safe_path", False) else (sys.executable,)


def child_env(**extra):
    """os.environ for a child Python, plus `extra`: the repository (the tests
    package; pyraftlog if not installed) and examples/ (the PySyncObj demo's
    pieces) are on PYTHONPATH, after whatever this run's PYTHONPATH holds
    (the sanitized build under `make test-asan`)."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    for extra_path in (ROOT, os.path.join(ROOT, "examples")):
        if extra_path not in paths:
            paths.append(extra_path)
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths), **extra)


def preloaded(lib):
    """An LD_PRELOAD value adding `lib` after what this run preloads (the
    sanitizer runtime under `make test-asan` must stay first)."""
    return " ".join(x for x in (os.environ.get("LD_PRELOAD"), lib) if x)


def build_preload(source, dest_dir):
    """Compiles the C file `source` (an LD_PRELOAD library) into dest_dir;
    returns the .so path."""
    so = os.path.join(str(dest_dir), os.path.splitext(os.path.basename(source))[0] + ".so")
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror", "-o", so, source,
                    "-ldl", "-lpthread"], check=True, capture_output=True, text=True)
    return so


def python_module(module, *args):
    """argv running `module` (e.g. "tests.crash.workload") as a child Python;
    start it with env=child_env()."""
    return [*PYTHON, "-m", module, *map(str, args)]


def run_child(code, *args, timeout=60):
    """Run Python `code` in a child with the repository importable."""
    return subprocess.run([*PYTHON, "-c", code, *map(str, args)], env=child_env(),
                          capture_output=True, timeout=timeout)


def run_cli(*args, timeout=60):
    """`python -m pyraftlog ARGS` from the repository -> CompletedProcess
    (text); it must not end in a traceback."""
    p = subprocess.run([*PYTHON, "-m", "pyraftlog", *map(str, args)], cwd=ROOT, env=child_env(),
                       capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in p.stderr, p.stderr
    return p


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


def flip_byte(path, offset, mask=0xFF):
    """XOR the byte at `offset` of the file at `path` with `mask`."""
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ mask]))


def wait_until(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def wait_for(pred, timeout, what):
    """pred()'s first true value; AssertionError naming `what` if none came
    in `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = pred()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def bounded(fn, what="call", timeout=WAIT):
    """fn() in a thread, its value or its exception; fails instead of hanging
    (a FIFO opened blocking, a sync that never returns)."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{what} hung for {timeout}s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


__all__ = ["pyraftlog", "ROOT", "WAIT", "PYTHON", "child_env", "preloaded", "build_preload",
           "python_module", "run_child", "run_cli", "state", "append", "seg_files", "free_files",
           "flip_byte", "wait_until", "wait_for", "bounded"]
