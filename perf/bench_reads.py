#!/usr/bin/env python3
"""Reads: entries, term and terms of random groups of a populated log.

Data (loaded untimed, the same in every side): 1000 groups x 500 entries of
256 B (``--quick``: 200), terms changing every 97 entries, written to the log
with ``WriteBatch.append_many`` in rounds of 25 entries per group (groups
interleave in the log as Ready loops make them).  Queries are a fixed random
sequence of (group, lo), the same for every side; the timed loop only reads.

reads
    ``log.entries(g, lo, lo + 100)`` -> 100 ``Entry``.  Reference: building the
    same ``Entry`` list in pure Python from one in-memory ``bytes`` holding all
    the data (and a Python list of terms per group).  Target: >= 1x entries/s.
    Peers (same run, extra rows): SQLite (WAL), LMDB, RocksDB (``rocksdict``)
    and a hand-written append file read through ``mmap``, each building the
    same ``Entry`` list (see ``peers.py``).
reads_term
    ``log.term(g, i)`` for a random entry.  Reference: ``terms[g][i]`` from
    Python lists.  No target (shown for scale).
reads_terms
    ``log.terms(g, lo, lo + 100)`` (a numpy array).  Reference: the slice
    ``terms[g][lo:lo + 100]`` of a Python list.  Peer: ``[log.term(g, i) for
    i in range(lo, lo + 100)]``, what a caller without ``terms`` does.  No
    target.

Every side's answer is checked against the reference on a sample of queries
before timing (a mismatch is printed as a note and is an engine bug).
Reads are CPU-bound: per-call latency is not kept (reading the clock would
cost as much as a ``term`` call), so the p99 columns are empty.
"""
from __future__ import annotations

import dataclasses
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Comparison, Target, benchmark  # noqa: E402
from peers import Dataset, PythonBlobRead, ReadSide, read_peers  # noqa: E402
from sides import Skip, import_engine  # noqa: E402

GROUPS = 1000
PER_GROUP, QUICK_PER_GROUP = 500, 200
SPAN = 100  # entries per entries()/terms() call
QUERIES = 50_000
TIME_SHARE = 1 / 3  # of --seconds (and warm-up) per side: reads are steady, three workloads
PEER_SHARE = 0.5  # of a run's seconds for each peer


class EngineRead(ReadSide):
    label = "pyraftlog"

    def __init__(self, ds, queries, span, Entry, log, fn):
        super().__init__(ds, queries, span, Entry)
        self.read = fn
        self.log = log

    def read(self, g, lo, hi):  # replaced per instance
        raise NotImplementedError


class FnRead(ReadSide):
    def __init__(self, ds, queries, span, Entry, label, fn):
        super().__init__(ds, queries, span, Entry)
        self.label, self.read = label, fn


def load_engine(pyraftlog, path, ds):
    log = pyraftlog.open(path, sync=False)
    b, n = pyraftlog.WriteBatch(), 0
    for g, lo, hi in ds.rounds():
        b.append_many(g, lo, ds.terms[g][lo:hi], [ds.data(g, i) for i in range(lo, hi)])
        n += 1
        if n % 200 == 0:
            log.write(b)
            b = pyraftlog.WriteBatch()
    log.write(b)
    log.sync()
    return log


def check_same(side, ref, queries, span, notes) -> bool:
    """The side answers what the reference answers (compared as lists)."""
    for g, lo in queries[:200]:
        a, b = side.read(g, lo, lo + span), ref.read(g, lo, lo + span)
        if hasattr(a, "tolist"):
            a = a.tolist()
        if a != b:
            notes.append(f"MISMATCH: {side.label} answered differently from the reference for "
                         f"group {g}, [{lo}, {lo + span}): {str(a)[:120]} vs {str(b)[:120]}")
            print("   " + notes[-1])
            return False
    return True


class Checked(ReadSide):
    """Wraps a peer so that its answers are checked once, after its set-up."""

    def __init__(self, side, ref, comp):
        self.side, self.ref, self.comp = side, ref, comp
        self.label, self.op_name = side.label, side.op_name

    def setup(self):
        self.side.setup()
        check_same(self.side, self.ref, self.side.queries, self.side.span, self.comp.notes)

    def run(self, seconds, rec):
        self.side.run(seconds, rec)

    def close(self):
        self.side.close()


