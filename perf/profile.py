#!/usr/bin/env python3
"""Where does pyraftlog spend a workload's time?  (`make profile`)

Runs one registered workload (default: ready_loop_pipelined) under py-spy
(sampling, every thread, no overhead worth mentioning) when it is installed,
else under cProfile (main thread only, slows Python code down), keeps only
the samples taken inside pyraftlog's side of the benchmark (not the
reference's), and prints the functions that take the most time, by self time
and inclusive time, with an estimate in microseconds per operation.

Raw data goes to perf/out/profile-<workload>.{raw,prof,json}.

Examples:
    .venv/bin/python perf/profile.py
    .venv/bin/python perf/profile.py --workload threads --seconds 10
    .venv/bin/python perf/profile.py --tool cprofile
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys

PERF_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, PERF_DIR)

import flamegraph  # noqa: E402
import harness  # noqa: E402
import run_all  # noqa: E402
from sides import EngineSide  # noqa: E402

WARMUP = 1.0  # seconds of warm-up per side (sampled too)


def ours_classes() -> list:
    """Names of the EngineSide subclasses: a frame of theirs marks a sample as ours."""
    seen, todo = set(), [EngineSide]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__name__ not in seen:
                seen.add(sub.__name__)
                todo.append(sub)
    return sorted(seen)


def per_op_seconds(json_path: str) -> tuple:
    """Thread-seconds per op of ours, the op name, entries/s and the thread count.

    py-spy samples every thread: with 16 threads the samples add up to 16
    thread-seconds per second, so one op costs 16 x its wall share."""
    try:
        with open(json_path) as f:
            bench = json.load(f)["benchmarks"][0]
        ours = bench["ours"]
        threads = int(bench.get("params", {}).get("threads", 1))
        return (threads / ours["ops_per_s"], ours["op"], ours["entries_per_s"], threads,
                ours["ops_per_s"] * (ours["seconds"] + WARMUP))
    except (OSError, KeyError, IndexError, TypeError, ZeroDivisionError, ValueError):
        return None, "op", None, 1, None


def aggregate_raw(path: str, marker: re.Pattern) -> tuple:
    """Self and inclusive sample counts per function from py-spy's raw output."""
    selfc, incl, total = collections.Counter(), collections.Counter(), 0
    with open(path) as f:
        for line in f:
            line = line.rstrip()
            if not line or " " not in line:
                continue
            stack, n = line.rsplit(" ", 1)
            frames = [re.sub(r":\d+\)$", ")", fr) for fr in stack.split(";")]
            if not any(marker.search(fr) for fr in frames):
                continue
            n = int(n)
            total += n
            selfc[frames[-1]] += n
            for fr in set(frames):
                incl[fr] += n
    return selfc, incl, total


def report(selfc, incl, total, per_op, op_name, top) -> None:
    def row(fn, n):
        share = n / total
        us = f"{share * per_op * 1e6:9.1f}" if per_op else "        -"
        return f"{share * 100:6.1f}%  {us}  {fn}"

    unit = f"us/{op_name}"
    print(f"\nsamples inside pyraftlog's side: {total}")
    print(f"\n-- self time (top {top})\n  share  {unit:>9}  function")
    for fn, n in selfc.most_common(top):
        print(row(fn, n))
    print(f"\n-- inclusive time (top {top}, pyraftlog/ and benchmark frames)\n  share  {unit:>9}  function")
    shown = 0
    for fn, n in incl.most_common():
        if "pyraftlog/" in fn or "bench_" in fn:
            print(row(fn, n))
            shown += 1
            if shown == top:
                break
    in_engine = sum(n for fn, n in selfc.items() if "pyraftlog/" in fn or "(<string>)" in fn)
    print(f"\nsamples whose innermost Python frame is in pyraftlog/: {in_engine / total * 100:.1f}% "
          f"(C calls, lock waits and ticket waits count for the Python function that made them; "
          f"the rest is the benchmark's loop and Entry construction)")


