"""PySyncObj on pyraftlog: a 3-process cluster, a SIGKILL, a restart, a check.

Run ``python examples/pysyncobj_demo`` (``--help`` for the knobs).  The
coordinator (this process) starts one child process per node on 127.0.0.1.
Each child opens ONE ``pyraftlog.Engine`` and runs ``--groups`` PySyncObj
groups in it (one ``SyncObj`` per group, each with a replicated key-value
store), all journals sharing that engine's log.  Then:

1. every child drives writes into every group for ``--duration`` seconds
   (``--window`` commands in flight per group) and records each write that
   PySyncObj acknowledged in an append-only file;
2. after ``--kill-at`` seconds the node that leads the most groups is killed
   with SIGKILL and started again at once: it rebuilds every group from its
   pyraftlog log (PySyncObj's log compaction is off, so there is no dump
   file), then catches up with the others;
3. when the load is over, the coordinator waits until every group's state is
   identical on every node, checks that every acknowledged write is present
   with its value on every node, and prints a summary.

Exit status: 0 when every group is consistent, 1 on any inconsistency or
timeout, 2 on a usage error.  Every wait is bounded, and the children are
killed on every exit path of the coordinator (and die with it: they watch
their standard input and ask the kernel for SIGKILL when their parent dies).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from typing import Any

from .cluster import DemoError
from .coordinator import run_demo
from .node import child_main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python examples/pysyncobj_demo",
                                description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--groups", type=int, default=50,
                   help="PySyncObj groups per process (default 50)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    p.add_argument("--kill-at", type=float, default=10.0,
                   help="seconds into the load to SIGKILL a node (default 10)")
    p.add_argument("--window", type=int, default=4, help="commands in flight per group per node")
    p.add_argument("--timeout", type=float, default=60.0, help="bound of each catch-up wait (s)")
    p.add_argument("--raft-timeout", type=float, default=0.6, help="PySyncObj raftMinTimeout (s)")
    p.add_argument("--dir",
                   help="work directory (default: a new temporary one, removed afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--no-sync", action="store_true", help="open engines with sync=False")
    p.add_argument("--segment-mib", type=float, default=16,
                   help="engine segment_size in MiB (default 16; the demo writes ~10 MiB per node)")
    p.add_argument("--metrics-port", type=int, default=0, metavar="PORT",
                   help="serve node n's engine as Prometheus metrics on "
                        "http://127.0.0.1:PORT+n/metrics (needs prometheus_client: "
                        "pip install pyraftlog[metrics])")
    p.add_argument("--quiet", action="store_true", help="print the summary only")
    p.add_argument("--child", nargs=2, metavar=("CONFIG", "NODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child_main(args.child[0], int(args.child[1]))
    try:
        import pysyncobj  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        print("the demo needs pysyncobj: pip install pysyncobj", file=sys.stderr)
        return 2
    if args.nodes < 3 or args.groups < 1 or args.duration <= args.kill_at:
        p.error("need --nodes >= 3, --groups >= 1 and --kill-at < --duration")

    def on_signal(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    if args.dir:
        workdir = os.path.abspath(args.dir)
        os.makedirs(workdir, exist_ok=True)
        if os.listdir(workdir):
            p.error(f"--dir {workdir} is not empty")
    else:
        workdir = tempfile.mkdtemp(prefix="pyraftlog-demo-")
    try:
        return run_demo(args, workdir)
    except DemoError as exc:
        print(f"demo failed: {exc} (logs in {workdir})", file=sys.stderr)
        args.keep = True
        return 1
    finally:
        if args.keep or args.dir:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
