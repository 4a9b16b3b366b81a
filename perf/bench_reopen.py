#!/usr/bin/env python3
"""Reopen: recovery time of a populated log with a warm page cache, and the
memory its index takes.

Data: ~1 GiB of segment files (``--gib``; ``--quick``: 128 MiB), 1000 groups,
256 B entries, written with ``WriteBatch.append_many`` (``sync=False``) in
rounds of 100 entries per group (groups interleave in the log); terms change
every 1000 entries of a group.  The log is built once and **kept** under the
bench directory (``<dir>/pyraftlog-perf-reopen-<MiB>MiB/``) for the next
runs; it is rebuilt when its marker is missing or does not match (another
size, another pyraftlog format).  Remove it with ``rm -rf
/var/tmp/pyraftlog-perf-reopen-*``.

reopen
    ours: ``pyraftlog.open(dir)`` (full recovery: scan every segment, verify
    every checksum, rebuild the index), timed until it returns; then
    ``close()`` (untimed).  Reference: ``cat <segment files> > /dev/null``
    (a subprocess) of the same ``*.seg`` files.  Both repeat for the run's
    seconds (at least once), warm-up first so the page cache is warm;
    entries/s = entries recovered per second of open (or of cat).
    Targets: open time <= 2x cat's (``time_ratio`` = ours' mean time / cat's),
    and ``stats()["index_bytes"] / stats()["entries"]`` <= 16 B.  Also shown:
    RSS of a fresh process that opens the log (anonymous and file-backed:
    the mapped segments count as file-backed RSS once recovery has read
    them) against the same process before opening.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Comparison, Side, Target, benchmark  # noqa: E402
from sides import ENTRY_BYTES, Skip, import_engine  # noqa: E402

GROUPS = 1000
ROUND = 100  # entries per group per write round
TERM_EVERY = 1000  # entries of a group between term changes
DEFAULT_GIB, QUICK_GIB = 1.0, 0.125
TIME_SHARE = 0.5  # of --seconds per side

harness.add_option("--gib", type=float, default=None,
                   help=f"reopen: GiB of segment files to reopen (default {DEFAULT_GIB:g}, "
                        f"--quick {QUICK_GIB:g})")


def segment_files(logdir: str) -> list:
    files = sorted(glob.glob(os.path.join(logdir, "*.seg")))
    return files or sorted(p for p in glob.glob(os.path.join(logdir, "*"))
                           if os.path.isfile(p) and not p.endswith((".free", "LOCK")))


def build(pyraftlog, logdir: str, target_bytes: int, log) -> dict:
    """Write rounds of ROUND entries per group until the log holds target_bytes."""
    blob = os.urandom(1 << 20)
    view = memoryview(blob)
    slices = [view[k * 97 % ((1 << 20) - ENTRY_BYTES):][:ENTRY_BYTES] for k in range(ROUND)]
    eng = pyraftlog.open(logdir, sync=False)
    t0 = time.perf_counter()
    rnd = 0
    try:
        while eng.stats()["bytes_written"] < target_bytes:
            first = rnd * ROUND + 1
            term = 1 + (first - 1) // TERM_EVERY
            terms = [term] * ROUND
            for g0 in range(1, GROUPS + 1, 100):
                b = pyraftlog.WriteBatch()
                for g in range(g0, min(GROUPS + 1, g0 + 100)):
                    b.append_many(g, first, terms, slices)
                eng.write(b)
            rnd += 1
        eng.sync()
        st = eng.stats()
    finally:
        eng.close()
    secs = time.perf_counter() - t0
    log(f"  built {st['entries']:,} entries ({st['bytes_written'] / 2**20:.0f} MiB) "
        f"in {secs:.1f} s")
    return {"entries": st["entries"], "groups": st["groups"], "per_group": rnd * ROUND,
            "bytes_written": st["bytes_written"], "build_seconds": round(secs, 1)}


def dataset(cfg, pyraftlog, gib: float) -> tuple:
    """(log directory, marker dict): reused when the marker matches, else rebuilt."""
    mib = round(gib * 1024)
    root = os.path.join(cfg.base_dir, f"pyraftlog-perf-reopen-{mib}MiB")
    logdir, marker_path = os.path.join(root, "log"), os.path.join(root, "READY.json")
    fmt = getattr(getattr(pyraftlog, "record", None), "FORMAT_VERSION", None)
    want = {"groups": GROUPS, "mib": mib, "entry_bytes": ENTRY_BYTES, "round": ROUND,
            "format": fmt, "version": getattr(pyraftlog, "__version__", "?")}
    try:
        with open(marker_path) as f:
            marker = json.load(f)
        if all(marker.get(k) == v for k, v in want.items()) and segment_files(logdir):
            return logdir, marker, True
    except (OSError, ValueError):
        pass
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    marker = dict(want, **build(pyraftlog, logdir, mib << 20, cfg.log))
    with open(marker_path, "w") as f:
        json.dump(marker, f)
    return logdir, marker, False


class ReopenSide(Side):
    label = "pyraftlog open()"
    op_name = "open"

    def __init__(self, pyraftlog, logdir, expect_entries):
        self.pyraftlog, self.logdir, self.expect = pyraftlog, logdir, expect_entries
        self.stats = None
        self.anon_delta = 0  # largest RssAnon growth over an open, bytes

    def run(self, seconds, rec):
        clock, deadline = time.perf_counter, time.perf_counter() + seconds
        while True:
            before = harness.proc_status()
            t0 = clock()
            log = self.pyraftlog.open(self.logdir)
            t1 = clock()
            try:
                after = harness.proc_status()
                grew = after.get("RssAnon", 0) - before.get("RssAnon", 0)
                self.anon_delta = max(self.anon_delta, grew)
                self.stats = log.stats()
            finally:
                log.close()
            if self.stats["entries"] != self.expect:
                raise RuntimeError(f"reopen found {self.stats['entries']} entries, "
                                   f"expected {self.expect}")
            rec.add(1, self.stats["entries"], 0, [t1 - t0])
            if clock() >= deadline:
                return


class CatSide(Side):
    label = "cat *.seg > /dev/null"
    op_name = "cat"

    def __init__(self, files, entries):
        self.files, self.entries = files, entries

    def run(self, seconds, rec):
        clock, deadline = time.perf_counter, time.perf_counter() + seconds
        while True:
            t0 = clock()
            subprocess.run(["cat", *self.files], stdout=subprocess.DEVNULL, check=True)
            rec.add(1, self.entries, 0, [clock() - t0])
            if clock() >= deadline:
                return


FRESH = textwrap.dedent("""
    import json, sys, time
    def st():
        out = {}
        for line in open("/proc/self/status"):
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
        return out
    import pyraftlog, numpy
    b = st()
    t0 = time.perf_counter()
    log = pyraftlog.open(sys.argv[1])
    t = time.perf_counter() - t0
    a = st()
    s = log.stats()
    log.close()
    print(json.dumps({"before": b, "after": a, "open_seconds": t,
                      "entries": s["entries"], "index_bytes": s["index_bytes"]}))
