"""The per-group index as it was in Python (pyraftlog/group_index.py before the C
index): kept as an independent model that tests/test_group_index.py runs
beside the C one.  Original docstring follows:

The per-group index: every group's state in memory, with no Python object
per entry.

A group's entries are contiguous: entry `base_index + 1 + k` lives at
`positions[k]` ((segment seq mod 2^32) << 32 | offset of its record, 8
bytes; see `position_seq`).  Terms are
stored once per run of equal terms (`run_starts`, `run_terms`), so a group
costs about 8 bytes per live entry.  The same `apply_*` methods serve live
writes and recovery replay, so replay rebuilds exactly what writes built.

Every `apply_*` appends to `release` the positions of records that stopped
being needed (live-byte accounting for segment recycling) and returns the
snapshot file reference it superseded, if any.  Not thread-safe: the Engine
calls it with its lock held."""
from __future__ import annotations

import sys
from array import array
from bisect import bisect_left, bisect_right
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from pyraftlog.types import HardState, SnapshotMeta

SnapRef = Tuple[int, int, int]  # (data_size, file_id, data_crc)
GUESSED = -1  # base_pos of a base that replay inferred (see _replay_prepare)
_EMPTY_HS = HardState()
_EMPTY_META = SnapshotMeta(0, 0)
_U64 = (1 << 64) - 1
_HALF = 1 << 63


def position_seq(pos: int, head: int) -> int:
    """The segment seq of a position.  Positions carry it modulo 2^32 (the
    log never stops at a seq), and no record the log still holds is 2^32
    segments behind the head segment `head`."""
    return head - ((head - (pos >> 32)) & 0xFFFFFFFF)


def position_order(pos: int, ref: int) -> int:
    """A key that orders positions by where they are in the log, for
    positions within 2^63 bytes of log of position `ref` (all live ones)."""
    return ((pos - ref) & _U64) ^ _HALF