def _scaled(cfg):
    return dataclasses.replace(cfg, seconds=cfg.seconds * TIME_SHARE,
                               warmup=cfg.warmup * TIME_SHARE)


@benchmark("reads", "reads: entries(g, lo, lo+100) over random groups (1000 groups, 256 B entries)",
           targets=[Target("ratio", ">=", 1.0)],
           budget=lambda cfg: 3 * cfg.seconds + 240)
def reads(cfg):
    n = QUICK_PER_GROUP if cfg.quick else PER_GROUP
    params = {"groups": GROUPS, "entries_per_group": n, "entry_bytes": 256, "span": SPAN}
    comp = Comparison("reads", harness.BENCHMARKS["reads"].title, params=dict(params))
    comp_term = Comparison("reads_term", "reads: term(g, i) of a random entry", params=dict(params))
    comp_terms = Comparison("reads_terms", "reads: terms(g, lo, lo+100) as numpy",
                            params=dict(params))
    try:
        pyraftlog = import_engine()
    except Skip as e:
        for c in (comp, comp_term, comp_terms):
            c.skipped = str(e)
        return [comp, comp_term, comp_terms]
    Entry = pyraftlog.Entry
    workdir = cfg.workdir("reads")
    t0 = time.perf_counter()
    ds = Dataset(GROUPS, n)
    log = load_engine(pyraftlog, os.path.join(workdir, "log"), ds)
    cfg.log(f"  loaded {GROUPS * n:,} entries into the log in {time.perf_counter() - t0:.1f} s")
    comp.params["log_disk_bytes"] = log.stats()["disk_bytes"]
    rnd = random.Random(11)
    ranges = [(rnd.randint(1, GROUPS), rnd.randint(1, n - SPAN + 1)) for _ in range(QUERIES)]
    points = [(rnd.randint(1, GROUPS), rnd.randint(1, n)) for _ in range(QUERIES)]
    scfg = _scaled(cfg)
    device = harness.block_device(workdir)
    try:
        # entries
        ours = EngineRead(ds, ranges, SPAN, Entry, log, log.entries)
        ref = PythonBlobRead(ds, ranges, SPAN, Entry)
        check_same(ours, ref, ranges, SPAN, comp.notes)
        peers = [Checked(p, ref, comp)
                 for p in read_peers(ds, ranges, SPAN, Entry, workdir, comp.notes)]
        harness.compare(scfg, comp, ours, ref, device=device, peers=peers, peer_share=PEER_SHARE)

        # term
        terms = ds.terms
        ours = EngineRead(ds, points, 1, Entry, log, lambda g, i, _hi: log.term(g, i))
        ref = FnRead(ds, points, 1, Entry, "Python list terms[g][i]", lambda g, i, _hi: terms[g][i])
        check_same(ours, ref, points, 1, comp_term.notes)
        harness.compare(scfg, comp_term, ours, ref, device=device)

        # terms
        ours = EngineRead(ds, ranges, SPAN, Entry, log, log.terms)
        ref = FnRead(ds, ranges, SPAN, Entry, "Python list slice",
                     lambda g, lo, hi: terms[g][lo:hi])
        check_same(ours, ref, ranges, SPAN, comp_terms.notes)
        term = log.term
        peer = FnRead(ds, ranges, SPAN, Entry, "[log.term(g, i) for i]",
                      lambda g, lo, hi: [term(g, i) for i in range(lo, hi)])
        harness.compare(scfg, comp_terms, ours, ref, device=device,
                        peers=[Checked(peer, ref, comp_terms)], peer_share=PEER_SHARE)
    finally:
        log.close()
    comp.notes.append("ours and the reference count entries/s (100 per call); "
                      "reads_term counts calls; reads_terms counts terms returned")
    return [comp, comp_term, comp_terms]


if __name__ == "__main__":
    harness.ensure_importable()
    harness.main(["reads"], description=__doc__, json_name="bench_reads.json")
