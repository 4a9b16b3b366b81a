"""The flusher's syncs, seen from outside the product (docs/API.md "Writing":
durable when its ticket completes; docs/CRASH_SAFETY.md "How the engine
copes").

A child process runs with tests/syncspy.c preloaded: the library logs every
real fsync/fdatasync/msync (when it began, when it returned, on which path)
and every rename, on one clock that the child reads when it calls `write`
and when a ticket's callback runs.  The engine's own sync_history cannot
serve here: the flusher writes it in the step that publishes durable_lsn,
so it agrees with the tickets even when no fdatasync was issued.

The oracle, for every batch: its ticket completed only after an fdatasync
(or fsync) of the batch's segment file that *began* after `write` was called
and *returned* before the ticket completed; and after a directory fsync that
began after the segment file got its name.  Syncs are held a little in the
spy (SYNCSPY_DELAY_US), so a ticket completed while its sync is still
running shows as a completion between the sync's begin and end.  (Sound, not
timed: a slow machine can only make a planted bug harder to see, never make
a correct engine fail.)"""

import json
import os
import struct
import subprocess

import pytest

from tests.common import PYTHON, build_preload, child_env, preloaded

HERE = os.path.dirname(os.path.abspath(__file__))
SPY_C = os.path.join(HERE, "syncspy.c")
SEG = 64 << 10

CHILD = r"""
import ctypes, json, random, sys, threading
import pyraftlog
from pyraftlog import Entry

clock = ctypes.CDLL(None).syncspy_clock
clock.restype = ctypes.c_uint64
path, out, sync, threads, per_thread = sys.argv[1], sys.argv[2], sys.argv[3] == "1", \
    int(sys.argv[4]), int(sys.argv[5])
log = pyraftlog.open(path, segment_size=%(seg)d, sync=sync)
writes, done, mu = [], {}, threading.Lock()

def on_done(t):
    k = clock()
    with mu:
        done[t.lsn] = (k, t.exception() is None)

def writer(g):
    rng = random.Random(g)
    for i in range(1, per_thread + 1):
        b = log.batch()
        b.append(g, [Entry(i, 1, bytes([g]) * rng.randrange(10, 6000))])
        w = clock()                    # before write(): the batch is not written yet
        t = log.write(b)
        with mu:
            writes.append((t.lsn, w))
        t.add_done_callback(on_done)
        if rng.random() < 0.2:
            t.wait(60)

ths = [threading.Thread(target=writer, args=(g,)) for g in range(1, threads + 1)]
for th in ths:
    th.start()
for th in ths:
    th.join()
log.sync()
stats = log.stats()
log.close()
json.dump({"writes": writes, "done": done, "syncs": stats["syncs"],
           "segments_created": stats["segments_created"]}, open(out, "w"))
""" % {"seg": SEG}


@pytest.fixture(scope="module")
def spy(tmp_path_factory):
    return build_preload(SPY_C, tmp_path_factory.mktemp("syncspy"))


def run_spied(spy, tmp_path, *, sync=True, threads=3, per_thread=80, delay_us=2000):
    path, out, events = (str(tmp_path / n) for n in ("log", "out.json", "events"))
    env = child_env(SYNCSPY_OUT=events, SYNCSPY_DELAY_US=str(delay_us), LD_PRELOAD=preloaded(spy))
    subprocess.run([*PYTHON, "-c", CHILD, path, out, "1" if sync else "0", str(threads),
                    str(per_thread)], env=env, check=True, timeout=240)
    with open(out) as f:
        res = json.load(f)
    res["done"] = {int(k): v for k, v in res["done"].items()}
    return path, res, parse_events(events)


class Events:
    def __init__(self):
        self.syncs = []    # (begin k, end k, op, path, errno)
        self.renames = []  # (k, old, new)


