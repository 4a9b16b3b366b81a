"""A deterministic crash workload: a child-process writer and the in-memory
model that tells the parent what the log must hold after any prefix of it.

Batches come from a seed.  Writer thread ``t`` owns its own groups (thread 0:
0, 1, 2 and 2**64-1; thread t > 0: t*1000 + 0..2), so the threads' batches
commute and each thread's stream has one well-defined model state per prefix.
Every batch mixes appends (next index and conflicting re-appends that discard
a suffix), truncations, compactions, snapshots with and without data, hard
states, key-value puts/deletes and the odd ``remove_group``, and ends with the
marker ``put(MARKER, b"t<thread>", b"<batch id>")``: no two prefixes of a
stream leave the same state, so a lost batch can never hide behind an equal
state.

Child (``python -m tests.crash.workload run DIR --seed S ...``) output, one
line each, written with ``os.write`` (atomic, unbuffered):

    O                      the child is about to open (recover) the log
    S                      the log is open and the writers start
    W <thread> <id> <lsn>  ``write`` returned for batch id (visible)
    A <thread> <id>        the batch's ticket completed (durable)
    D                      every writer finished its ``--count`` batches
    E <message>            an unexpected error; the child exits non-zero

Parent side: ``Expected`` regenerates the model state after the first k
batches of a stream, ``parse_output`` reads the child's lines and
``verify_recovered`` opens the directory and checks everything a kill test
checks (see its docstring).
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import random
import signal
import subprocess
import threading
import time
import traceback

import pyraftlog
from pyraftlog import (
    CompactedError,
    ConfState,
    CorruptionError,
    Entry,
    HardState,
    Snapshot,
    SnapshotMeta,
    UnavailableError,
)

from tests.common import child_env, python_module
from tests.model import GroupModel, Model, replay

U64_MAX = 2**64 - 1
MARKER = 2**63                      # the group holding every thread's progress marker
KEYS = (b"a", b"b", b"applied", b"\x00")
DATA_SIZES = (0, 0, 1, 7, 8, 9, 64, 100, 333, 1000, 2500)
SNAP_SIZES = (0, 0, 1, 100, 4000, 20000)
ENTRY_TYPES = (0, 0, 0, 0, 1, 2, 255)
MAX_BATCH_BYTES = 12000             # stays well inside a 64 KiB segment


def thread_groups(t):
    if t == 0:
        return (0, 1, 2, U64_MAX)
    return tuple(t * 1000 + j for j in range(3))


def marker_key(t):
    return b"t%d" % t


# ----------------------------------------------------------------- the model

def apply_ops(model, ops):
    """Apply ops that are valid by construction, in order, without the deep
    copy ``Model.write`` makes (an invalid op is a generator bug: it raises)."""
    for name, group, *args in ops:
        if name == "remove_group":
            model._groups.pop(group, None)
            model.touched.discard(group)
            continue
        g = model._groups.setdefault(group, GroupModel())
        getattr(g, name)(*args)
        model.touched.add(group)


class Workload:
    """The batch stream of one writer thread, and its model."""

    def __init__(self, seed, thread=0, max_batch_bytes=MAX_BATCH_BYTES):
        self.seed, self.thread = seed, thread
        self.rng = random.Random(f"pyraftlog-crash:{seed}:{thread}")
        self.groups = thread_groups(thread)
        self.model = Model()
        self.count = 0              # batches generated so far
        self.max_batch_bytes = max_batch_bytes
        self.leader_term = {g: 1 for g in self.groups}

    def advance(self, n):
        for _ in range(n):
            self.next_batch()
        return self

    def next_batch(self):
        """The ops of batch ``count + 1`` (already applied to the model)."""
        rng = self.rng
        self.count += 1
        ops, budget = [], self.max_batch_bytes
        for _ in range(rng.randint(1, 5)):
            op, cost = self._op(budget)
            if op is None:
                continue
            apply_ops(self.model, [op])
            ops.append(op)
            budget -= cost
            if budget < 200:
                break
        marker = ("put", MARKER, marker_key(self.thread), b"%d" % self.count)
        apply_ops(self.model, [marker])
        ops.append(marker)
        return ops

    # one operation, aimed at the current state; returns (op, bytes it costs)
    def _op(self, budget):
        rng, m = self.rng, self.model
        g = rng.choice(self.groups)
        first, last = m.first_index(g), m.last_index(g)
        kind = rng.choices(
            ("append", "reappend", "truncate", "compact", "snapshot", "hard_state", "put",
             "delete", "remove_group", "bootstrap"),
            (40, 8, 4, 7, 4, 8, 8, 4, 1, 1))[0]
        if last - first > 80:       # keep the model (and the checks) small
            kind = "compact"
        if g not in m._groups and rng.random() < 0.3:
            kind = "bootstrap"      # a fresh (or removed) group: its first write
        if kind == "append" or (kind in ("reappend", "compact") and last < first):
            return self._append(g, last + 1, budget)
        if kind == "reappend":
            self.leader_term[g] = max(self.leader_term[g], m.term(g, last)) + 1
            return self._append(g, rng.randint(first, last), budget)
        if kind == "truncate":
            return ("truncate", g, rng.randint(first, last + 1)), 40
        if kind == "compact":
            lo = max(first, last - 20)
            return ("compact", g, rng.randint(lo, last)), 40
        if kind in ("snapshot", "bootstrap"):
            fresh = m._groups.get(g) is None or (first == 1 and last == 0
                                                 and m.snapshot(g).meta.index == 0)
            cs = ConfState(voters=tuple(sorted(rng.sample(range(1, 8), rng.randint(0, 3)))),
                           learners=tuple(sorted(rng.sample(range(8, 12), rng.randint(0, 2)))),
                           voters_outgoing=tuple(sorted(rng.sample(range(1, 4),
                                                                   rng.randint(0, 1)))),
                           auto_leave=rng.random() < 0.3)
            if kind == "bootstrap" and fresh:
                return ("apply_snapshot", g, Snapshot(SnapshotMeta(0, 0, cs))), 100
            index = max(first, last + rng.randint(-3, 4))
            term = max(self.leader_term[g], m.term(g, last) if last >= first - 1 else 0)
            size = rng.choice(SNAP_SIZES)
            data = rng.randbytes(size) if size else b""
            return ("apply_snapshot", g, Snapshot(SnapshotMeta(index, term, cs), data)), 200
        if kind == "hard_state":
            hs = HardState(self.leader_term[g], rng.randint(0, 5), rng.randint(0, max(0, last)))
            return ("set_hard_state", g, hs), 80
        if kind == "put":
            size = rng.choice((0, 1, 10, 300))
            return ("put", g, rng.choice(KEYS), rng.randbytes(size)), 60 + size
        if kind == "delete":
            return ("delete", g, rng.choice(KEYS)), 50
        if kind == "remove_group":
            if rng.random() < 0.5:
                self.leader_term[g] = 1
                return ("remove_group", g), 40
            return None, 0
        return self._append(g, last + 1, budget)

    def _append(self, g, start, budget):
        rng = self.rng
        term = self.leader_term[g]
        entries, cost = [], 0
        for i in range(start, start + rng.randint(1, 6)):
            size = rng.choice(DATA_SIZES)
            if cost + size + 40 > budget:
                break
            entries.append(Entry(i, term, rng.randbytes(size), rng.choice(ENTRY_TYPES)))
            cost += size + 40
        if not entries:
            return None, 0
        return ("append", g, entries), cost


def group_state(reader, g, keys=KEYS):
    """Everything a user can read about group g (a Model or an Engine)."""
    first, last = reader.first_index(g), reader.last_index(g)
    return {
        "first_index": first,
        "last_index": last,
        "entries": list(reader.entries(g, first, last + 1)),
        "terms": [reader.term(g, i) for i in range(first - 1, last + 1)],
        "initial_state": tuple(reader.initial_state(g)),
        "snapshot": reader.snapshot(g),
        "kv": {k: reader.get(g, k) for k in keys},
    }


def diff(got, want):
    keys = sorted(set(got) | set(want), key=repr)
    return {k: (got.get(k), want.get(k)) for k in keys if got.get(k) != want.get(k)}


def summary(st):
    """A group state with entry data shortened to (len, crc) for messages."""
    import zlib
    out = dict(st)
    out["entries"] = [(e.index, e.term, e.type, len(e.data), zlib.crc32(e.data))
                      for e in st["entries"]]
    snap = st["snapshot"]
    out["snapshot"] = (snap.meta, len(snap.data), zlib.crc32(snap.data))
    out["kv"] = {k: v if v is None or len(v) < 16 else (len(v), zlib.crc32(v))
                 for k, v in st["kv"].items()}
    return out


class Expected:
    """The model state of one thread's stream after any prefix, for a parent
    whose queries mostly move forward (a kill chain)."""

    def __init__(self, seed, thread=0):
        self.seed, self.thread = seed, thread
        self._checkpoints = {0: Workload(seed, thread)}

    def workload_at(self, k):
        base = max(c for c in self._checkpoints if c <= k)
        wl = copy.deepcopy(self._checkpoints[base])
        wl.advance(k - base)
        return wl

    def states(self, lo, hi):
        """{k: (model, {group: state})} for lo <= k <= hi."""
        wl = self.workload_at(lo)
        out = {}
        for k in range(lo, hi + 1):
            if k > lo:
                wl.next_batch()
            m = wl.model
            out[k] = (copy.deepcopy(m), {g: group_state(m, g) for g in wl.groups})
        return out

    def checkpoint(self, k):
        if k not in self._checkpoints:
            self._checkpoints[k] = self.workload_at(k)
            # keep a handful: the chain moves forward
            for c in sorted(self._checkpoints)[1:-4]:
                del self._checkpoints[c]


# ------------------------------------------------------------- child process

def _out(line):
    os.write(1, (line + "\n").encode())


def run_child(args):
    starts = [int(x) for x in args.start.split(",")] if args.start else []
    starts += [0] * (args.threads - len(starts))
    streams = [Workload(args.seed, t).advance(starts[t]) for t in range(args.threads)]
    _out("O")
    opts = {}
    if args.purge_threshold:
        opts["purge_threshold"] = args.purge_threshold
    if args.prepare_ahead:
        opts["prepare_ahead"] = args.prepare_ahead
    if args.purge_batch_bytes:
        opts["purge_batch_bytes"] = args.purge_batch_bytes
    log = pyraftlog.open(args.dir, segment_size=args.segment_size, sync=bool(args.sync),
                         recovery_mode=args.mode, **opts)
    failed = threading.Event()

    def fail(msg):
        if not failed.is_set():
            failed.set()
            _out("E " + msg.replace("\n", " | "))
            os._exit(3)

    def writer(t):
        rng = random.Random(f"writer:{args.seed}:{t}:{starts[t]}")
        wl = streams[t]
        try:
            for _ in range(args.count):
                ops = wl.next_batch()
                bid = wl.count
                ticket = log.write(replay(ops, log.batch()))
                _out(f"W {t} {bid} {ticket.lsn}")
                ticket.add_done_callback(lambda tk, bid=bid: _out(f"A {t} {bid}"))
                r = rng.random()
                if r < args.wait_prob:
                    ticket.wait(timeout=30)
                elif r < args.wait_prob + 0.02:
                    log.sync()
                if args.pause:
                    time.sleep(rng.random() * args.pause)
        except BaseException:  # noqa: BLE001 - reported to the parent
            fail(f"writer {t}: {traceback.format_exc()}")

    stop_readers = threading.Event()

    def reader(r):
        rng = random.Random(f"reader:{args.seed}:{r}")
        groups = [g for t in range(args.threads) for g in thread_groups(t)] + [MARKER]
        try:
            while not stop_readers.is_set():
                g = rng.choice(groups)
                try:
                    first, last = log.first_index(g), log.last_index(g)
                    if last >= first:
                        lo = rng.randint(first, last)
                        ents = log.entries(g, lo, min(last, lo + 8) + 1, max_size=rng.choice(
                            (None, 0, 1000)))
                        for e in ents:
                            if e.index != lo or log.term(g, e.index) is None:
                                raise AssertionError(f"entry {e.index} read at {lo}")
                            lo += 1
                    log.initial_state(g)
                    log.get(g, rng.choice(KEYS))
                    log.snapshot(g)
                    log.groups()
                    log.stats()
                except (CompactedError, UnavailableError):
                    pass  # a writer moved the group between two reads
        except BaseException:  # noqa: BLE001
            fail(f"reader {r}: {traceback.format_exc()}")

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(args.threads)]
    readers = [threading.Thread(target=reader, args=(r,), daemon=True)
               for r in range(args.readers)]
    _out("S")
    for th in threads + readers:
        th.start()
    for th in threads:
        th.join()
    stop_readers.set()
    for th in readers:
        th.join()
    if args.finish == "sync":
        log.sync()
    if args.finish == "close":
        log.close()
    _out("D")
    if args.finish == "hang":
        time.sleep(3600)
    os._exit(0)  # no close: the flusher and the mapping die with the process


def child_command(path, seed, *, start=(), threads=1, readers=0, count=10**9, segment_size=64 << 10,
                  sync=True, wait_prob=0.3, pause=0.0, finish="exit", mode="tolerate_tail",
                  purge_threshold=0, prepare_ahead=0, purge_batch_bytes=0):
    return python_module("tests.crash.workload", "run", path, "--seed", seed,
                         "--start", ",".join(str(s) for s in start), "--threads", threads,
                         "--readers", readers, "--count", count, "--segment-size", segment_size,
                         "--sync", int(sync), "--wait-prob", wait_prob, "--pause", pause,
                         "--finish", finish, "--mode", mode, "--purge-threshold", purge_threshold,
                         "--prepare-ahead", prepare_ahead, "--purge-batch-bytes", purge_batch_bytes)


def write_and_exit(path, seed, count, **kw):
    """Run a child that writes `count` batches per thread and exits (without
    close unless finish="close"); returns the parsed output."""
    kw.setdefault("finish", "sync")
    cmd = child_command(path, seed, count=count, **kw)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(),
                       timeout=120)
    out = parse_output(p.stdout.decode())
    if p.returncode != 0 or out.errors or not out.done:
        raise AssertionError(f"child failed rc={p.returncode}: {out.errors} "
                             f"{p.stderr.decode()[-3000:]}")
    return out


class Output:
    def __init__(self):
        self.opening = False
        self.started = False
        self.done = False
        self.written = {}   # thread -> {id: lsn}
        self.acked = {}     # thread -> max acked id
        self.errors = []

    def max_written(self, t, default=0):
        w = self.written.get(t)
        return max(w) if w else default

    def max_acked(self, t, default=0):
        return self.acked.get(t, default)


def parse_output(text, out=None):
    out = out or Output()
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "O":
            out.opening = True
        elif parts[0] == "S":
            out.started = True
        elif parts[0] == "D":
            out.done = True
        elif parts[0] == "W" and len(parts) == 4:
            out.written.setdefault(int(parts[1]), {})[int(parts[2])] = int(parts[3])
        elif parts[0] == "A" and len(parts) == 3:
            t, bid = int(parts[1]), int(parts[2])
            out.acked[t] = max(out.acked.get(t, 0), bid)
        elif parts[0] == "E":
            out.errors.append(line)
        # anything else: a line cut by the kill; ignored
    return out


def run_and_kill(path, seed, *, kill_after_acks=None, kill_after_s=None, kill_on_open=False,
                 timeout=60, **kw):
    """Start a child and SIGKILL it: `kill_after_s` seconds after it says it
    is about to open the log (`kill_on_open`), after `kill_after_acks`
    acknowledged batches (then `kill_after_s` more seconds), or `kill_after_s`
    seconds after start.  Returns the parsed output (only complete lines
    count)."""
    cmd = child_command(path, seed, **kw)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    out, buf = Output(), b""
    deadline = time.monotonic() + timeout
    t0 = time.monotonic()
    acks = 0
    try:
        os.set_blocking(p.stdout.fileno(), False)
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(p.stdout, selectors.EVENT_READ)
        kill_at = t0 + kill_after_s if (kill_after_acks is None and not kill_on_open
                                        and kill_after_s is not None) else None
        while True:
            now = time.monotonic()
            if now > deadline:
                raise AssertionError(f"child did not reach its kill point in {timeout}s")
            if kill_at is not None and now >= kill_at:
                break
            wait = 0.5 if kill_at is None else max(0.0, kill_at - now)
            if sel.select(min(wait, 0.5)):
                chunk = p.stdout.read()
                if chunk is None:
                    continue
                if not chunk:           # the child exited by itself
                    break
                buf += chunk
                lines, _, buf = buf.rpartition(b"\n")
                if lines:
                    parse_output(lines.decode(), out)
                    acks = sum(out.acked.values())
                if out.errors:
                    break
                if kill_on_open and kill_at is None and out.opening:
                    kill_at = time.monotonic() + (kill_after_s or 0.0)
                    continue
                if kill_after_acks is not None and kill_at is None and acks >= kill_after_acks:
                    kill_at = time.monotonic() + (kill_after_s or 0.0)
                    if kill_after_s is None:
                        break
        sel.close()
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        rest = p.stdout.read() if p.stdout else b""
        if rest:
            buf += rest
        lines, _, _ = buf.rpartition(b"\n")  # a cut last line is ignored
        if lines:
            parse_output(lines.decode(), out)
        err = p.stderr.read().decode(errors="replace")
        p.stdout.close()
        p.stderr.close()
    out.returncode = p.returncode
    out.stderr = err
    if out.errors or (p.returncode not in (-signal.SIGKILL, 0)):
        raise AssertionError(f"child failed (rc={p.returncode}): {out.errors}\n{err[-4000:]}")
    return out


# ------------------------------------------------------------ verification

def engine_state(log, groups, threads):
    out = {g: group_state(log, g) for g in groups}
    out[MARKER]["markers"] = {t: log.get(MARKER, marker_key(t)) for t in range(threads)}
    return out


def _marker(got, t):
    return got[MARKER]["markers"][t]


def verify_recovered(path, expected, start, out, *, segment_size=64 << 10, check_strict=True):
    """Open `path` after a kill and check it against the streams.

    `expected[t]` is the Expected of thread t, `start[t]` the batches of
    stream t the log held before the killed run (verified by the previous
    call), `out` the killed child's Output.  Checks:

    * strict recovery either succeeds with exactly the state tolerate_tail
      recovers, or raises CorruptionError naming a segment of `path`;
    * tolerate_tail recovery succeeds and every thread's groups hold exactly
      the model state of a prefix k_t of its stream, with every acknowledged
      batch and every batch of an earlier run inside the prefix (no lost, no
      partial batch: the marker is the last op of every batch and no two
      prefixes leave equal states);
    * the marker group holds exactly the k_t; groups() lies between the
      groups with state and the groups ever written;
    * across threads the recovered batches are a prefix in lsn order.

    Returns the list of k_t."""
    threads = len(expected)
    all_groups = [g for t in range(threads) for g in thread_groups(t)] + [MARKER]
    strict_state = None
    if check_strict:
        try:
            with pyraftlog.open(path, segment_size=segment_size, recovery_mode="strict",
                                sync=False) as log:
                strict_state = engine_state(log, all_groups, threads), log.groups()
        except CorruptionError as exc:
            assert os.path.dirname(os.path.abspath(exc.path)) in (
                os.path.abspath(path), os.path.join(os.path.abspath(path), "snapshots")), exc
            assert exc.reason and isinstance(exc.offset, int), exc
    with pyraftlog.open(path, segment_size=segment_size, sync=False) as log:
        got = engine_state(log, all_groups, threads)
        got_groups = log.groups()
        stats = log.stats()
        snap_files = sorted(os.listdir(os.path.join(path, "snapshots")))
    # snapshot files: exactly one per group whose snapshot has data (orphans
    # of unfinished batches and superseded files are gone after an open)
    with_data = sorted(g for g in all_groups if got[g]["snapshot"].data)
    assert sorted(int(n[:16], 16) for n in snap_files) == with_data and \
        all(n.endswith(".snap") for n in snap_files), (snap_files, with_data)
    if strict_state is not None:
        assert strict_state == (got, got_groups), "strict and tolerate_tail recover different states"
    if check_strict:
        # the open above ended with a clean close: now nothing is torn
        with pyraftlog.open(path, segment_size=segment_size, recovery_mode="strict",
                            sync=False) as log:
            assert (engine_state(log, all_groups, threads), log.groups()) == (got, got_groups), \
                "strict reopen after a clean close recovers another state"

    ks, lower, upper, marker_kv = [], set(), set(), {}
    for t in range(threads):
        lo = max(start[t], out.max_acked(t))
        hi = max(out.max_written(t, start[t]) + 1, lo)
        cands = expected[t].states(lo, hi)
        mark = _marker(got, t)
        match = [k for k, (_, st) in cands.items()
                 if all(got[g] == st[g] for g in st) and mark == (b"%d" % k if k else None)]
        if not match:
            # the nearest candidates, for the message
            k0 = lo
            st0 = cands[k0][1]
            bad = {g: diff(summary(got[g]), summary(st0[g])) for g in st0 if got[g] != st0[g]}
            raise AssertionError(
                f"thread {t}: recovered state is no prefix in [{lo}, {hi}] (acked "
                f"{out.max_acked(t)}, written {out.max_written(t)}, start {start[t]}); "
                f"diff against prefix {k0}: {bad!r}"[:6000] + f" stats={stats}")
        assert len(match) == 1, f"thread {t}: prefixes {match} leave the same state"
        k = match[0]
        ks.append(k)
        model = cands[k][0]
        lower |= set(model.groups())
        upper |= set(model.groups_upper_bound())
        if k:
            marker_kv[marker_key(t)] = b"%d" % k
        expected[t].checkpoint(k)

    # the marker group holds nothing but the markers
    m = got[MARKER]
    assert m["kv"] == {key: None for key in KEYS}, m
    assert (m["first_index"], m["last_index"], m["entries"]) == (1, 0, []), m
    if marker_kv:
        lower.add(MARKER)
        upper.add(MARKER)
    assert lower <= set(got_groups) <= upper, (got_groups, sorted(lower), sorted(upper))
    assert got_groups == sorted(got_groups)

    # cross-thread prefix in lsn order (only batches whose lsn was printed)
    present = [lsn for t in range(threads) for bid, lsn in out.written.get(t, {}).items()
               if bid <= ks[t]]
    absent = [lsn for t in range(threads) for bid, lsn in out.written.get(t, {}).items()
              if bid > ks[t]]
    if present and absent:
        assert max(present) < min(absent), \
            f"batch lsn {min(absent)} missing but lsn {max(present)} present"
    return ks


# ------------------------------------------- a reference log for damage tests

REF_BASE = 100                      # batch i writes group REF_BASE + i only


def reference_batches(n):
    """n batches whose effects are independent: batch i touches only group
    REF_BASE + i (and its own marker key), so the state after any subset of
    them is the model of that subset.  Entry sizes leave padding; some
    batches carry a snapshot with data (a file), some without, some a kv put
    or a compaction."""
    out = []
    for i in range(1, n + 1):
        g = REF_BASE + i
        k = 1 + i % 3
        ents = [Entry(j, 1 + i % 2, bytes([(i * 7 + j) % 251 + 1]) * (150 + 13 * ((i + j) % 11)),
                      (0, 1, 2, 255)[(i + j) % 4]) for j in range(1, k + 1)]
        ops = [("append", g, ents), ("set_hard_state", g, HardState(1 + i % 2, i % 3, k))]
        if i % 4 == 0:
            ops.append(("put", g, b"a", b"v%d" % i))
        if i % 5 == 2:
            ops.append(("compact", g, 1))
        if i % 6 == 3:
            cs = ConfState(voters=(1, 2, 3), learners=(i % 9 + 4,), auto_leave=bool(i % 2))
            data = (b"S%03d" % i) * (30 + i) if i % 12 == 3 else b""
            ops.append(("apply_snapshot", g, Snapshot(SnapshotMeta(k + 2, 3, cs), data)))
        ops.append(("put", MARKER, b"b%d" % i, b"%d" % i))
        out.append(ops)
    return out


def reference_model(n, keep):
    """The model after the batches whose 1-based ids are in `keep`."""
    m = Model()
    for i, ops in enumerate(reference_batches(n), 1):
        if i in keep:
            apply_ops(m, ops)
    return m


def reference_state(reader, n):
    """What a damage test compares: every reference group, every marker."""
    out = {g: group_state(reader, g) for g in range(REF_BASE + 1, REF_BASE + n + 1)}
    out["markers"] = {i: reader.get(MARKER, b"b%d" % i) for i in range(1, n + 1)}
    out["groups"] = list(reader.groups())
    return out


@functools.lru_cache(maxsize=None)
def expected_state(n, keep):
    """reference_state of the model after the batches in `keep` (a
    frozenset), computed once per (n, keep)."""
    return reference_state(reference_model(n, keep), n)


def present_batches(log, n):
    """Ids of the reference batches whose marker the log holds."""
    return {i for i in range(1, n + 1) if log.get(MARKER, b"b%d" % i) is not None}


def run_reference_child(args):
    log = pyraftlog.open(args.dir, segment_size=args.segment_size, sync=True)
    for ops in reference_batches(args.count)[args.start:]:
        log.write(replay(ops, log.batch())).wait(timeout=60)
    if args.finish == "close":
        log.close()
    else:
        log.sync()
    os._exit(0)  # no close: what a crash after the last acknowledgement leaves


def write_reference(path, n, segment_size=16 << 10, start=0, finish="exit"):
    """Write reference batches start+1..n from a child that waits for each
    ticket, then exits without close (finish="exit") or closes."""
    cmd = python_module("tests.crash.workload", "reference", path, "--count", n, "--start", start,
                        "--segment-size", segment_size, "--finish", finish)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(),
                       timeout=120)
    if p.returncode:
        raise AssertionError(f"reference writer failed: {p.stderr.decode()[-3000:]}")


# ------------------------------------------------------- on-disk structures

class Rec:
    def __init__(self, off, rtype, aux, length, group, index, term):
        self.off, self.type, self.aux, self.len = off, rtype, aux, length
        self.group, self.index, self.term = group, index, term
        self.payload = off + 32
        self.end = off + 32 + ((length + 7) & ~7)

    def __repr__(self):
        return f"<Rec @{self.off} type={self.type} len={self.len} g={self.group} i={self.index}>"


class Batch:
    def __init__(self, path, off, crc, length, lsn, seq, count, lag, recs):
        self.path, self.off, self.crc, self.len, self.lsn = path, off, crc, length, lsn
        self.seq, self.count, self.sync_lag, self.recs = seq, count, lag, recs
        self.end = off + length

    def __repr__(self):
        return f"<Batch lsn={self.lsn} @{self.off}+{self.len} seq={self.seq}>"


class Seg:
    def __init__(self, path, seq, header, batches, end, size):
        self.path, self.seq, self.header, self.batches = path, seq, header, batches
        self.end, self.size = end, size  # end: offset after the last valid batch

    @property
    def first_lsn(self):
        return self.header[4]

    def __repr__(self):
        return f"<Seg {os.path.basename(self.path)} lsn {self.first_lsn} {len(self.batches)} batches>"


def parse_segment(path):
    """The valid chain of batches of one segment file, by the Python structs
    of pyraftlog.record (CRCs checked)."""
    from pyraftlog import record as R
    raw = open(path, "rb").read()
    header = R.SEGMENT_HEADER.unpack_from(raw)
    seq = header[3]
    off, batches = R.SEGMENT_HEADER_SIZE, []
    while off + R.BATCH_HEADER_SIZE <= len(raw):
        crc, length, lsn, bseq, count, lag = R.BATCH_HEADER.unpack_from(raw, off)
        if bseq != seq or length < 32 or length % 8 or off + length > len(raw) or \
                crc != batch_crc(seq, raw[off + 4:off + length]):
            break
        recs, p = [], off + R.BATCH_HEADER_SIZE
        for _ in range(count):
            rec = Rec(p, *R.RECORD_HEADER.unpack_from(raw, p)[:2],
                      *R.RECORD_HEADER.unpack_from(raw, p)[3:])
            recs.append(rec)
            p = rec.end
        assert p == off + length, (path, off)
        batches.append(Batch(path, off, crc, length, lsn, bseq, count, lag, recs))
        off += length
    return Seg(path, seq, header, batches, off, len(raw))


def parse_log(path):
    """Every segment of the log directory, oldest first."""
    names = sorted(n for n in os.listdir(path) if n.endswith(".seg"))
    return [parse_segment(os.path.join(path, n)) for n in names]


def batch_crc(seq, body):
    from pyraftlog._native import ffi, lib
    return lib.prl_crc32c(lib.prl_batch_seed_of(seq), ffi.from_buffer(bytes(body)), len(body))


def crc32c(data):
    from pyraftlog.engine import crc32c as c
    return c(bytes(data))


# ------------------------------------------------ damage verbs (LevelDB style)

def read_at(path, off, n):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(n)


def write_at(path, off, data):
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(data)


def flip_bit(path, off, bit=0):
    b = read_at(path, off, 1)
    write_at(path, off, bytes([b[0] ^ (1 << bit)]))


def zero(path, off, n):
    write_at(path, off, bytes(n))


def garbage(path, off, n, seed=0):
    """Overwrite with random bytes, each different from the byte it replaces."""
    rng = random.Random(seed)
    old = read_at(path, off, n)
    write_at(path, off, bytes(b ^ rng.randint(1, 255) for b in old))


def truncate(path, n):
    os.truncate(path, n)


def extend(path, n, fill=b"\0"):
    with open(path, "ab") as f:
        f.write((fill * n)[:n])


def forge_batch(batch, **fields):
    """Rewrite header fields of a batch (crc, len, lsn, seq, count, sync_lag)
    and, unless crc is given, recompute its checksum: damage the checksum
    cannot see (a writer bug, not a bit flip)."""
    from pyraftlog import record as R
    path, off = batch.path, batch.off
    h = list(R.BATCH_HEADER.unpack(read_at(path, off, 32)))
    names = ("crc", "len", "lsn", "seq", "count", "sync_lag")
    for k, v in fields.items():
        h[names.index(k)] = v
    write_at(path, off, R.BATCH_HEADER.pack(*h))
    if "crc" not in fields:
        reseal(batch, h[1])


def reseal(batch, length=None):
    """Recompute a batch's checksum over its current bytes."""
    length = batch.len if length is None else length
    body = read_at(batch.path, batch.off + 4, length - 4)
    write_at(batch.path, batch.off, batch_crc(batch.seq, body).to_bytes(4, "little"))


