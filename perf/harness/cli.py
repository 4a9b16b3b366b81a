"""The command line every benchmark script and run_all.py share: options,
the run of the selected benchmarks, printing and saving."""
from __future__ import annotations

import argparse
import faulthandler
import os
import shutil
import sys
import time
import traceback
from typing import Optional, Sequence

from .config import (DEFAULT_RUNS, DEFAULT_SECONDS, DEFAULT_WARMUP, QUICK_RUNS, QUICK_SECONDS,
                     QUICK_WARMUP, Config)
import plots
from report import noise_line, print_comparison, save_json, summary_table

from .environment import TMPFS_TYPES, default_base_dir, environment, fs_type
from .meter import psutil
from .registry import BENCHMARKS, EXTRA_OPTIONS
from .results import Comparison


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=None,
                   help=f"measured seconds per side per workload (default {DEFAULT_SECONDS:g}, "
                        f"quick {QUICK_SECONDS:g})")
    p.add_argument("--runs", type=int, default=None,
                   help=f"measured runs per side, alternating with the reference (default "
                        f"{DEFAULT_RUNS}, quick {QUICK_RUNS})")
    p.add_argument("--warmup", type=float, default=None,
                   help=f"warm-up seconds per side (default {DEFAULT_WARMUP:g}, quick {QUICK_WARMUP:g})")
    p.add_argument("--dir", default=None,
                   help="directory for the logs and reference files (default: a temp dir under "
                        "/var/tmp or /tmp, whichever is a real disk, not tmpfs)")
    p.add_argument("--quick", action="store_true", help="short runs (the whole suite in well under a minute)")
    p.add_argument("--only", action="append", default=None, metavar="NAME",
                   help="run only this benchmark (repeatable)")
    p.add_argument("--list", action="store_true", help="list the registered benchmarks and exit")
    p.add_argument("--keep", action="store_true", help="keep the work directories")
    p.add_argument("--no-plot", action="store_true", help="do not write a PNG even if matplotlib is installed")
    p.add_argument("--json", default=None, help="file name under perf/out/ for the JSON results")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-run progress lines")
    for flags, kwargs in EXTRA_OPTIONS:
        p.add_argument(*flags, **kwargs)
    return p


def config_from_args(args) -> Config:
    seconds = args.seconds if args.seconds is not None else (QUICK_SECONDS if args.quick else DEFAULT_SECONDS)
    runs = args.runs if args.runs is not None else (QUICK_RUNS if args.quick else DEFAULT_RUNS)
    warmup = args.warmup if args.warmup is not None else (QUICK_WARMUP if args.quick else DEFAULT_WARMUP)
    base = args.dir or default_base_dir()
    os.makedirs(base, exist_ok=True)
    options = {}
    for flags, kwargs in EXTRA_OPTIONS:
        dest = kwargs.get("dest") or flags[-1].lstrip("-").replace("-", "_")
        options[dest] = getattr(args, dest, kwargs.get("default"))
    return Config(seconds=max(seconds, 0.05), runs=max(1, runs), warmup=max(0.0, warmup),
                  base_dir=base, quick=args.quick, keep=args.keep, verbose=not args.quiet,
                  options=options)


def run_benchmarks(cfg: Config, names: Sequence[str]) -> list:
    comps = []
    for name in names:
        b = BENCHMARKS[name]
        cfg.log(f"\n>> {name}: {b.title}")
        # Watchdog: a hung ticket (engine bug) must not hang `make perf`.
        budget = b.budget(cfg) if b.budget else 2 * (cfg.seconds + 2 * cfg.warmup) + 180
        faulthandler.dump_traceback_later(budget, exit=True)
        t0 = time.perf_counter()
        try:
            out = b.fn(cfg)
        except Exception as e:  # noqa: BLE001 - one failing workload must not hide the others
            out = Comparison(name, b.title, error=f"{type(e).__name__}: {e}")
            out.notes.append(traceback.format_exc().strip().splitlines()[-3].strip())
            if cfg.verbose:
                traceback.print_exc()
        finally:
            faulthandler.cancel_dump_traceback_later()
            cfg.cleanup()
        wall = round(time.perf_counter() - t0, 2)
        for comp in (out if isinstance(out, list) else [out]):
            if comp.name == name:
                comp.targets = comp.targets or b.targets
            comp.params.setdefault("wall_seconds", wall)
            print_comparison(comp)
            comps.append(comp)
    return comps


def main(names: Optional[Sequence[str]] = None, description: str = "", json_name: str = "results.json",
         argv: Optional[Sequence[str]] = None) -> list:
    """Parse the common options, run ``names`` (default: all registered), print, save."""
    args = parser(description).parse_args(argv)
    names = list(names) if names is not None else list(BENCHMARKS)
    if args.list:
        for n in names:
            print(f"{n:<22} {BENCHMARKS[n].title}")
        return []
    if args.only:
        unknown = [n for n in args.only if n not in BENCHMARKS]
        if unknown:
            raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
        names = [n for n in names if n in args.only]
    if psutil is None:
        print("warning: psutil is not installed: no CPU, RSS or I/O figures", file=sys.stderr)
    cfg = config_from_args(args)
    kind = fs_type(cfg.base_dir)
    free = shutil.disk_usage(cfg.base_dir).free
    print(f"pyraftlog perf: dir {cfg.base_dir} ({kind}, {free / 2**30:.0f} GiB free), "
          f"{cfg.runs} x {cfg.run_seconds:.2g} s per side, warm-up {cfg.warmup:g} s, "
          f"{os.cpu_count()} CPUs, load {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if kind in TMPFS_TYPES:
        print(f"warning: {cfg.base_dir} is {kind}: fdatasync costs nothing there; the figures "
              f"do not describe a disk", file=sys.stderr)
    env = environment(cfg)
    comps = run_benchmarks(cfg, names)
    print("\n" + summary_table(comps))
    noise = noise_line(comps)
    if noise:
        print(noise)
    path = save_json(comps, args.json or json_name, env)
    print(f"\nresults: {os.path.relpath(path)}")
    if not args.no_plot:
        for png in plots.render_file(path):
            print(f"plot:    {os.path.relpath(png)}")
    return comps