def parse_events(path):
    ev, begun = Events(), {}
    with open(path) as f:
        for line in f:
            kind, rest = line.rstrip("\n").split(" ", 1)
            if kind == "B":
                k, op, p = rest.split(" ", 2)
                begun.setdefault((op, p), []).append(int(k))
            elif kind == "E":
                k, op, err, p = rest.split(" ", 3)
                # syncs of one path by one op may overlap across threads: pair an
                # end with the earliest begin, which can only make a begin look
                # earlier (the check less strict), never later
                b = begun[(op, p)].pop(0)
                ev.syncs.append((b, int(k), op, p, int(err)))
            elif kind == "R":
                k, names = rest.split(" ", 1)
                old, new = names.split("\t")
                ev.renames.append((int(k), old, new))
    assert not any(begun.values()), f"syncs that never returned: {begun}"
    return ev


def segment_first_lsns(path):
    """{segment path: its first lsn}, read from the headers (FORMAT.md: seq
    at byte 16, first_lsn at byte 24; the name is 16 hex digits + .seg)."""
    out = {}
    for name in sorted(os.listdir(path)):
        if name.endswith(".seg"):
            with open(os.path.join(path, name), "rb") as f:
                head = f.read(32)
            seq, first = struct.unpack_from("<QQ", head, 16)
            assert int(name[:16], 16) == seq, name
            out[os.path.realpath(os.path.join(path, name))] = first
    return out


def segment_of(firsts, lsn):
    best = None
    for p, first in firsts.items():
        if first <= lsn and (best is None or first > firsts[best]):
            best = p
    return best


def check_oracle(path, res, ev):
    """Every violation of the rule in the module docstring, as a list."""
    firsts = segment_first_lsns(path)
    dirpath = os.path.realpath(path)
    named = {}  # segment path -> clock of the rename that gave it its name
    for k, _old, new in ev.renames:
        named.setdefault(os.path.realpath(new), k)
    file_syncs = [s for s in ev.syncs if s[2] in ("fdatasync", "fsync") and s[4] == 0]
    bad = []
    for lsn, w in res["writes"]:
        c, ok = res["done"][lsn]
        assert ok, lsn
        seg = segment_of(firsts, lsn)
        if not any(p == seg and b > w and e < c for b, e, _, p, _ in file_syncs):
            bad.append(("no fdatasync of its segment between write and completion", lsn, seg))
        if seg in named and not any(p == dirpath and b > named[seg] and e < c
                                    for b, e, _, p, _ in file_syncs):
            bad.append(("no directory fsync between the segment's rename and completion",
                        lsn, seg))
    return bad


def test_every_ticket_completes_after_an_fdatasync_of_its_segment(spy, tmp_path):
    path, res, ev = run_spied(spy, tmp_path)
    assert len(res["writes"]) == 3 * 80 and set(res["done"]) == {w[0] for w in res["writes"]}
    assert res["segments_created"] >= 3, "too few rotations to test segment changes"
    assert check_oracle(path, res, ev) == []
    # the engine's own count of syncs is a count of real fdatasyncs
    seg_syncs = [s for s in ev.syncs if s[2] == "fdatasync" and s[3].endswith(".seg")]
    assert len(seg_syncs) >= res["syncs"] >= 1
    # every segment that holds a batch was renamed into the log and so needed a
    # directory fsync: the check above saw at least one
    assert any(segment_of(segment_first_lsns(path), lsn) in
               {os.path.realpath(n) for _, _, n in ev.renames} for lsn, _ in res["writes"])


def test_the_oracle_sees_tickets_completed_without_a_sync(spy, tmp_path):
    """A test of the test: with sync=False tickets complete without any
    fdatasync, and the oracle must say so for (nearly) every batch."""
    path, res, ev = run_spied(spy, tmp_path, sync=False, threads=1, per_thread=40, delay_us=0)
    bad = check_oracle(path, res, ev)
    assert len([b for b in bad if b[0].startswith("no fdatasync")]) >= 30, bad
