"""16 writer threads and 4 reader threads in a child, SIGKILLed after a
random, bounded time; then the checks of test_kill for every thread's
stream (workload.verify_recovered): every acknowledged batch present, each
stream recovered as exactly one of its prefixes (entries byte for byte,
terms, hard/conf state, snapshots with data, kv, groups()), and across
threads the recovered batches are a prefix of the log in lsn order.  Some
runs continue from the recovered state and are killed again.  Readers in
the child fail the run on any error other than the API's Compacted /
Unavailable races.

Kill points: PYRAFTLOG_KILL_POINTS // 8 (at least 3)."""

import os
import random

import pytest

from tests.crash import workload as W

KILL_POINTS = max(3, int(os.environ.get("PYRAFTLOG_KILL_POINTS", "20")) // 8)
THREADS = 16
READERS = 4
CHAIN = 3


def _chains():
    out, n, k = [], KILL_POINTS, 0
    while n > 0:
        length = min(CHAIN, n)
        out.append(pytest.param(k, length, id=f"chain{k}x{length}"))
        n -= length
        k += 1
    return out


@pytest.mark.parametrize("chain,kills", _chains())
def test_concurrent_writers_killed(tmp_path, chain, kills):
    seed = 9000 + chain
    rng = random.Random(seed)
    path = tmp_path / "log"
    seg = rng.choice((64 << 10, 256 << 10))
    purge = rng.choice((0, 8 * seg))
    expected = [W.Expected(seed, t) for t in range(THREADS)]
    start = [0] * THREADS
    for step in range(kills):
        out = W.run_and_kill(path, seed, start=start, threads=THREADS, readers=READERS,
                             segment_size=seg, purge_threshold=purge,
                             purge_batch_bytes=rng.choice((0, 1024)),
                             wait_prob=rng.choice((0.0, 0.5, 1.0)),
                             kill_after_acks=rng.randint(20, 400),
                             kill_after_s=rng.choice((0.0, 0.001, 0.02)))
        assert out.started
        ks = W.verify_recovered(str(path), expected, start, out, segment_size=seg)
        assert all(k >= s for k, s in zip(ks, start))
        start = ks
