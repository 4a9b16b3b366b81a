#!/usr/bin/env python3
"""Steady state with compaction and one lagging group: disk use stays bounded.

steady_state
    1000 groups; a Ready loop (1 thread, ``sync=True``) where every write
    appends 1 entry of 256 B to each of 32 groups (a window sliding over the
    1000) and waits for durability.  Every group but one compacts in the same
    batch, keeping its last 40 entries; group 1 never compacts, so it pins the
    oldest segment until the purge rewrites it at the head.  (Why 40, not 50:
    a write here takes ~10.8 KB of log, so 50 entries per group span
    50 x 1000/32 writes = ~16.1 MiB of log, just past the purge's horizon of
    half a threshold behind the head: the purge then also rewrites compacting
    groups, measured 6.4% of the bytes written instead of 0.3%.  40 entries
    span ~13 MiB.)  Small
    ``segment_size`` (1 MiB) and ``purge_threshold`` (32 MiB) make the log
    turn over many times a minute.  Runs ``3 x --seconds`` (45 s; ``--quick``:
    8 s) from an empty log.

    Shown: disk use over time (``stats()["disk_bytes"]`` every 0.5 s, plus the
    space the directory really takes, as a sparkline and a table) and its max;
    the verdict is the directory's real size (allocated blocks of every file,
    sampled every 20 ms by its own thread and with every 0.5 s sample): the
    counter misses files being created or recycled, so it only adds to it;
    segments created / reused / recycled; bytes the purge rewrote; write
    latency p99 of writes that overlapped a purge call (the background
    purger's ``purge()``, timed by wrapping it; its runs are what
    ``stats()["purge_runs"]`` counts) against writes that did not.  The disk
    maximum is also tracked after every write with the engine's internal
    disk counter (the number ``stats()["disk_bytes"]`` reports; ``stats()``
    itself costs ~2 ms with 1000 groups, too much to call per write).

    No reference: the targets are absolute checks from the same run —
    max disk use (the directory) <= purge_threshold + 2 segments, and p99 of writes during a
    purge <= 2x p99 of the other writes.  After the run the lagging group is
    read back whole and the log reopened, to check that nothing was lost.
"""
from __future__ import annotations

import bisect
import logging
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from bench_ready_loop import windows  # noqa: E402
from harness import Comparison, Target, benchmark  # noqa: E402
from report import fmt_rate, table  # noqa: E402
from sides import ENTRY_BYTES, TERM, EngineSide, Skip, payload  # noqa: E402

GROUPS = 1000
PER_WRITE = 32
KEEP = 40  # entries every compacting group keeps (see the docstring)
LAGGING = 1  # the group that never compacts
SEGMENT = 1 << 20
THRESHOLD = 32 << 20
LIMIT = THRESHOLD + 2 * SEGMENT
SAMPLE_EVERY = 0.5
DIR_EVERY = 0.02
QUICK_SECONDS = 8.0
SPARK = "▁▂▃▄▅▆▇█"


def dir_bytes(path: str) -> int:
    """Space the files of ``path`` take on disk (allocated blocks)."""
    total = 0
    try:
        with os.scandir(path) as it:
            for e in it:
                if e.is_file(follow_symlinks=False):
                    total += e.stat(follow_symlinks=False).st_blocks * 512
    except OSError:
        pass
    return total


class PurgeClock:
    """Wraps the engine's purger so every purge call is timed: (start, end, bytes)."""

    def __init__(self, log):
        self.calls = []
        self.installed = False
        purger = getattr(log, "_purger", None)
        if purger is None or not hasattr(purger, "purge"):
            return
        inner = purger.purge
        calls, clock = self.calls, time.perf_counter

        def timed(*a, **kw):
            t0 = clock()
            n = 0
            try:
                n = inner(*a, **kw)
                return n
            finally:
                calls.append((t0, clock(), n or 0))

        purger.purge = timed
        self.installed = True