class GroupState:
    __slots__ = ("base_index", "base_term", "positions", "run_starts", "run_terms",
                 "hard_state", "hs_pos", "snap_meta", "snap_ref", "snap_pos", "base_pos",
                 "kv", "hint")

    def __init__(self) -> None:
        self.base_index = 0          # first_index - 1: snapshot or compaction point
        self.base_term = 0
        # replay only: the newest compaction seen below a guessed base, as
        # (index, term, position); adopted if the base comes down to it
        self.hint: Optional[Tuple[int, int, int]] = None
        self.positions = array("Q")
        self.run_starts = array("Q")  # first index of each run of equal terms
        self.run_terms = array("Q")
        self.hard_state = _EMPTY_HS
        self.hs_pos: Optional[int] = None      # record holding hard_state
        self.snap_meta = _EMPTY_META
        self.snap_ref: Optional[SnapRef] = None
        self.snap_pos: Optional[int] = None    # record holding snap_meta
        self.base_pos: Optional[int] = None    # record that set base (snapshot or compact)
        self.kv: Optional[Dict[bytes, Tuple[bytes, int]]] = None  # key -> (value, position)

    @property
    def first_index(self) -> int:
        return self.base_index + 1

    @property
    def last_index(self) -> int:
        return self.base_index + len(self.positions)

    def term(self, i: int) -> int:
        """Term of entry i; the caller checked base_index <= i <= last_index."""
        if i == self.base_index:
            return self.base_term
        return self.run_terms[bisect_right(self.run_starts, i) - 1]

    def terms(self, lo: int, hi: int) -> List[int]:
        """Terms of entries [lo, hi), checked by the caller."""
        out: List[int] = []
        starts, terms = self.run_starts, self.run_terms
        j = bisect_right(starts, lo) - 1
        i = lo
        while i < hi:
            end = starts[j + 1] if j + 1 < len(starts) else hi
            n = min(end, hi) - i
            out.extend([terms[j]] * n)
            i += n
            j += 1
        return out

    def term_array(self, lo: int, hi: int) -> "np.ndarray":
        """Terms of entries [lo, hi) as a numpy uint64 array, checked by the caller."""
        starts = np.frombuffer(self.run_starts, np.uint64)
        j = np.searchsorted(starts, np.arange(lo, hi, dtype=np.uint64), side="right") - 1
        return np.frombuffer(self.run_terms, np.uint64)[j]

    def pins(self) -> List[int]:
        """Positions of the records other than entries this group still needs."""
        out = [p for p in {self.hs_pos, self.snap_pos, self.base_pos} if p not in (None, GUESSED)]
        if self.kv:
            out.extend(p for _, p in self.kv.values())
        return out

    def oldest_position(self) -> Optional[int]:
        """Position of the oldest record this group needs (None: none)."""
        needed = self.pins()
        if self.positions:
            needed.append(self.positions[0])
        if not needed:
            return None
        return min(needed, key=partial(position_order, ref=needed[0]))

    def nbytes(self) -> int:
        return (sys.getsizeof(self) + sys.getsizeof(self.positions) +
                sys.getsizeof(self.run_starts) + sys.getsizeof(self.run_terms))

    # -- changes -----------------------------------------------------------

    def truncate_from(self, i: int, release: array[int]) -> None:
        """Drop entries >= i (i > base_index)."""
        keep = i - self.base_index - 1
        if keep < len(self.positions):
            release.extend(self.positions[keep:])
            del self.positions[keep:]
        j = bisect_left(self.run_starts, i)
        del self.run_starts[j:]
        del self.run_terms[j:]

    def append_one(self, index: int, term: int, position: int) -> None:
        """One entry right after the last one (the caller checked)."""
        self.positions.append(position)
        if self.run_terms[-1] != term:
            self.run_starts.append(index)
            self.run_terms.append(term)

    def append(self, start: int, terms: Sequence[int], positions: array[int],
               release: array[int]) -> None:
        rterms = self.run_terms
        if start == self.base_index + len(self.positions) + 1 and self.positions:
            # the common case: new entries right after the last one
            self.positions.extend(positions)
            last: Optional[int] = rterms[-1]
            for k, t in enumerate(terms):
                if t != last:
                    self.run_starts.append(start + k)
                    rterms.append(t)
                    last = t
            return
        skip = self._replay_prepare(start, release)
        if skip:
            terms, positions, start = terms[skip:], positions[skip:], start + skip
            if not len(terms):
                return
        self.truncate_from(start, release)
        self.positions.extend(positions)
        starts, rterms = self.run_starts, self.run_terms
        last = rterms[-1] if rterms and len(self.positions) > len(positions) else None
        for k, t in enumerate(terms):
            if t != last:
                starts.append(start + k)
                rterms.append(t)
                last = t

    def append_bulk(self, start: int, terms: "np.ndarray", positions: "np.ndarray",
                    release: array[int]) -> None:
        """`append` for replay: terms and positions as numpy arrays, term
        runs found with numpy instead of a Python loop."""
        skip = self._replay_prepare(start, release)
        if skip:
            terms, positions, start = terms[skip:], positions[skip:], start + skip
            if not len(terms):
                return
        self.truncate_from(start, release)
        kept = len(self.positions) > 0
        self.positions.frombytes(positions.astype(np.uint64, copy=False).tobytes())
        change = np.flatnonzero(terms[1:] != terms[:-1]) + 1
        if not kept or self.run_terms[-1] != terms[0]:
            self.run_starts.append(start)
            self.run_terms.append(int(terms[0]))
        if len(change):
            self.run_starts.frombytes((change.astype(np.uint64) + np.uint64(start)).tobytes())
            self.run_terms.frombytes(terms[change].astype(np.uint64, copy=False).tobytes())

    # -- replay of a log whose oldest segments were recycled -----------------
    #
    # Replay then starts in the middle of a group's history: the records its
    # first entries followed may be gone, and dead records (superseded later)
    # come back for a while.  When entries arrive with nothing before them,
    # the base (compaction point) is guessed (base_pos = GUESSED, term 0).  A
    # guessed base gives way: entries, truncations and compactions below it
    # move it down (they were valid when written, so the guess was too high),
    # and the compact or snapshot record that really set the base names it.
    # The live records always rebuild the final state: the newest base record
    # is live, and so is every entry above it (docs/ARCHITECTURE.md).

    def _replay_prepare(self, start: int, release: array[int]) -> int:
        """Before entries start.. are applied: how many leading ones to skip
        (at or below a known base), after moving a guessed base if needed."""
        if start <= self.base_index:
            if self.base_pos != GUESSED:
                return self.base_index + 1 - start
            self._guess_base(start - 1, release)
        elif start > self.last_index + 1:
            self._guess_base(start - 1, release)
        return 0

    def _guess_base(self, index: int, release: array[int]) -> None:
        self.truncate_from(self.base_index + 1, release)
        if self.base_pos not in (None, GUESSED):
            # the real base a guess replaces is the base again if the guess
            # comes back down to it (found by make fuzz on the C index)
            self.hint = (self.base_index, self.base_term, self.base_pos)
        self.base_index, self.base_term, self.base_pos = index, 0, GUESSED
        if self.hint is not None and self.hint[0] == index:
            # a compaction seen while the guess was higher: it set this base
            self.base_term, self.base_pos = self.hint[1], self.hint[2]
            self.hint = None

    def truncate(self, index: int, release: array[int]) -> None:
        """A TRUNCATE record: drop entries >= index."""
        if index > self.base_index:
            self.truncate_from(index, release)
        elif self.base_pos == GUESSED:
            self._guess_base(index - 1, release)

    def _set_base(self, index: int, term: int, pos: int, release: array[int]) -> None:
        if self.base_pos not in (None, GUESSED, self.snap_pos):
            release.append(self.base_pos)
        self.base_index, self.base_term, self.base_pos = index, term, pos
        j = bisect_right(self.run_starts, index + 1) - 1
        if j > 0:
            del self.run_starts[:j]
            del self.run_terms[:j]

    def compact(self, index: int, term: int, pos: int, release: array[int]) -> None:
        """Drop entries <= index.  Replay may compact past the last index (a
        rewritten group states its base first); then the group is empty there.
        Replay may also find the base already at `index` without a record
        (entries whose predecessors were recycled): this record names it."""
        if self.base_pos == GUESSED and index <= self.base_index:
            if index == self.base_index:  # the record that really set the guessed base
                self.base_term, self.base_pos = term, pos
            else:
                # Below the guess: superseded since, or the base once the
                # guess comes down to it (entries re-appended just above it).
                release.append(pos)
                self.hint = (index, term, pos)
            return
        self.hint = None
        if index <= self.base_index:
            release.append(pos)
            return
        drop = min(index - self.base_index, len(self.positions))
        release.extend(self.positions[:drop])
        del self.positions[:drop]
        self._set_base(index, term, pos, release)

    def apply_snapshot(self, meta: SnapshotMeta, ref: Optional[SnapRef], pos: int,
                       release: array[int]) -> Optional[SnapRef]:
        release.extend(self.positions)
        del self.positions[:]
        del self.run_starts[:]
        del self.run_terms[:]
        release.extend({p for p in (self.snap_pos, self.base_pos) if p not in (None, GUESSED)})
        old = self.snap_ref
        self.hint = None
        self.snap_meta, self.snap_ref, self.snap_pos = meta, ref, pos
        self.base_index, self.base_term, self.base_pos = meta.index, meta.term, pos
        return old

    def set_hard_state(self, hs: HardState, pos: int, release: array[int]) -> None:
        if self.hs_pos is not None:
            release.append(self.hs_pos)
        self.hard_state, self.hs_pos = hs, pos

    def put(self, key: bytes, value: bytes, pos: int, release: array[int]) -> None:
        if self.kv is None:
            self.kv = {}
        old = self.kv.get(key)
        if old is not None:
            release.append(old[1])
        self.kv[key] = (value, pos)

    def delete(self, key: bytes, release: array[int]) -> None:
        old = self.kv.pop(key, None) if self.kv else None
        if old is not None:
            release.append(old[1])

    def release_all(self, release: array[int]) -> None:
        release.extend(self.positions)
        release.extend(self.pins())


