"""The child process of the power-loss simulation (tests/powerloss/generation.py
runs it: ``python -m tests.powerloss.writer``).

Runs under the LD_PRELOAD recorder (shim.c): opens the log, writes random
multi-group batches until the parent kills it, and says what it did on
stdout, one line per event, each written with one ``os.write`` (atomic,
unbuffered, survives the SIGKILL):

    O <n>          about to open the log (n-th open of this process)
    S <n>          the log is open
    W <id> <lsn>   ``write`` returned for batch id (visible, maybe not durable)
    A <id>         batch id's ticket completed without error (durable)
    C <id>         ``close`` returned: every batch up to id is durable
    D              every planned batch was written
    E <message>    unexpected error (the child then exits with status 3)

Before ``write`` is called for a batch, its operations are appended to the
batches file (``--batches``) as a length-prefixed pickle of ``(id, ops)``:
the parent replays them into the model (tests/model.py) for every prefix.
A batch recorded but not followed by ``W`` may or may not be in the log.

Every batch ends with ``put(MARKER, b"batch", b"<id>")``, so no two prefixes
of the run leave the same state and a lost or extra batch cannot hide.

Batch ids are 1-based and continue the base history (``--base``: a pickle of
the op lists the log directory already holds, from an earlier generation).
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import os
import pickle
import random
import signal
import struct
import sys
import time
import traceback
from typing import Any, Dict

import pyraftlog
from pyraftlog import ConfState, Entry, HardState, Snapshot, SnapshotMeta

from tests.model import Model, replay

U64_MAX = 2**64 - 1
GROUPS = (1, 2, 3, 4, 5, U64_MAX)
MARKER = 2**63                 # progress marker group: one put per batch
KEYS = (b"a", b"b", b"applied", b"\x00k", b"long-key-" + b"x" * 100)
DATA_SIZES = (0, 0, 1, 7, 8, 9, 50, 100, 333, 700, 1500, 4000)
SNAP_SIZES = (0, 0, 1, 100, 600, 5000, 20000)
ENTRY_TYPES = (0, 0, 0, 0, 0, 1, 2, 255)
MAX_BATCH_BYTES = 14000        # well inside a 64 KiB segment
OP_WEIGHTS = (("append", 30), ("truncate", 3), ("compact", 6), ("apply_snapshot", 2),
              ("set_hard_state", 4), ("put", 4), ("delete", 2), ("remove_group", 1))
MAX_LIVE_ENTRIES = 80          # per group: compaction gets likelier above this
# --params: the engine's options and how the run goes (generation.random_params
# draws them per run)
WRITER_DEFAULTS = dict(segment_size=64 * 1024, min_sync_interval=0.0, purge_threshold=1 << 20,
                       batches=200, wait_prob=0.04, reopen_prob=0.01, purge_prob=0.02, pause=0.0,
                       exit_without_close=False)


def engine_opts(params: Dict[str, Any]) -> Dict[str, Any]:
    """The options a checker opens the writer's directory (or an image of it) with."""
    return dict(segment_size=params["segment_size"], purge_threshold=params["purge_threshold"],
                recovery_mode="tolerate_tail")


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def universe() -> tuple:
    """Groups and keys any batch may touch (the parent reads all of them)."""
    return GROUPS + (MARKER,), KEYS + (b"batch",)