def with_pyspy(args, out_base: str, json_path: str) -> int:
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    raw = out_base + ".raw"
    cmd = [spy, "record", "--rate", str(args.rate), "--format", "raw", "-o", raw,
           "--", sys.executable, os.path.join(PERF_DIR, "run_all.py"), "--only", args.workload,
           "--seconds", str(args.seconds), "--runs", "1", "--warmup", str(WARMUP), "--no-plot", "-q",
           "--json", os.path.basename(json_path)]
    if args.gil:
        cmd.insert(2, "--gil")
    if args.dir:
        cmd += ["--dir", args.dir]
    print("$", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd)
    if rc or not os.path.exists(raw):
        print(f"py-spy failed (exit {rc}); try --tool cprofile", file=sys.stderr)
        return rc or 1
    svg = out_base + ".svg"
    flamegraph.write_svg(raw, svg, f"pyraftlog {args.workload}: py-spy samples (warm = pyraftlog)")
    marker = re.compile(r"\b(" + "|".join(map(re.escape, ours_classes())) + r")\.")
    selfc, incl, total = aggregate_raw(raw, marker)
    if not total:
        print("no samples in pyraftlog's side", file=sys.stderr)
        return 1
    per_op, op_name, eps, threads, sampled_ops = per_op_seconds(json_path)
    if args.gil and sampled_ops:
        # Only GIL holders were sampled: samples / rate is GIL-held time.
        per_op = total / args.rate / sampled_ops
        print(f"\nours: {eps:,.0f} entries/s; about {per_op * 1e6:.0f} us of GIL-held time per "
              f"{op_name} (samples / rate / ops, warm-up included); us/{op_name} below = share x that")
    elif eps:
        print(f"\nours: {eps:,.0f} entries/s, {threads / per_op:,.0f} {op_name}s/s; "
              f"{per_op * 1e6:.0f} us of {'thread' if threads > 1 else 'wall'} time per {op_name}"
              + (f" ({threads} threads)" if threads > 1 else "")
              + f"; us/{op_name} below = share x that")
    report(selfc, incl, total, per_op, op_name, args.top)
    print(f"\nraw stacks: {os.path.relpath(raw)}\nflame graph: {os.path.relpath(svg)}")
    return 0


def with_cprofile(args, out_base: str, json_path: str) -> int:
    # This file is named profile.py (`make profile`), which shadows the
    # standard library's `profile` that cProfile imports: look past perf/.
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != PERF_DIR]
    sys.modules.pop("profile", None)
    try:
        import cProfile
        import pstats
    finally:
        sys.path[:] = saved

    run_all.load_all()
    cfg = harness.Config(seconds=args.seconds, runs=1, warmup=WARMUP,
                         base_dir=args.dir or harness.default_base_dir(), verbose=False)
    prof = cProfile.Profile()
    prof.enable()
    try:
        out = harness.BENCHMARKS[args.workload].fn(cfg)
    finally:
        prof.disable()
        cfg.cleanup()
    comps = out if isinstance(out, list) else [out]  # some benchmarks return several
    for comp in comps:
        harness.print_comparison(comp)
    harness.save_json(comps, os.path.basename(json_path), harness.environment(cfg))
    prof.dump_stats(out_base + ".prof")
    print("\ncProfile (main thread only; both sides included; times inflated by tracing):")
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(r"pyraftlog|bench_|sides", args.top)
    return 0


def main() -> int:
    harness.ensure_importable()
    run_all.load_all()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", default="ready_loop_pipelined", choices=sorted(harness.BENCHMARKS))
    p.add_argument("--seconds", type=float, default=8.0, help="measured seconds per side (default 8)")
    p.add_argument("--tool", choices=("auto", "py-spy", "cprofile"), default="auto")
    p.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    p.add_argument("--gil", action="store_true",
                   help="py-spy: sample only the thread holding the GIL (where Python CPU goes; "
                        "hides waits)")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--dir", default=None, help="as for the benchmarks")
    args = p.parse_args()
    os.makedirs(harness.OUT_DIR, exist_ok=True)
    out_base = os.path.join(harness.OUT_DIR, f"profile-{args.workload}")
    json_path = out_base + ".json"
    tool = args.tool
    if tool == "auto":
        spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
        tool = "py-spy" if os.path.exists(spy) else "cprofile"
    return with_pyspy(args, out_base, json_path) if tool == "py-spy" else with_cprofile(args, out_base, json_path)


if __name__ == "__main__":
    sys.exit(main())
