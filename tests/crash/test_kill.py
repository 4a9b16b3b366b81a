"""SIGKILL a writer at random moments, recover, and check the log against the
workload's model (tests/crash/workload.py).

After every kill the directory is opened in-process and must hold exactly the
state of some prefix of the batch stream that includes every acknowledged
batch (and every batch an earlier run left): nothing acknowledged lost, no
partial batch, no later batch without an earlier one, every group's
first/last index, entries byte for byte, terms, hard state, conf state,
snapshot with its data, key-value space and groups().  Strict recovery must
either agree exactly or raise CorruptionError.

Chains kill, reopen, write more from the recovered prefix, and kill again,
so recovery also runs over earlier recoveries' leftovers (cut tails, a new
segment after a cut, resumed segments).  Small segments make rotations
frequent; with a small purge_threshold the ring recycles emptied segments
and purge rewrites lagging groups while kills land.

Kill points: env PYRAFTLOG_KILL_POINTS (default 20; `make test-crash` 200),
split over single kills and chains."""

import os
import random
import time

import pytest

import pyraftlog
from pyraftlog import Entry

from tests.crash import workload as W

KILL_POINTS = max(4, int(os.environ.get("PYRAFTLOG_KILL_POINTS", "20")))
CHAIN_LEN = 5 if KILL_POINTS <= 40 else 10

# (name, segment_size, sync, purge_threshold (0: default), share of the kill points)
CONFIGS = [
    ("seg64k", 64 << 10, True, 0, 0.3),
    ("seg16k-purge", 16 << 10, True, 6 * (16 << 10), 0.25),
    ("seg256k", 256 << 10, True, 0, 0.15),
    ("seg64k-nosync", 64 << 10, False, 0, 0.05),
]
SINGLE_SHARE = 0.25


def _chains():
    out = []
    for name, seg, sync, purge, share in CONFIGS:
        n = max(1, round(KILL_POINTS * share))
        k = 0
        while n > 0:
            length = min(CHAIN_LEN, n)
            out.append(pytest.param(seg, sync, purge, k, length, id=f"{name}-{k}x{length}"))
            n -= length
            k += 1
    return out


SINGLES = max(1, KILL_POINTS - sum(p.values[4] for p in _chains()))


def _kill_plan(rng):
    """Where the next kill lands (a random moment, of one of four kinds)."""
    r = rng.random()
    if r < 0.15:    # while the child opens and recovers the log
        return dict(kill_on_open=True, kill_after_s=rng.choice((0.0, 0.0005, 0.002, 0.01)))
    if r < 0.75:    # after some acknowledged batches, plus a little
        return dict(kill_after_acks=rng.randint(0, 120),
                    kill_after_s=rng.choice((None, 0.0, 0.0003, 0.002, 0.01, 0.05)))
    if r < 0.9:     # a wall-clock moment after the start
        return dict(kill_after_s=rng.uniform(0.3, 1.2))
    return dict(kill_after_acks=rng.randint(100, 600))  # a longer run: many rotations


def _child_opts(rng):
    # purge_batch_bytes: small, so lagging groups are rewritten in many staged
    # batches (kills land between them), or the default (mostly one batch)
    return dict(wait_prob=rng.choice((0.0, 0.1, 0.5, 1.0)),
                pause=rng.choice((0.0, 0.0, 0.0005)),
                purge_batch_bytes=rng.choice((0, 512, 2048)))


def _kill_chain(tmp_path, seed, segment_size, sync, purge, kills):
    rng = random.Random(seed)
    path = tmp_path / "log"
    expected = [W.Expected(seed, 0)]
    start = [0]
    for step in range(kills):
        plan = _kill_plan(rng)
        out = W.run_and_kill(path, seed, start=start, segment_size=segment_size, sync=sync,
                             purge_threshold=purge, **plan, **_child_opts(rng))
        if not os.path.isdir(path):     # killed before it created the directory
            assert not out.written
            continue
        ks = W.verify_recovered(str(path), expected, start, out, segment_size=segment_size)
        assert ks[0] >= start[0]
        start = ks
    return path, expected, start