class Generator:
    """Random valid batches against the model's current state."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.term = {g: 1 for g in GROUPS}

    def _data(self, sizes=DATA_SIZES) -> bytes:
        n = self.rng.choice(sizes)
        return self.rng.randbytes(n)

    def op(self, m: Model):
        rng = self.rng
        kinds, weights = zip(*OP_WEIGHTS)
        kind = rng.choices(kinds, weights)[0]
        g = rng.choice(GROUPS)
        first, last = m.first_index(g), m.last_index(g)
        if last - first > MAX_LIVE_ENTRIES and rng.random() < 0.5:
            kind = "compact"
        if rng.random() < 0.05:
            self.term[g] += 1
        term = self.term[g]
        if kind == "append":
            r = rng.random()
            if r < 0.7 or last < first:
                start = last + 1
            elif r < 0.95:
                start = rng.randint(first, last)          # conflicting re-append
            else:
                start = rng.randint(max(1, first - 3), first)  # into the compacted part
            n = rng.randint(1, 8)
            ents = [Entry(start + k, term, self._data(), rng.choice(ENTRY_TYPES)) for k in range(n)]
            return ("append", g, ents)
        if kind == "truncate":
            return ("truncate", g, rng.randint(first, last + 2))
        if kind == "compact":
            if last < first:
                return None
            return ("compact", g, rng.randint(first, min(last, first + 60)))
        if kind == "apply_snapshot":
            if rng.random() < 0.05 and last == 0 and first == 1:
                meta = SnapshotMeta(0, 0, ConfState(voters=(1, 2, 3)))  # bootstrap
                return ("apply_snapshot", g, Snapshot(meta, b""))
            index = rng.randint(first, last + 5)
            cs = ConfState(voters=tuple(sorted(rng.sample(range(1, 8), rng.randint(1, 5)))),
                           learners=tuple(rng.sample(range(10, 14), rng.randint(0, 2))),
                           auto_leave=rng.random() < 0.2)
            self.term[g] = max(self.term[g], term)
            return ("apply_snapshot", g, Snapshot(SnapshotMeta(index, term, cs),
                                                 self._data(SNAP_SIZES)))
        if kind == "set_hard_state":
            return ("set_hard_state", g, HardState(term, rng.randint(0, 5),
                                                   rng.randint(0, max(0, last))))
        if kind == "put":
            return ("put", g, rng.choice(KEYS), self._data((0, 1, 10, 100, 800)))
        if kind == "delete":
            return ("delete", g, rng.choice(KEYS))
        return ("remove_group", g)

    def batch(self, m: Model, batch_id: int) -> list:
        """1-5 operations valid in order against ``m``, then the marker."""
        scratch = m.copy()
        ops, size = [], 0
        for _ in range(self.rng.randint(1, 5)):
            op = self.op(scratch)
            if op is None:
                continue
            est = _size(op)
            if size + est > MAX_BATCH_BYTES:
                continue
            try:
                scratch.write([op])
            except Exception:  # noqa: BLE001 - an op the state does not allow: drop it
                continue
            ops.append(op)
            size += est
        ops.append(("put", MARKER, b"batch", b"%d" % batch_id))
        return ops


def _size(op) -> int:
    if op[0] == "append":
        return sum(40 + len(e.data) for e in op[2])
    if op[0] == "apply_snapshot":
        return 100  # the data goes to its own file
    if op[0] == "put":
        return 48 + len(op[2]) + len(op[3])
    return 48


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--batches", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--base", default=None, help="pickle: op lists the log already holds")
    ap.add_argument("--params", default="{}", help="JSON: see WRITER_DEFAULTS")
    a = ap.parse_args()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the parent asks when we hang
    p = json.loads(a.params)
    rng = random.Random(a.seed)
    gen = Generator(rng)
    model = Model()
    base = []
    if a.base:
        with open(a.base, "rb") as f:
            base = pickle.load(f)
    for ops in base:
        model.write(ops)
    # the generator's terms continue from the recovered state
    for g in GROUPS:
        gen.term[g] = max(1, model.term(g, model.last_index(g)))

    bfd = os.open(a.batches, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    opts = dict(segment_size=p["segment_size"], min_sync_interval=p["min_sync_interval"],
                purge_threshold=p["purge_threshold"], recovery_mode="tolerate_tail",
                purge_batch_bytes=p.get("purge_batch_bytes") or None)
    opens = 0
    last_id = len(base)

    def open_log():
        nonlocal opens
        opens += 1
        say(f"O {opens}")
        log = pyraftlog.open(a.dir, **opts)
        say(f"S {opens}")
        return log

    def done(ticket, batch_id):
        exc = ticket.exception()
        if exc is None:
            say(f"A {batch_id}")
        else:
            say(f"E ticket of batch {batch_id} failed: {exc!r}")

    try:
        log = open_log()
        for batch_id in range(len(base) + 1, len(base) + 1 + p["batches"]):
            ops = gen.batch(model, batch_id)
            model.write(ops)
            blob = pickle.dumps((batch_id, ops), protocol=pickle.HIGHEST_PROTOCOL)
            os.write(bfd, struct.pack("<I", len(blob)) + blob)
            ticket = log.write(replay(ops))
            say(f"W {batch_id} {ticket.lsn}")
            last_id = batch_id
            ticket.add_done_callback(lambda t, i=batch_id: done(t, i))
            r = rng.random()
            if r < p["wait_prob"]:
                ticket.wait()
            elif r < p["wait_prob"] + p["reopen_prob"]:
                log.close()
                say(f"C {last_id}")
                log = open_log()
            elif r < p["wait_prob"] + p["reopen_prob"] + p["purge_prob"] and hasattr(log, "purge"):
                log.purge()
            if p["pause"]:
                time.sleep(rng.random() * p["pause"])
        say("D")
        if p.get("exit_without_close"):
            os._exit(0)
        time.sleep(3600)  # the parent kills us
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        say("E " + repr(exc).replace("\n", " "))
        sys.stderr.write(traceback.format_exc())
        sys.stderr.flush()
        os._exit(3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
