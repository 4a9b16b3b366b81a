#!/usr/bin/env python3
"""Index memory at scale: 10 million live entries across 10,000 groups.

memory
    A fresh interpreter (so earlier benchmarks' heap does not hide or inflate
    anything) opens a new log (``sync=False``, ``segment_size`` 64 MiB,
    ``purge_threshold`` 1 PiB so nothing is rewritten) and writes 10,000,000
    entries of 256 B across 10,000 groups (``--quick``: 1,000,000 across 1,000)
    with ``WriteBatch.append_many``, in rounds of 100 entries per group,
    100 groups per batch; nothing is compacted.  It reports
    ``stats()["index_bytes"] / stats()["entries"]`` (target <= 16 B per live
    entry; raft-engine's memtable spends 48) and the growth of the process's
    RSS per entry: anonymous memory (the index, and whatever else the engine
    keeps) and file-backed (pages of the mapped segments the process touched:
    page cache, reclaimable, not index).  A second fresh interpreter then
    reopens the log (the index rebuilt by recovery) and reports the same.
    The directory (~3 GB at full size) is deleted at the end; the benchmark
    is skipped with a message if the disk has less than twice that free.
    No reference: the target is absolute.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Comparison, Target, benchmark  # noqa: E402
from sides import ENTRY_BYTES, Skip, import_engine  # noqa: E402

FULL = (10_000_000, 10_000)
QUICK = (1_000_000, 1_000)
ROUND = 100  # entries per group per batch
GROUPS_PER_BATCH = 100
RECORD_BYTES = ENTRY_BYTES + 32  # for the disk-space check


def child_write(logdir: str, entries: int, groups: int) -> dict:
    import gc

    import pyraftlog

    per_group = entries // groups
    data = os.urandom(1 << 16)
    view = memoryview(data)
    payloads = [view[k * 251:k * 251 + ENTRY_BYTES] for k in range(ROUND)]
    gc.collect()
    before = harness.proc_status()
    log = pyraftlog.open(logdir, sync=False, segment_size=64 << 20, purge_threshold=1 << 50)
    t0 = time.perf_counter()
    for first in range(1, per_group + 1, ROUND):
        n = min(ROUND, per_group - first + 1)
        terms, pl = [1 + first // 1000] * n, payloads[:n]
        for g0 in range(1, groups + 1, GROUPS_PER_BATCH):
            b = pyraftlog.WriteBatch()
            for g in range(g0, min(groups + 1, g0 + GROUPS_PER_BATCH)):
                b.append_many(g, first, terms, pl)
            log.write(b)
    log.sync()
    secs = time.perf_counter() - t0
    del b
    gc.collect()
    after = harness.proc_status()
    st = log.stats()
    log.close()
    return {"before": before, "after": after, "seconds": secs, "entries": st["entries"],
            "groups": st["groups"], "index_bytes": st["index_bytes"],
            "disk_bytes": st["disk_bytes"],
            "bytes_written": st["bytes_written"]}


def child_reopen(logdir: str) -> dict:
    import gc

    import pyraftlog

    gc.collect()
    before = harness.proc_status()
    t0 = time.perf_counter()
    log = pyraftlog.open(logdir, sync=False, segment_size=64 << 20, purge_threshold=1 << 50)
    secs = time.perf_counter() - t0
    gc.collect()
    after = harness.proc_status()
    st = log.stats()
    log.close()
    return {"before": before, "after": after, "seconds": secs, "entries": st["entries"],
            "groups": st["groups"], "index_bytes": st["index_bytes"]}


def run_child(*args) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", *map(str, args)],
                         capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=harness.REPO_DIR))
    if out.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed: {out.stderr.strip()[-800:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def describe(r: dict) -> tuple:
    n = r["entries"] or 1
    d = {k: r["after"].get(k, 0) - r["before"].get(k, 0) for k in ("VmRSS", "RssAnon", "RssFile")}
    return d, n


@benchmark("memory", "index memory: 10M live entries across 10,000 groups",
           targets=[Target("index_bytes_per_entry", "<=", 16, "<= 16 B/entry")],
           budget=lambda cfg: 900)
def memory(cfg):
    comp = Comparison("memory", harness.BENCHMARKS["memory"].title)
    try:
        import_engine()
    except Skip as e:
        comp.skipped = str(e)
        return comp
    entries, groups = QUICK if cfg.quick else FULL
    comp.params.update(entries=entries, groups=groups, entry_bytes=ENTRY_BYTES)
    need = entries * RECORD_BYTES + (256 << 20)
    free = shutil.disk_usage(cfg.base_dir).free
    if free < 2 * need:
        comp.skipped = (f"{cfg.base_dir} has {free / 2**30:.1f} GiB free; "
                        f"needs {2 * need / 2**30:.1f} "
                        f"(twice the log)")
        return comp
    workdir = cfg.workdir("memory")
    logdir = os.path.join(workdir, "log")
    try:
        cfg.log(f"  writing {entries:,} entries across {groups:,} groups in a fresh process "
                f"({free / 2**30:.0f} GiB free on {cfg.base_dir})")
        w = run_child("write", logdir, entries, groups)
        cfg.log(f"  wrote in {w['seconds']:.1f} s ({w['entries'] / w['seconds']:,.0f} entries/s); "
                f"reopening in a fresh process")
        r = run_child("reopen", logdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    mib = 2**20
    for name, res in (("written", w), ("reopened", r)):
        d, n = describe(res)
        comp.metrics[f"{name}_index_bytes_per_entry"] = res["index_bytes"] / n
        comp.metrics[f"{name}_rss_anon_per_entry"] = d["RssAnon"] / n
        comp.metrics[f"{name}_rss_per_entry"] = d["VmRSS"] / n
        ib, rss, anon = res["index_bytes"], d["VmRSS"], d["RssAnon"]
        comp.details.append(
            f"   {name:<9}: {res['entries']:,} entries, {res['groups']:,} groups; "
            f"index {ib / mib:.1f} MiB = {ib / n:.2f} B/entry; "
            f"RSS +{rss / mib:.0f} MiB = {rss / n:.1f} B/entry "
            f"(anonymous +{anon / mib:.0f} MiB = {anon / n:.1f} B/entry, file-backed "
            f"+{d['RssFile'] / mib:.0f} MiB: touched segment pages)")
    comp.metrics["index_bytes_per_entry"] = max(comp.metrics["written_index_bytes_per_entry"],
                                                comp.metrics["reopened_index_bytes_per_entry"])
    gib = 2**30
    comp.details.append(f"   write: {w['seconds']:.1f} s with append_many, sync=False "
                        f"({w['entries'] / w['seconds']:,.0f} entries/s, "
                        f"{w['bytes_written'] / gib:.2f} GiB); reopen: {r['seconds']:.1f} s; "
                        f"disk {w['disk_bytes'] / gib:.2f} GiB (deleted)")
    m = comp.metrics
    comp.summary = (f"index {m['index_bytes_per_entry']:.1f} B/entry (RSS anon "
                    f"{m['written_rss_anon_per_entry']:.1f}, "
                    f"reopen {m['reopened_rss_anon_per_entry']:.1f})",
                    f"absolute ({entries / 1e6:g}M entries, {groups:,} groups)")
    comp.params["wrote_seconds"] = round(w["seconds"], 1)
    return comp


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind = sys.argv[2]
        res = (child_write(sys.argv[3], int(sys.argv[4]), int(sys.argv[5])) if kind == "write"
               else child_reopen(sys.argv[3]))
        print(json.dumps(res))
        sys.exit(0)
    harness.ensure_importable()
    harness.main(["memory"], description=__doc__, json_name="bench_memory.json")