@pytest.mark.parametrize("segment_size,sync,purge,chain,kills", _chains())
@pytest.mark.timeout(1200)  # up to CHAIN_LEN kills, each bounded by its own 60 s
def test_kill_chain(tmp_path, segment_size, sync, purge, chain, kills):
    """kill, reopen, continue writing from the recovered prefix, kill again.
    With purge: the ring recycles emptied segments and rewrites lagging
    groups while the writer runs, so kills land in recycling and purge."""
    seed = 1000 * chain + segment_size // 1024 + (0 if sync else 7) + (3 if purge else 0)
    path, expected, final = _kill_chain(tmp_path, seed, segment_size, sync, purge, kills)
    # The chain ends in a log that takes a clean run on top of its recovered
    # prefix: the child syncs before it exits, so every batch of that run is
    # durable and must come back, after the chain's prefix, exactly.
    n = 25
    out = W.write_and_exit(path, seed, n, start=final, segment_size=segment_size, sync=sync,
                           purge_threshold=purge)
    assert out.max_written(0) == final[0] + n
    ks = W.verify_recovered(str(path), expected, final, out, segment_size=segment_size)
    assert ks == [final[0] + n]


@pytest.mark.parametrize("k", range(SINGLES))
def test_kill_once(tmp_path, k):
    """One kill on a fresh directory; every other run uses 16 KiB segments
    (rotation after a few batches)."""
    seg = (16 << 10) if k % 2 else (64 << 10)
    rng = random.Random(50_000 + k)
    path = tmp_path / "log"
    plan = _kill_plan(rng)
    out = W.run_and_kill(path, 50_000 + k, segment_size=seg, **plan, **_child_opts(rng))
    if os.path.isdir(path):
        W.verify_recovered(str(path), [W.Expected(50_000 + k, 0)], [0], out, segment_size=seg)
    else:
        assert not out.written


def _write(log, *ops):
    b = log.batch()
    for name, *args in ops:
        getattr(b, name)(*args)
    log.write(b).wait(timeout=30)


def test_reopen_after_recycling_keeps_reappended_entries(tmp_path):
    """Minimal reproducer (no kill needed).  Group A: entries 1..8 (term 1)
    in segment 1; then, in segment 2: append 9, 10 + compact 1; a
    conflicting re-append 3..8 at term 2 (drops 9, 10); compact 6.  A holds
    7, 8 (term 2).  Segment 1 is dead and gets recycled; after reopen replay
    starts at "append 9, 10" and A comes back as 9, 10 (term 1)."""
    d = str(tmp_path / "log")
    seg = 8192
    a, f = 1, 2
    with pyraftlog.open(d, segment_size=seg) as log:
        _write(log, ("append", a, [Entry(i, 1, b"a") for i in range(1, 9)]))
        k = 0
        while log.stats()["rotations"] < 1:          # fill segment 1 with group f
            k += 1
            _write(log, ("append", f, [Entry(k, 1, b"f" * 1000)]))
        _write(log, ("append", a, [Entry(9, 1, b"a"), Entry(10, 1, b"a")]), ("compact", a, 1))
        _write(log, ("append", a, [Entry(i, 2, b"b%d" % i) for i in range(3, 9)]))
        _write(log, ("compact", a, 6))
        _write(log, ("compact", f, k))              # nothing in segment 1 is needed now
        while log.stats()["rotations"] < 2:
            k += 1
            _write(log, ("append", f, [Entry(k, 1, b"f" * 1000)]), ("compact", f, k))
        deadline = time.monotonic() + 10
        while not (log.stats()["segments_recycled"] or log.stats()["segments_deleted"]):
            assert time.monotonic() < deadline, "segment 1 was not recycled"
            time.sleep(0.01)
        want = (7, 8, log.entries(a, 7, 9))
        assert [(e.index, e.term) for e in want[2]] == [(7, 2), (8, 2)]
    with pyraftlog.open(d, segment_size=seg) as log:
        first, last = log.first_index(a), log.last_index(a)
        assert (first, last, log.entries(a, first, last + 1)) == want   # (9, 10, term 1) today
        assert log.term(a, 6) == 2