def forge_segment_header(seg, **fields):
    """Rewrite segment header fields and recompute the header checksum."""
    from pyraftlog import record as R
    h = list(R.SEGMENT_HEADER.unpack(read_at(seg.path, 0, 64)))
    names = ("magic", "version", "header_size", "seq", "first_lsn", "segment_size", "reserved",
             "crc")
    for k, v in fields.items():
        h[names.index(k)] = v
    raw = R.SEGMENT_HEADER.pack(*h)
    if "crc" not in fields:
        raw = raw[:60] + crc32c(raw[:60]).to_bytes(4, "little")
    write_at(seg.path, 0, raw)


def main(argv=None):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("dir")
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--start", default="")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--readers", type=int, default=0)
    r.add_argument("--count", type=int, default=10**9)
    r.add_argument("--segment-size", type=int, default=64 << 10)
    r.add_argument("--sync", type=int, default=1)
    r.add_argument("--wait-prob", type=float, default=0.3)
    r.add_argument("--pause", type=float, default=0.0)
    r.add_argument("--finish", choices=("exit", "sync", "close", "hang"), default="exit")
    r.add_argument("--mode", default="tolerate_tail")
    r.add_argument("--purge-threshold", type=int, default=0)
    r.add_argument("--purge-batch-bytes", type=int, default=0)
    r.add_argument("--prepare-ahead", type=int, default=0)
    f = sub.add_parser("reference")
    f.add_argument("dir")
    f.add_argument("--count", type=int, required=True)
    f.add_argument("--start", type=int, default=0)
    f.add_argument("--segment-size", type=int, default=16 << 10)
    f.add_argument("--finish", choices=("exit", "close"), default="exit")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        run_child(args)
    elif args.cmd == "reference":
        run_reference_child(args)


if __name__ == "__main__":
    main()
