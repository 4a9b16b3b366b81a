"""Purge: rewriting the groups that pin the oldest segment at the head of the
log, so that segment's live bytes fall to zero and the ring recycles it.

A lagging group (one that rarely compacts) keeps the oldest segment alive
although every other group moved on; without a rewrite, disk use grows
without bound (raft-engine's rewrite queue solves the same problem).  A small
group is rewritten whole, in one ordinary batch that reproduces its state
exactly:

    remove_group, snapshot meta (if any), compact to its base (if the base is
    not the snapshot's), every live entry, hard state, every kv pair

A group whose entries take more than `purge_batch_bytes` is rewritten in
steps, so that no step holds the engine lock, or adds to the next sync, more
than a small batch: its entries are copied forward first as STAGE records,
one batch of about purge_batch_bytes at a time, each durable before the next
(foreground writes go on in between); then one batch like the above rebuilds
the group, with an ADOPT record in place of the staged entries, followed by
copies of the entries appended meanwhile.  If the group changed under the
staged entries (truncated, overwritten, removed), the rewrite is given up
and the staged records released; a later purge tries again.  Either way the
rewrite is atomic: replay ignores STAGE records until an ADOPT takes them,
so a crash at any point loses nothing.

Entries are copied record to record by C, without Python touching their
bytes.  Between steps the purger lets go of the engine lock and the GIL."""
from __future__ import annotations

import threading
import time
from array import array
from typing import TYPE_CHECKING, Dict, List, Optional, Set, Tuple

import numpy as np

from . import ops as O
from . import record as R
from ._native import lib
from .errors import ClosedError, PoisonedError
from .group_index import GroupState, position_seq
from .logger import Summary, fields, log
from .plan import Plan
from .ticket import Ticket

if TYPE_CHECKING:
    from .store import Store


# Every purge write leaves as much room in its segment as it takes, or goes
# into the next one: a foreground write that fills a segment then finds its
# predecessors durable and rotates without waiting for a purge batch's sync.
ROOMY = lib.PRL_WRITE_ROOMY
RECENT = 64  # groups rewritten lately that a purge tries before it searches
PIN_SLICE = 65536  # groups the C index looks at per engine-lock hold (~0.3 ms)
PAUSE = 1e-4  # seconds the purger sleeps between lock holds


def _pause() -> None:
    """Let go of the GIL long enough for a waiting thread to take it.

    A thread waiting for the GIL gets it from a busy thread only after the
    switch interval (5 ms); the purger must not make a foreground write
    wait that long, so it sleeps briefly after each step instead (a sleep of
    0 would hand the GIL back to the purger at once)."""
    time.sleep(PAUSE)


def oldest_seq(st: GroupState, head: int) -> int:
    """The oldest segment holding a record this group needs (`head`: the
    active segment)."""
    p = st.oldest_position()
    return 1 << 64 if p is None else position_seq(p, head)


def rewrite_plan(g: int, st: GroupState, entry_lens: "np.ndarray",
                 adopt: Optional[Tuple[int, int]] = None) -> Plan:
    """The batch that rewrites group g's whole state (see the module doc).
    Its entries are verbatim copies of their records (payload lengths
    `entry_lens`), made by C; with adopt = (last, stage_pos), entries up to
    `last` are not copied but adopted from the STAGE records at positions >=
    stage_pos, written before."""
    plan = Plan()
    plan.add_op(O.Remove(g))
    meta = st.snap_meta
    if st.snap_pos is not None:
        plan.add_op(O.SetSnapshot(g, meta, st.snap_ref))
    if st.base_index and (st.snap_pos is None or st.base_index != meta.index):
        plan.add_op(O.Compact(g, st.base_index, st.base_term))
    first = st.base_index + 1
    if adopt is not None:
        last, stage_pos = adopt
        plan.add_op(O.Adopt(g, first, last, stage_pos))
        first = last + 1
    if first <= st.last_index:
        k = first - st.base_index - 1
        # retyped: an entry adopted by an earlier rewrite lives in a STAGE record
        plan.add_copies(O.Append(g, first, st.term_array(first, st.last_index + 1)),
                        st.positions[k:], entry_lens[k:])
    if st.hs_pos is not None:
        plan.add_op(O.SetHardState(g, st.hard_state))
    for key, (value, _) in sorted((st.kv or {}).items()):
        plan.add_op(O.Put(g, key, value))
    return plan


def chunks(lens: "np.ndarray", limit: int) -> List[Tuple[int, int]]:
    """[lo, hi) ranges of records whose sizes (payload lengths `lens`) add
    up to about `limit` bytes each, at least one record each."""
    ends = np.cumsum(R.RECORD_HEADER_SIZE + ((lens.astype(np.int64) + 7) & ~7))
    out, lo = [], 0
    while lo < len(lens):
        base = int(ends[lo - 1]) if lo else 0
        hi = max(lo + 1, int(np.searchsorted(ends, base + limit, side="right")))
        out.append((lo, hi))
        lo = hi
    return out


