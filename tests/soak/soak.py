#!/usr/bin/env python3
"""A long run, as a server uses the log for months (`make soak`).

Small segments (64 KiB, purge threshold 16 MiB) turn over many times a
second: 2,000 groups, 4 writer
threads each writing durable batches (8 groups x 1 entry of 200 B and a hard
state, waiting for the ticket), groups compacting behind their head except
every 50th, which lags and is rewritten forward by the purge; a reader
thread reading random groups; the engine closed and reopened every
`--reopen-every` seconds, with every acknowledged entry checked after each
reopen.

Each interval (a minute by default) prints durable writes/s, p99 write
latency, the segment table's slots, open file descriptors, RSS, segments and
disk use.  Fails (exit 1) if the last interval's throughput is below 0.85x
the first's, or the peak of file descriptors, table slots or RSS in the
second half of the run passes the first half's (beyond an allowance for
the segments coming and going with the purge, and allocator noise).

    python tests/soak/soak.py --minutes 10          # make soak
    python tests/soak/soak.py --interval 2 --minutes 0.1 --no-throughput-verdict
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time

import psutil

import pyraftlog
from pyraftlog import Entry, HardState

GROUPS = 2000
LAG_EVERY = 50      # every 50th group lags: it keeps its last LAG_KEEP entries
KEEP = 10           # entries a compacting group keeps
LAG_KEEP = 500      # (live state: ~4.6 MB of each kind, under the threshold)
PER_WRITE = 8
WRITERS = 4
DATA = b"s" * 200
OPTS = dict(segment_size=64 << 10, purge_threshold=16 << 20, sync=True)


class Soak:
    def __init__(self, path: str):
        self.path = path
        self.log = pyraftlog.open(path, **OPTS)
        self.acked = [0] * GROUPS       # last acknowledged index per group
        self.first = [1] * GROUPS       # first index per group (model)
        self.lat: list = []
        self.writes = 0
        self.mu = threading.Lock()
        self.stop = threading.Event()
        self.totals: dict = {}  # turnover counters summed over reopens

    # each writer owns the groups g with g % WRITERS == w: no two writers
    # append to one group, so the model needs no ordering across writers
    def writer(self, w: int) -> None:
        rnd = random.Random(w)
        mine = [g for g in range(GROUPS) if g % WRITERS == w]
        while not self.stop.is_set():
            b = self.log.batch()
            picked = rnd.sample(mine, PER_WRITE)
            for g in picked:
                i = self.acked[g] + 1
                b.append(g, [Entry(i, 1, DATA)])
                keep = LAG_KEEP if g % LAG_EVERY == 0 else KEEP
                if i - self.first[g] >= keep:
                    b.compact(g, i - keep)
                b.set_hard_state(g, HardState(1, 0, i))
            t0 = time.perf_counter()
            self.log.write(b).wait(timeout=60)
            dt = time.perf_counter() - t0
            for g in picked:
                i = self.acked[g] + 1
                keep = LAG_KEEP if g % LAG_EVERY == 0 else KEEP
                if i - self.first[g] >= keep:
                    self.first[g] = i - keep + 1
                self.acked[g] = i
            with self.mu:
                self.lat.append(dt)
                self.writes += 1

    def reader(self) -> None:
        rnd = random.Random(99)
        while not self.stop.is_set():
            g = rnd.randrange(GROUPS)
            last = self.log.last_index(g)
            if last:
                lo = max(self.log.first_index(g), last - 4)
                got = self.log.entries(g, lo, last + 1)
                assert all(e.data == DATA for e in got)
            time.sleep(0.0005)

    def start(self) -> list:
        self.stop.clear()
        ts = [threading.Thread(target=self.writer, args=(w,), daemon=True)
              for w in range(WRITERS)]
        ts.append(threading.Thread(target=self.reader, daemon=True))
        for t in ts:
            t.start()
        return ts

    def reopen(self, threads: list) -> float:
        self.stop.set()
        for t in threads:
            t.join()
        self.count_turnover()
        self.log.close()
        t0 = time.monotonic()
        self.log = pyraftlog.open(self.path, **OPTS)
        took = time.monotonic() - t0
        for g in range(GROUPS):  # every acknowledged entry is back
            if self.acked[g]:
                assert self.log.last_index(g) == self.acked[g], g
                assert self.log.first_index(g) == self.first[g], g
                assert self.log.entries(g, self.acked[g], self.acked[g] + 1)[0].data == DATA
        return took

    def count_turnover(self) -> None:
        s = self.log.stats()
        for k in ("rotations", "segments_recycled", "purge_rewritten_bytes"):
            self.totals[k] = self.totals.get(k, 0) + s[k]

    def take(self) -> tuple:
        with self.mu:
            lat, self.lat = self.lat, []
            n, self.writes = self.writes, 0
        return n, lat


def p99(xs: list) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.99 * len(xs)))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=60.0, help="seconds per row")
    ap.add_argument("--reopen-every", type=float, default=180.0, help="seconds")
    ap.add_argument("--no-throughput-verdict", action="store_true",
                    help="short smoke runs: check only descriptors, slots and RSS")
    ap.add_argument("--settle", type=float, default=0.0,
                    help="seconds of warm-up (disk use climbing to where the purge holds it) "
                         "left out of the descriptor, slot and RSS verdicts")
    ap.add_argument("--dir", default=None)
    a = ap.parse_args(argv)
    path = a.dir or tempfile.mkdtemp(prefix="pyraftlog-soak-")
    proc = psutil.Process()
    soak = Soak(os.path.join(path, "log"))
    rows = []
    print(f"{'t(s)':>6} {'writes/s':>9} {'p99 ms':>7} {'slots':>5} {'fds':>4} {'RSS MiB':>8} "
          f"{'segs':>5} {'disk MiB':>8} {'reopen s':>8}", flush=True)
    t_start = last_reopen = time.monotonic()
    threads = soak.start()
    end = t_start + a.minutes * 60
    try:
        while time.monotonic() < end:
            t0 = time.monotonic()
            time.sleep(min(a.interval, max(0.0, end - t0)))
            reopen = None
            if time.monotonic() - last_reopen >= a.reopen_every:
                reopen = soak.reopen(threads)
                threads = soak.start()
                last_reopen = time.monotonic()
            n, lat = soak.take()
            s = soak.log.stats()
            row = dict(t=time.monotonic() - t_start, rate=n / (time.monotonic() - t0),
                       p99=p99(lat) * 1e3, slots=s["table_slots"],
                       fds=proc.num_fds(), rss=proc.memory_info().rss / 2**20,
                       segs=s["segments"], disk=s["disk_bytes"] / 2**20)
            rows.append(row)
            print(f"{row['t']:6.0f} {row['rate']:9.0f} {row['p99']:7.2f} {row['slots']:5d} "
                  f"{row['fds']:4d} {row['rss']:8.1f} {row['segs']:5d} {row['disk']:8.1f} "
                  f"{'' if reopen is None else f'{reopen:.2f}':>8}", flush=True)
    finally:
        soak.stop.set()
        for t in threads:
            t.join()
        soak.count_turnover()
        stats = soak.totals
        soak.log.close()
        if a.dir is None:
            shutil.rmtree(path, ignore_errors=True)
    print(f"rotations {stats['rotations']}, segments recycled {stats['segments_recycled']}, "
          f"purge rewrote {stats['purge_rewritten_bytes']} bytes")
    if len(rows) < 2:
        print("FAIL: fewer than two intervals")
        return 1
    first, last = rows[0], rows[-1]
    fails = []
    if not a.no_throughput_verdict and last["rate"] < 0.85 * first["rate"]:
        fails.append(f"throughput fell to {last['rate'] / first['rate']:.2f}x the first interval's")
    # Descriptors (one per segment file) and table slots follow the segments,
    # which come and go with the purge: each half's peak is compared, with
    # room for one more doubling of the table and 15% more segments.
    settled = [r for r in rows if r["t"] >= a.settle] or rows
    half = len(settled) // 2
    for key, name, grow in (("fds", "file descriptors", lambda v: v * 1.15 + 8),
                            ("slots", "segment table slots", lambda v: max(2 * v, 64)),
                            ("rss", "RSS (MiB)", lambda v: v * 1.10 + 16)):
        early = max(r[key] for r in settled[:half])
        late = max(r[key] for r in settled[half:])
        if late > grow(early):
            fails.append(f"{name} grew: peak {early:.0f} in the first half, {late:.0f} after")
    if stats["rotations"] < 10 or stats["segments_recycled"] < 1:
        fails.append("segments did not turn over")
    print(f"last/first throughput {last['rate'] / first['rate']:.2f}x (>= 0.85x required)")
    for f in fails:
        print("FAIL:", f)
    print("PASS" if not fails else "FAILED")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
