"""Purge: rewriting lagging groups so the oldest segments can be recycled
(pyraftlog/purge.py)."""
import os
import signal
import subprocess
import sys
import time

from pyraftlog import HardState, Snapshot, SnapshotMeta, ConfState, WriteBatch

from common import ROOT, append, state, wait_until

SEG = 1 << 16


def _lagging_workload(log, rounds, groups=20, size=200):
    """Every group appends; all but group 0 compact regularly."""
    last = {}
    peak = 0
    for k in range(rounds):
        b = WriteBatch()
        for g in range(groups):
            if (k + g) % 4:
                continue
            i = last.get(g, 0) + 1
            last[g] = i
            from pyraftlog import Entry
            b.append(g, [Entry(i, 1 + i // 50, bytes([g]) * size)])
            if g and i > 20 and i % 10 == 0:
                b.compact(g, i - 10)
        log.write(b)
        peak = max(peak, log.stats()["disk_bytes"])
    return peak


def test_purge_keeps_disk_bounded_with_a_lagging_group(open_log):
    threshold = 16 * SEG
    log = open_log(segment_size=SEG, purge_threshold=threshold)
    peak = _lagging_workload(log, 3000)
    log.sync()
    s = log.stats()
    assert s["purge_rewritten_groups"] > 0
    assert s["segments_recycled"] > 10
    lag = log.last_index(0) * (32 + 200)
    # bounded by the threshold plus what the one lagging group must keep
    assert peak <= threshold + lag + 6 * SEG
    before = state(log)
    log.close()
    log = open_log(segment_size=SEG, purge_threshold=threshold)
    assert state(log) == before


def test_purge_on_demand_rewrites_the_oldest_pinners(open_log, log_dir):
    log = open_log(segment_size=SEG)
    b = WriteBatch()
    b.set_hard_state(5, HardState(3, 2, 1))
    b.put(5, b"applied", b"7")
    b.apply_snapshot(5, Snapshot(SnapshotMeta(10, 2, ConfState((1, 2))), b"snapdata"))
    log.write(b).wait()
    append(log, 5, 11, 5, term=3).wait()
    log.write(WriteBatch().compact(5, 12)).wait()
    for k in range(8):  # other groups fill segments behind group 5
        append(log, 6, 1 + 100 * k, 100, size=300, compact_to=100 * k or None).wait()
    before = state(log)
    oldest = log._oldest_live_seq()
    assert log.purge() > 0
    assert log._oldest_live_seq() > oldest
    assert state(log) == before
    assert wait_until(lambda: "0000000000000001.seg" not in os.listdir(log_dir))
    log.close()
    log = open_log(segment_size=SEG)
    assert state(log) == before
    assert log.get(5, b"applied") == b"7"
    assert log.initial_state(5) == (HardState(3, 2, 1), ConfState((1, 2)))
    assert log.snapshot(5).data == b"snapdata"


def test_group_larger_than_a_segment_is_rewritten_whole(open_log):
    log = open_log(segment_size=SEG)
    for k in range(6):
        append(log, 1, 1 + 100 * k, 100, size=300).wait()
    for k in range(6):
        append(log, 2, 1 + 100 * k, 100, size=300, compact_to=100 * k or None).wait()
    before = state(log)
    assert log.purge() > 3 * SEG  # group 1: 600 entries of 336 bytes, in one batch
    assert log.stats()["purge_skipped_groups"] == 0
    assert state(log) == before
    log.close()
    log = open_log(segment_size=SEG)
    assert state(log) == before


CHILD = r"""
import sys, pyraftlog
from pyraftlog import Entry, WriteBatch
path = sys.argv[1]
log = pyraftlog.open(path, segment_size=65536, sync=True)
for k in range(60):
    b = WriteBatch()
    for g in range(6):
        b.append(g, [Entry(i, 1, bytes([g, k]) * 50) for i in range(1 + 10 * k, 11 + 10 * k)])
        if g and k > 2:
            b.compact(g, 10 * (k - 2))
    log.write(b)
log.sync()
print("synced", flush=True)
while True:
    log.purge()
"""


def test_crash_during_rewrite_loses_nothing(open_log, log_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    expected = None
    for round_ in range(6):
        d = tmp_path / f"r{round_}"
        p = subprocess.Popen([sys.executable, "-c", CHILD, str(d)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert p.stdout.readline() == b"synced\n", p.stderr.read().decode()
            time.sleep(0.05 + 0.07 * round_)
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
        log = open_log(d, segment_size=SEG)
        got = state(log)
        log.close()
        if expected is None:
            expected = got
        assert got == expected
        assert got[0][0] == 1 and got[0][1] == 600   # the lagging group is whole
        assert all(got[g][0] == 571 and got[g][1] == 600 for g in range(1, 6))