def unchanged(st: Optional[GroupState], first: int, positions: "np.ndarray", lo: int,
              hi: int) -> bool:
    """Entries first+lo .. first+hi-1 that group state `st` still holds are
    at `positions[lo:hi]` (the records staged from them are still them)."""
    if st is None:
        return False
    a, b = max(first + lo, st.base_index + 1), min(first + hi - 1, st.last_index)
    if a > b:
        return True
    cur = np.frombuffer(st.positions, np.uint64)[a - st.base_index - 1:b - st.base_index]
    return bool(np.array_equal(cur, positions[a - first:b - first + 1]))


class Purger:
    """Runs purge steps: on demand (`Engine.purge`) and from a background
    thread woken by writes once disk use passes the threshold."""

    def __init__(self, store: "Store", threshold: int, stage_bytes: int):
        self.store = store
        self.threshold = threshold  # disk use past which the background purger rewrites
        self.rewritten_bytes = 0
        self.rewritten_groups = 0
        self.skipped_groups = 0   # live state larger than one batch can hold
        self.runs = 0
        self._wake = threading.Event()
        self._stop = False
        self._thread: Optional[threading.Thread] = None
        self._mu = threading.Lock()  # one purge at a time
        self._start_lock = threading.Lock()
        self._recent: Dict[int, None] = {}  # groups rewritten lately, oldest first
        self.stage_bytes = stage_bytes
        self._summary = Summary()  # one purge line per interval, not one per pass
        self._too_large: Set[int] = set()  # groups already reported as too large

    def kick(self) -> None:
        """Wake the background purger (started on first use).  Called by
        writers outside the engine lock, so the start is guarded."""
        with self._start_lock:
            if self._thread is None and not self._stop:
                self._thread = threading.Thread(target=self._run, name="pyraftlog-purge",
                                                daemon=True)
                self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        with self._start_lock:
            self._stop = True
            t = self._thread
        self._wake.set()
        if t is not None and t is not threading.current_thread():
            t.join()
        self._log_summary(self._summary.flush())

    def _log_summary(self, s: Optional[Dict[str, int]]) -> None:
        if not s:
            return
        path = self.store.path
        log.info("%s: purge rewrote %d bytes of %d lagging groups in %d passes at the head of "
                 "the log so their oldest segments can be recycled", path, s["bytes"],
                 s["groups"], s["passes"],
                 extra=fields(path, bytes=s["bytes"], groups=s["groups"], passes=s["passes"]))

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                self.purge()
            except (ClosedError, PoisonedError) as exc:
                # closing ends purging; poisoning was logged where it was seen
                log.debug("%s: background purge stopped: %s", self.store.path, exc,
                          extra=fields(self.store.path))
            except Exception as exc:
                if not self._stop:
                    log.warning("%s: background purge pass failed (the next write past "
                                "purge_threshold tries again): %s", self.store.path, exc,
                                extra=fields(self.store.path))

    def purge(self, max_bytes: Optional[int] = None, force: bool = False) -> int:
        """Rewrite groups pinning the oldest segments while disk use exceeds
        the threshold (or once, with force); returns bytes rewritten."""
        with self._mu:
            self.runs += 1
            done = 0
            groups_before = self.rewritten_groups
            tried: set[int] = set()
            store = self.store
            # Only what lies behind the head as of now: the rewritten groups
            # land in new segments, which this call must not chase.
            with store.lock:
                store.check()
                limit = store.active_seq_locked()
            while not self._stop and (force or store.disk_bytes() > self.threshold):
                seq = store.oldest_live_seq()
                if seq is None or seq in tried or seq >= limit:
                    break
                # Rewrite only what lies half a threshold (and at least two
                # segments) behind the head: a rewritten group then waits that
                # long before its next rewrite, which bounds the write
                # amplification of a group that never compacts.
                behind = (limit - seq) * store.segment_size
                if not force and behind < max(self.threshold // 2, 2 * store.segment_size):
                    break
                tried.add(seq)
                n = self._rewrite_pinners(seq, None if max_bytes is None else max_bytes - done)
                done += n
                force = False
                if max_bytes is not None and done >= max_bytes:
                    break
            if done:
                self._log_summary(self._summary.add(
                    bytes=done, groups=self.rewritten_groups - groups_before, passes=1))
            return done

    def _rewrite_pinners(self, seq: int, budget: Optional[int]) -> int:
        """Rewrites the groups pinning segment `seq`: first those rewritten
        lately (a group that lags keeps lagging, and is then usually the
        only pinner), then, if `seq` still holds live records, the ones a
        search finds.  Stops early once `budget` bytes are written."""
        store = self.store
        done = 0
        for search in (False, True):
            for g in self._search(seq) if search else list(self._recent):
                if budget is not None and done >= budget:
                    return done
                if store.oldest_live_seq() != seq:
                    return done  # seq holds nothing live any more
                n = self._rewrite_group(g, seq)
                if n:
                    done += n
                    self.rewritten_bytes += n
                    self.rewritten_groups += 1
                    self._recent.pop(g, None)
                    self._recent[g] = None
                    while len(self._recent) > RECENT:
                        del self._recent[next(iter(self._recent))]
            if store.oldest_live_seq() != seq:
                break
        return done

    def _search(self, seq: int) -> List[int]:
        """The groups pinning segment `seq`: the C index walked a slice at a
        time (the engine lock and the GIL are let go between slices), then
        the key-value spaces Python keeps."""
        store = self.store
        pinners: List[int] = []
        out = np.empty(PIN_SLICE, np.uint64)
        start = 0
        while not self._stop:
            with store.lock:
                store.check()
                found, start = store.pinners_locked(seq, start, PIN_SLICE, out)
            pinners += found
            if not start:
                break
            _pause()
        return list(dict.fromkeys(pinners))

    def _rewrite_group(self, g: int, seq: int) -> int:
        """Rewrites group g if it still pins segment `seq`; returns the bytes
        written.  A group whose entries take more than stage_bytes is staged
        first, stage_bytes per batch (each durable before the next), so its
        rewrite never holds the engine lock, or delays the next sync, by more
        than one small batch; the final batch then adopts the staged entries
        if they are still the group's, and copies what came after them."""
        store = self.store
        _pause()
        with store.lock:
            store.check()
            st = store.index.get(g)
            if st is None or oldest_seq(st, store.active_seq_locked()) > seq:
                return 0
            lens = store.entry_lens_locked(st)
            if int(lens.sum()) + R.RECORD_HEADER_SIZE * len(lens) <= self.stage_bytes:
                return self._write_whole_locked(g, rewrite_plan(g, st, lens), seq)
            first = st.base_index + 1
            positions = np.frombuffer(st.positions, np.uint64).copy()
            terms = st.term_array(first, st.last_index + 1)
        done = 0
        adopted = False
        try:
            for lo, hi in chunks(lens, self.stage_bytes):
                _pause()
                if self._stop:
                    return done  # closing: the staged records are released below
                with store.lock:
                    store.check()
                    st = store.index.get(g)
                    if not unchanged(st, first, positions, lo, hi):
                        return done  # truncated or removed meanwhile: a later purge retries
                    assert st is not None
                    lo = max(lo, st.base_index + 1 - first)  # compacted meanwhile: gone
                    if lo >= hi:
                        continue
                    plan = Plan()
                    plan.add_copies(O.Stage(g, first + lo, terms[lo:hi]),
                                    array("Q", positions[lo:hi].tobytes()), lens[lo:hi])
                    lsn = store.write_plan_locked(plan, ROOMY)
                    done += plan.size
                # paced: a staged batch is durable before the next, and the
                # disk then gets as long again for foreground syncs alone,
                # unless disk use grew by another segment meanwhile
                t0 = time.monotonic()
                Ticket(store.core, lsn).wait()
                if store.disk_bytes() <= self.threshold + store.segment_size:
                    time.sleep(min(0.01, time.monotonic() - t0))
            _pause()
            with store.lock:
                store.check()
                st = store.index.get(g)
                last = first + len(positions) - 1
                if st is None or not unchanged(st, first, positions, 0, len(positions)):
                    return done
                # adopt the staged entries the group still holds, from its
                # first; if it was compacted past them all, copy it whole
                a, b = st.base_index + 1, min(last, st.last_index)
                adopt = (b, store.index.staged_from(g)) if first <= a <= b else None
                plan = rewrite_plan(g, st, store.entry_lens_locked(st), adopt)
                n = self._write_whole_locked(g, plan, seq)
                adopted = n > 0 and adopt is not None  # else the finally below releases them
                return done + n
        finally:
            if not adopted:
                with store.lock:
                    store.drop_staged_locked(g)

    def _write_whole_locked(self, g: int, plan: Plan, seq: int) -> int:
        """Writes a group's rewrite batch; returns its size, or 0 if it is
        larger than the largest segment (the group then stays where it is)."""
        if plan.size > R.MAX_SEGMENT_SIZE - R.SEGMENT_HEADER_SIZE:
            self.skipped_groups += 1
            if g not in self._too_large:  # once per group: every purge pass meets it again
                self._too_large.add(g)
                path = self.store.path
                log.warning("%s: group %d needs a rewrite batch of %d bytes, more than the "
                            "largest segment; it cannot be rewritten and pins segment %d",
                            path, g, plan.size, seq,
                            extra=fields(path, group=g, bytes=plan.size, seq=seq))
            return 0
        # a group larger than a segment (its kv pairs) gets a segment of its own
        self.store.write_plan_locked(plan, ROOMY | lib.PRL_WRITE_OVERSIZE)
        return plan.size