class CountingHandler(logging.Handler):
    """Counts the engine's warnings (one per purge that rewrote) instead of printing them."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0
        self.last = ""

    def emit(self, record):
        self.count += 1
        self.last = record.getMessage()


class SteadySide(EngineSide):
    label = "pyraftlog steady state"
    op_name = "write"

    def __init__(self, workdir):
        super().__init__(workdir, GROUPS, segment_size=SEGMENT, purge_threshold=THRESHOLD)
        self.windows = windows(self.groups, PER_WRITE)
        self.data = payload()
        self.samples = []  # (t, stats subset, dir bytes)
        self.writes = []  # (start, end) of every write
        self.max_disk_fine = 0
        self.max_dir_fine = 0  # the directory's size, sampled every DIR_EVERY s

    def setup(self):
        super().setup()
        self.purges = PurgeClock(self.log)
        self.logdir = os.path.join(self.workdir, "log")

    def _sample(self, t0):
        s = self.stats()
        keys = ("disk_bytes", "live_bytes", "segments", "free_segments", "purge_runs",
                "purge_rewritten_bytes", "segments_created", "segments_reused", "segments_recycled",
                "segments_deleted", "bytes_written", "writes", "syncs", "prepare_stalls",
                "rotations")
        self.samples.append((time.perf_counter() - t0, {k: s.get(k) for k in keys},
                             dir_bytes(self.logdir)))

    def _sampler(self, stop, t0):
        while not stop.wait(SAMPLE_EVERY):
            self._sample(t0)

    def _dir_sampler(self, stop):
        while not stop.wait(DIR_EVERY):
            self.max_dir_fine = max(self.max_dir_fine, dir_bytes(self.logdir))

    def run(self, seconds, rec):
        Entry, WriteBatch, log = self.pyraftlog.Entry, self.pyraftlog.WriteBatch, self.log
        nxt, data, wins = self.next_index, self.data, self.windows
        # the cheap internal counter behind stats()["disk_bytes"]
        disk = getattr(getattr(log, "_store", None), "disk_bytes", None)
        clock, times, lat = time.perf_counter, self.writes, []
        max_fine, w = self.max_disk_fine, 0
        stop = threading.Event()
        t0 = clock()
        self.t0 = t0  # the time axis of samples and of the timeline chart
        self._sample(t0)
        sampler = threading.Thread(target=self._sampler, args=(stop, t0), daemon=True)
        sampler.start()
        dir_sampler = threading.Thread(target=self._dir_sampler, args=(stop,), daemon=True)
        dir_sampler.start()
        now = clock()
        deadline = now + seconds
        try:
            while now < deadline:
                b = WriteBatch()
                for g in wins[w]:
                    i = nxt[g]
                    nxt[g] = i + 1
                    b.append(g, [Entry(i, TERM, data)])
                    if i > KEEP and g != LAGGING:
                        b.compact(g, i - KEEP)
                w = (w + 1) % len(wins)
                log.write(b).wait()
                end = clock()
                lat.append(end - now)
                times.append((now, end))
                if disk is not None:
                    d = disk()
                    if d > max_fine:
                        max_fine = d
                now = end
        finally:
            stop.set()
            sampler.join()
            dir_sampler.join()
            self._sample(t0)
        self.max_disk_fine = max_fine
        ops = len(lat)
        rec.add(ops, ops * PER_WRITE, ops * PER_WRITE * ENTRY_BYTES, lat)


def sparkline(values, lo=0.0, hi=None) -> str:
    hi = hi if hi is not None else max(values, default=1)
    span = max(hi - lo, 1e-9)
    top = len(SPARK) - 1
    return "".join(SPARK[min(top, max(0, int((v - lo) / span * len(SPARK))))] for v in values)


def percentile_ms(values):
    if not values:
        return None
    v = sorted(values)
    return harness._percentile(v, 0.99) * 1e3


def classify(writes, lats, calls):
    """Split write latencies: overlapping a purge call that rewrote, one that rewrote nothing, none.

    Purge calls never overlap each other (one at a time), so sorted by start
    they are sorted by end too: the first call ending at or after a write's
    start overlaps the write iff it starts before the write ends."""
    calls = sorted(calls)
    ends = [b for _, b, _ in calls]
    out = {"rewrite": [], "noop": [], "none": []}
    for (s, e), lat in zip(writes, lats):
        k = bisect.bisect_left(ends, s)
        hit = None
        while k < len(calls) and calls[k][0] <= e:  # every call overlapping [s, e]
            hit = "rewrite" if calls[k][2] > 0 else (hit or "noop")
            k += 1
        out[hit or "none"].append(lat)
    return out


def verify(side, comp):
    """The lagging group is whole after the purges, and survives a reopen."""
    log, lg = side.log, LAGGING
    last = side.next_index[lg] - 1
    problems = []
    if log.first_index(lg) != 1 or log.last_index(lg) != last:
        problems.append(f"group {lg}: first {log.first_index(lg)} last {log.last_index(lg)}, "
                        f"expected 1..{last}")
    else:
        es = log.entries(lg, 1, last + 1)
        bad = [e.index for k, e in enumerate(es) if e.index != k + 1 or e.data != side.data]
        if bad:
            problems.append(f"group {lg}: {len(bad)} entries differ (first at {bad[0]})")
    other = side.groups[-1]
    other_last = side.next_index[other] - 1
    want_first = other_last - KEEP + 1 if other_last > KEEP else 1
    expect = {g: (log.first_index(g), log.last_index(g)) for g in (lg, other)}
    log.close()
    side.log = side.pyraftlog.open(side.logdir, segment_size=SEGMENT, purge_threshold=THRESHOLD)
    got = {g: (side.log.first_index(g), side.log.last_index(g)) for g in (lg, other)}
    if got != expect:
        problems.append(f"after reopen: {got}, before: {expect}")
    if expect[other][0] != want_first:
        problems.append(f"group {other}: first index {expect[other][0]}, expected {want_first}")
    if problems:
        comp.notes.append("CHECK FAILED: " + "; ".join(problems))
    else:
        comp.notes.append(f"checked: lagging group {lg} holds all {last} entries, intact after "
                          f"{side.purges and len(side.purges.calls)} purge calls and a reopen")


@benchmark("steady_state",
           "steady state: 1000 groups, 32 x 1 x 256 B per write (sync), all but one compacting; "
           "1 MiB segments, 32 MiB purge threshold",
           targets=[Target("max_disk_mib", "<=", LIMIT / 2**20, "disk <= thr+2 seg"),
                    Target("p99_purge_ratio", "<=", 2.0, "p99 purge <= 2x")],
           budget=lambda cfg: 3 * cfg.seconds + 180)
def steady_state(cfg):
    comp = Comparison("steady_state", harness.BENCHMARKS["steady_state"].title,
                      params={"groups": GROUPS, "groups_per_write": PER_WRITE, "keep": KEEP,
                              "segment_size": SEGMENT, "purge_threshold": THRESHOLD,
                              "entry_bytes": ENTRY_BYTES})
    workdir = cfg.workdir("steady")
    try:
        side = SteadySide(workdir)
    except Skip as e:
        comp.skipped = str(e)
        return comp
    seconds = QUICK_SECONDS if cfg.quick else 3 * cfg.seconds
    comp.params["seconds"] = seconds
    pl_log = logging.getLogger("pyraftlog")
    counter = CountingHandler()
    pl_log.addHandler(counter)
    pl_log.propagate, old_propagate = False, pl_log.propagate
    side.setup()
    try:
        cfg.log(f"  running {seconds:g} s from an empty log")
        comp.ours = harness.measure(side, seconds, harness.block_device(workdir))
        stats = side.stats()
        verify(side, comp)
    finally:
        pl_log.removeHandler(counter)
        pl_log.propagate = old_propagate
        side.close()
    summarize(comp, side, stats, counter)
    return comp


def _f(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def timeline(side, latencies, calls, interval=0.25) -> dict:
    """Disk use and write latency over time, for perf/plots.py."""
    mib = 2**20
    t0 = getattr(side, "t0", None)
    out = {"t": [round(t, 3) for t, _, _ in side.samples],
           "disk_mib": [(s["disk_bytes"] or 0) / mib for _, s, _ in side.samples],
           "dir_mib": [d / mib for _, _, d in side.samples],
           "live_mib": [(s["live_bytes"] or 0) / mib for _, s, _ in side.samples],
           "limit_mib": LIMIT / mib, "write_t": [], "write_p50_ms": [], "write_max_ms": [],
           "purges": []}
    if t0 is None:
        return out
    buckets: dict = {}
    for (start, _end), lat in zip(side.writes, latencies):
        buckets.setdefault(int((start - t0) / interval), []).append(lat * 1e3)
    for k in sorted(buckets):
        v = sorted(buckets[k])
        out["write_t"].append(round((k + 0.5) * interval, 3))
        out["write_p50_ms"].append(v[len(v) // 2])
        out["write_max_ms"].append(v[-1])
    out["purges"] = [(round(a - t0, 3), round(b - t0, 3)) for a, b, n in calls if n][:2000]
    return out


def summarize(comp, side, stats, counter):
    mib = 2**20
    samples = side.samples
    s0, s1 = samples[0][1], samples[-1][1]
    disk = [s["disk_bytes"] or 0 for _, s, _ in samples]
    real = [d for _, _, d in samples]
    max_sampled, max_real = max(disk), max(max(real), side.max_dir_fine)
    max_counter = max(max_sampled, side.max_disk_fine)
    # the verdict: what the directory really took (the counter can only add to it)
    max_disk = max(max_real, max_counter)
    m = comp.metrics
    m.update(max_disk_mib=max_disk / mib, max_disk_sampled_mib=max_sampled / mib,
             max_dir_mib=max_real / mib, max_disk_counter_mib=max_counter / mib)

    def delta(k):
        a, b = s0.get(k), s1.get(k)
        return None if a is None or b is None else b - a

    for k in ("segments_created", "segments_reused", "segments_recycled", "segments_deleted",
              "purge_runs", "purge_rewritten_bytes", "bytes_written", "prepare_stalls"):
        m[k] = delta(k)
    created, reused = m["segments_created"] or 0, m["segments_reused"] or 0
    rewritten, written = m["purge_rewritten_bytes"] or 0, m["bytes_written"] or 0

    calls = side.purges.calls if side.purges.installed else []
    groups = classify(side.writes, comp.ours.latencies, calls)  # one run: in write order
    during, none = groups["rewrite"] + groups["noop"], groups["none"]
    p_during, p_none = percentile_ms(during), percentile_ms(none)
    m.update(p99_during_purge_ms=p_during, p99_without_purge_ms=p_none,
             p99_during_rewrite_ms=percentile_ms(groups["rewrite"]),
             p99_during_noop_purge_ms=percentile_ms(groups["noop"]),
             p99_purge_ratio=(p_during / p_none) if p_during and p_none else None,
             writes_during_purge=len(during), writes_without_purge=len(none))
    purge_secs = sum(b - a for a, b, _ in calls)
    durs = sorted((b - a) * 1e3 for a, b, n in calls if n)
    m.update(purge_call_ms_mean=sum(durs) / len(durs) if durs else None,
             purge_call_ms_max=durs[-1] if durs else None)

    # the time series: sparkline of every sample, a table of at most ~16 rows (max per bucket)
    hi = max(max_disk, LIMIT)
    every = f"every {SAMPLE_EVERY:g} s"
    lines = [f"   disk_bytes {every} (scale 0..{hi / mib:.0f} MiB): {sparkline(disk, 0, hi)}",
             f"   dir on disk  {every} (same scale):     {sparkline(real, 0, hi)}"]
    step = max(1, -(-len(samples) // 16))
    rows = []
    for k in range(0, len(samples), step):
        chunk = samples[k:k + step]
        t, s, _ = chunk[-1]
        rows.append([f"{t:.1f}", f"{max(c[1]['disk_bytes'] or 0 for c in chunk) / mib:.1f}",
                     f"{max(c[2] for c in chunk) / mib:.1f}", f"{(s['live_bytes'] or 0) / mib:.1f}",
                     str(s["segments"]), str(s["free_segments"]), str(s["segments_created"]),
                     str(s["segments_reused"]), str(s["purge_runs"]),
                     f"{(s['purge_rewritten_bytes'] or 0) / mib:.2f}"])
    tab = table(rows, ["t (s)", "disk MiB (max)", "dir MiB (max)", "live MiB", "segments", "free",
                       "created", "reused", "purge runs", "rewritten MiB"], right=range(10))
    lines += ["   " + ln for ln in tab.splitlines()]
    lines.append(f"   max disk use {max_disk / mib:.1f} MiB (directory, every {DIR_EVERY:g} s: "
                 f"{max_real / mib:.1f}; disk_bytes after every write: "
                 f"{side.max_disk_fine / mib:.1f}, 0.5 s samples: {max_sampled / mib:.1f}) vs "
                 f"limit purge_threshold + 2 segments = {LIMIT / mib:.0f} MiB")
    lines.append(f"   segments: created {m['segments_created']}, reused {m['segments_reused']}, "
                 f"recycled {m['segments_recycled']}, deleted {m['segments_deleted']} "
                 f"(reused / (created + reused) = {reused / max(1, created + reused):.0%})")
    share = purge_secs / max(comp.ours.seconds, 1e-9)
    lines.append(f"   purge: {m['purge_runs']} runs ({len(calls)} timed, {len(durs)} rewrote, "
                 f"{purge_secs:.2f} s in purge = {share:.0%} of the run), rewrote "
                 f"{rewritten / mib:.2f} MiB = {rewritten / max(written, 1):.1%} of the "
                 f"{written / mib:.0f} MiB written; {counter.count} purge warnings logged")
    if durs:
        mean = sum(durs) / len(durs)
        lines.append(f"   purge calls that rewrote: {len(durs)}, {_f(mean)} ms mean, "
                     f"{_f(durs[len(durs) // 2])} ms median, {_f(durs[-1])} ms max (wall time: a large group "
                     f"is staged in paced batches; the purger holds the engine lock a step at a "
                     f"time)")

    def mx(v):
        return _f(max(v) * 1e3 if v else None)

    lines.append(f"   write latency p99: during a purge call {_f(p_during)} ms "
                 f"({len(during)} writes: "
                 f"rewriting {_f(m['p99_during_rewrite_ms'])} ms / {len(groups['rewrite'])}, "
                 f"no-op {_f(m['p99_during_noop_purge_ms'])} ms / {len(groups['noop'])}), "
                 f"without {_f(p_none)} ms ({len(none)} writes) -> ratio "
                 f"{_f(m['p99_purge_ratio'])}x (target <= 2x); max {mx(during)} ms during, "
                 f"{mx(none)} ms without; prepare stalls {m['prepare_stalls']}")
    if not side.purges.installed:
        lines.append("   (the engine has no _purger.purge to time: latencies not split)")
    comp.details.extend(lines)
    comp.series["timeline"] = timeline(side, comp.ours.latencies, calls)
    comp.summary = (f"{fmt_rate(comp.ours.entries_per_s)}, disk max {max_disk / mib:.1f} MiB, "
                    f"p99 purge {_f(p_during)} ms",
                    f"absolute: {LIMIT / mib:.0f} MiB; p99 no purge {_f(p_none)} ms")


if __name__ == "__main__":
    harness.ensure_importable()
    harness.main(["steady_state"], description=__doc__, json_name="bench_steady_state.json")