""")


def fresh_process(logdir: str) -> dict:
    """RSS of a new interpreter before and after opening the log."""
    out = subprocess.run([sys.executable, "-c", FRESH, logdir], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=harness.REPO_DIR))
    return json.loads(out.stdout.strip().splitlines()[-1])


@benchmark("reopen", "reopen ~1 GiB of log (1000 groups, 256 B entries), warm page cache",
           targets=[Target("time_ratio", "<=", 2.0, "time <= 2x cat"),
                    Target("index_bytes_per_entry", "<=", 16, "<= 16 B/entry")],
           budget=lambda cfg: 2 * cfg.seconds + 600)
def reopen(cfg):
    comp = Comparison("reopen", harness.BENCHMARKS["reopen"].title)
    try:
        pyraftlog = import_engine()
    except Skip as e:
        comp.skipped = str(e)
        return comp
    gib = cfg.options.get("gib") or (QUICK_GIB if cfg.quick else DEFAULT_GIB)
    logdir, marker, reused = dataset(cfg, pyraftlog, gib)
    files = segment_files(logdir)
    seg_bytes = sum(os.path.getsize(f) for f in files)
    comp.params.update({k: marker[k] for k in ("groups", "entries", "per_group", "mib")},
                       segment_files=len(files), segment_bytes=seg_bytes, reused=reused, dir=logdir)
    comp.notes.append(f"{'reused' if reused else 'built'} {logdir}: {len(files)} segment files, "
                      f"{seg_bytes / 2**30:.2f} GiB, {marker['entries']:,} entries "
                      f"({marker['per_group']} per group); kept for the next run")
    ours = ReopenSide(pyraftlog, logdir, marker["entries"])
    ref = CatSide(files, marker["entries"])
    scfg = dataclasses.replace(cfg, seconds=cfg.seconds * TIME_SHARE)
    harness.compare(scfg, comp, ours, ref, device=harness.block_device(logdir))
    st = ours.stats
    per_entry = st["index_bytes"] / st["entries"] if st["entries"] else None
    comp.metrics["index_bytes_per_entry"] = per_entry
    comp.metrics["time_ratio"] = (comp.ref.entries_per_s / comp.ours.entries_per_s
                                  if comp.ours.entries_per_s else None)
    fresh = fresh_process(logdir)
    b, a = fresh["before"], fresh["after"]
    comp.metrics.update(
        open_seconds_mean=comp.ours.seconds / len(comp.ours.latencies),
        cat_seconds_mean=comp.ref.seconds / len(comp.ref.latencies),
        rss_after_open=a.get("VmRSS"), rss_anon_delta=a.get("RssAnon", 0) - b.get("RssAnon", 0),
        rss_file_delta=a.get("RssFile", 0) - b.get("RssFile", 0),
        fresh_open_seconds=fresh["open_seconds"], anon_delta_in_run=ours.anon_delta)
    m = comp.metrics
    mib = 2**20
    comp.details += [
        f"   reopen: {m['open_seconds_mean'] * 1e3:.0f} ms mean per open(), "
        f"cat {m['cat_seconds_mean'] * 1e3:.0f} ms "
        f"-> time ratio {m['time_ratio']:.2f}x (target <= 2x); "
        f"{seg_bytes / mib / m['open_seconds_mean']:.0f} MiB/s of segments",
        f"   index: {st['index_bytes']:,} B for {st['entries']:,} entries = "
        f"{per_entry:.2f} B/entry "
        f"(target <= 16)",
        f"   RSS of a fresh process opening the log: {a.get('VmRSS', 0) / mib:.0f} MiB after open "
        f"(anonymous +{m['rss_anon_delta'] / mib:.0f} MiB = "
        f"{m['rss_anon_delta'] / st['entries']:.1f} B/entry, "
        f"file-backed +{m['rss_file_delta'] / mib:.0f} MiB: mapped segments); open took "
        f"{fresh['open_seconds'] * 1e3:.0f} ms there",
    ]
    comp.summary = (f"{m['open_seconds_mean'] * 1e3:.0f} ms/open, index {per_entry:.1f} B/entry",
                    f"{m['cat_seconds_mean'] * 1e3:.0f} ms (cat {seg_bytes / 2**30:.2f} GiB)")
    return comp


if __name__ == "__main__":
    harness.ensure_importable()
    harness.main(["reopen"], description=__doc__, json_name="bench_reopen.json")