class GroupIndex:
    """All groups: group id -> GroupState; and the entries a purge rewrite
    has staged for a group but not yet adopted (purge.py)."""

    def __init__(self) -> None:
        self.groups: Dict[int, GroupState] = {}
        # group -> runs of STAGE records: (first index, terms, positions)
        self.staged: Dict[int, List[Tuple[int, "np.ndarray", "np.ndarray"]]] = {}

    def stage(self, group: int, start: int, terms: "np.ndarray", positions: "np.ndarray") -> None:
        self.staged.setdefault(group, []).append((start, terms, positions))

    def staged_from(self, group: int) -> int:
        """Position of the first staged record of `group`."""
        return int(self.staged[group][0][2][0])

    def adopt(self, group: int, first: int, last: int, stage_pos: int,
              release: array[int]) -> None:
        """An ADOPT record: entries first..last of `group` (just removed and
        given its base by the same batch) are the STAGE records at positions
        >= stage_pos.  Every other staged record of the group is released.

        Replay may find only some of them: a STAGE record's segment is
        recycled once the entry it holds is gone (compacted, say, by a later
        record), oldest first.  Then the longest run up to `last` is
        adopted above a guessed base (see GroupState._replay_prepare); the
        records that removed the rest follow in the log."""
        runs = self.staged.pop(group, [])
        if not runs:
            return
        idx = np.concatenate([np.arange(s, s + len(t), dtype=np.uint64) for s, t, _ in runs])
        terms = np.concatenate([t for _, t, _ in runs])
        pos = np.concatenate([p for _, _, p in runs])
        # pos >= stage_pos, in log order (positions wrap with the seq: see position_seq)
        after = (pos - np.uint64(stage_pos)).view(np.int64) >= 0
        take = after & (idx >= np.uint64(first)) & (idx <= np.uint64(last))
        k = np.flatnonzero(take)
        if len(k) and int(idx[k[-1]]) == last:
            gaps = np.flatnonzero(idx[k[1:]] != idx[k[:-1]] + np.uint64(1))
            k = k[int(gaps[-1]) + 1:] if len(gaps) else k
            take[:] = False
            take[k] = True
            self.get_or_create(group).append_bulk(int(idx[k[0]]), terms[k], pos[k], release)
        else:
            take[:] = False
        release.extend(pos[~take].tolist())

    def drop_staged(self, group: int) -> List[int]:
        """Forgets the group's staged records (a rewrite given up); returns
        their positions."""
        return [int(p) for _, _, ps in self.staged.pop(group, []) for p in ps]

    def get(self, group: int) -> Optional[GroupState]:
        return self.groups.get(group)

    def get_or_create(self, group: int) -> GroupState:
        st = self.groups.get(group)
        if st is None:
            st = self.groups[group] = GroupState()
        return st

    def remove(self, group: int, release: array[int]) -> Optional[SnapRef]:
        st = self.groups.pop(group, None)
        if st is None:
            return None
        st.release_all(release)
        return st.snap_ref

    def entry_count(self) -> int:
        return sum(len(st.positions) for st in self.groups.values())

    def nbytes(self) -> int:
        return sys.getsizeof(self.groups) + sum(st.nbytes() for st in self.groups.values())
