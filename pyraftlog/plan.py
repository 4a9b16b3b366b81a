"""Planning a write: a WriteBatch checked against the log's current state and
turned into records, without changing anything.

`plan_batch` walks the operations in order over per-group drafts (what a group
looks like part-way through the batch), raises the API's error for the first
invalid one, and otherwise returns the records for the C writer plus the
`Op`s that `apply_ops` replays into the group index once the records are in
the log.  Recovery builds the same `Op`s from scanned records, so a write and
its replay change the index in exactly the same way."""
from __future__ import annotations

from array import array
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import batch as B
from . import record as R
from .errors import CompactedError, SnapshotOutOfDateError
from .group_index import GroupIndex, SnapRef
from .types import Snapshot

Op = Tuple[Any, ...]  # (kind, group, args..., record number)
U32_MAX = (1 << 32) - 1


class Draft:
    """A group's shape during planning: base point, last index, and the terms
    of entries this batch appended; the committed group in the index below
    it is read, never changed."""

    __slots__ = ("index", "g", "base_index", "base_term", "last", "limit", "new_start",
                 "new_terms", "snap_index")

    def __init__(self, index: Optional[GroupIndex], g: int) -> None:
        """The committed state of group g in `index` (None: a new group)."""
        self.index, self.g = index, g
        self.new_start = 0
        self.new_terms: List[int] = []
        b = index.bounds(g) if index is not None else None
        if b is None:
            self.base_index = self.base_term = self.last = 0
            self.limit = 0
            self.snap_index = 0
        else:
            self.base_index, self.base_term, self.last = b
            self.limit = self.last + 1  # committed entries below this are still there
            self.snap_index = index.snap_index(g)  # type: ignore[union-attr]

    @property
    def empty(self) -> bool:
        """No entries and no snapshot: where a bootstrap snapshot may go."""
        return self.base_index == 0 and self.last == 0 and self.snap_index == 0

    def term(self, i: int) -> int:
        if i == self.base_index:
            return self.base_term
        if self.new_terms and i >= self.new_start:
            return self.new_terms[i - self.new_start]
        assert self.index is not None and i < self.limit
        t = self.index.term(self.g, i)
        assert t is not None
        return t

    def truncate_to(self, j: int) -> None:
        """Keep entries <= j."""
        if self.new_terms and j >= self.new_start - 1:
            del self.new_terms[j - self.new_start + 1:]
        else:
            self.new_terms = []
            self.limit = min(self.limit, j + 1)
        self.last = j

    def append(self, start: int, terms: List[int]) -> None:
        self.truncate_to(start - 1)
        if not self.new_terms:
            self.new_start = start
        self.new_terms.extend(terms)
        self.last = start + len(terms) - 1

    def reset(self, base_index: int, base_term: int) -> None:
        """After a snapshot at base_index: no entries."""
        self.base_index, self.base_term, self.last = base_index, base_term, base_index
        self.snap_index = base_index
        self.new_terms = []
        self.limit = 0


class Plan:
    """Records for prl_log_write, the snapshot files to store first, and the
    Ops to apply afterwards."""

    __slots__ = ("types", "auxs", "groups", "indexes", "terms", "lens", "payloads", "ops",
                 "snapshot_files", "size", "copy_lo", "copy_src")

    def __init__(self) -> None:
        # plain lists while planning (list.append is the cheapest), turned into
        # C arrays once by `arrays()`
        self.types: List[int] = []
        self.auxs: List[int] = []
        self.groups: List[int] = []
        self.indexes: List[int] = []
        self.terms: List[int] = []
        self.lens: List[int] = []
        self.payloads: List[bytes] = []
        self.ops: List[Op] = []
        self.snapshot_files: List[Tuple[int, int, bytes]] = []  # (group, file_id, data)
        self.size = R.BATCH_HEADER_SIZE
        # records copy_lo.. are verbatim copies of the records at copy_src
        self.copy_lo = 0
        self.copy_src: Optional[array[int]] = None

    def add(self, rtype: int, group: int, index: int = 0, term: int = 0, payload: bytes = b"",
            aux: int = 0) -> int:
        if len(payload) > U32_MAX:
            raise ValueError("a record payload must be smaller than 4 GiB")
        self.types.append(rtype)
        self.auxs.append(aux)
        self.groups.append(group)
        self.indexes.append(index)
        self.terms.append(term)
        self.lens.append(len(payload))
        self.payloads.append(payload)
        self.size += R.record_size(len(payload))
        return len(self.types) - 1

    def add_copies(self, positions: array[int], lens: "np.ndarray", retype: int = 0) -> int:
        """Records that copy the records at `positions` (payload lengths
        `lens`) verbatim, with type `retype` if not 0: C copies them, Python
        never sees their bytes.  One run of copies per plan.  Returns the
        first one's record number."""
        assert self.copy_src is None
        n = len(positions)
        lo = self.copy_lo = len(self.types)
        self.copy_src = array("Q", positions)
        zeros = [0] * n  # ignored by the writer for copies
        self.types.extend([retype] * n)
        for column in (self.auxs, self.groups, self.indexes, self.terms, self.lens):
            column.extend(zeros)
        self.size += R.RECORD_HEADER_SIZE * n + int(((lens.astype(np.int64) + 7) & ~7).sum())
        return lo

    def arrays(self) -> Tuple[array[int], array[int], array[int], array[int], array[int],
                              array[int]]:
        return (array("B", self.types), array("B", self.auxs), array("Q", self.groups),
                array("Q", self.indexes), array("Q", self.terms), array("I", self.lens))

    def copies(self) -> Optional[array[int]]:
        """copies[k]: position record k copies, or 0 (for prl_log_write)."""
        if self.copy_src is None:
            return None
        out = array("Q", bytes(8 * len(self.types)))
        out[self.copy_lo:self.copy_lo + len(self.copy_src)] = self.copy_src
        return out


def plan_batch(index: GroupIndex, wb: "B.WriteBatch", next_lsn: Callable[[], int],
               crc32c: Any) -> Plan:
    """Check `wb` against `index` and plan its records; raises the API's error
    for the first invalid operation.  `crc32c(bytes) -> int` checksums
    snapshot data; snapshot file ids are `next_lsn() << 16 | k`."""
    plan = Plan()
    drafts: Dict[int, Draft] = {}
    for op in wb._ops:
        kind, g = op[0], op[1]
        d = drafts.get(g)
        if d is None:
            d = drafts[g] = Draft(index, g)
        if kind == B.APPEND:
            _plan_append(plan, d, g, op[2])
        elif kind == B.APPEND_MANY:
            _plan_append_many(plan, d, g, op[2], op[3], op[4], op[5])
        elif kind == B.HARD_STATE:
            hs = op[2]
            rec = plan.add(R.HARD_STATE, g, hs.commit, hs.term, R.encode_hard_state(hs))
            plan.ops.append((B.HARD_STATE, g, hs, rec))
        elif kind == B.SNAPSHOT:
            _plan_snapshot(plan, d, g, op[2], next_lsn, crc32c)
        elif kind == B.COMPACT:
            i = op[2]
            if i <= d.base_index:
                raise CompactedError(f"group {g}: compact {i}: already compacted to {d.base_index}")
            if i > d.last:
                raise ValueError(f"group {g}: compact {i} is above the last index {d.last}")
            t = d.term(i)
            rec = plan.add(R.COMPACT, g, i, t)
            plan.ops.append((B.COMPACT, g, i, t, rec))
            d.base_index, d.base_term = i, t
        elif kind == B.TRUNCATE:
            i = op[2]
            if i <= d.base_index:
                raise CompactedError(f"group {g}: truncate {i}: entries up to {d.base_index} "
                                     "are compacted")
            if i <= d.last:
                rec = plan.add(R.TRUNCATE, g, i)
                plan.ops.append((B.TRUNCATE, g, i, rec))
                d.truncate_to(i - 1)
        elif kind == B.PUT:
            rec = plan.add(R.KV_PUT, g, payload=R.encode_kv(op[2], op[3]))
            plan.ops.append((B.PUT, g, op[2], op[3], rec))
        elif kind == B.DELETE:
            rec = plan.add(R.KV_DELETE, g, payload=op[2])
            plan.ops.append((B.DELETE, g, op[2], rec))
        elif kind == B.REMOVE:
            rec = plan.add(R.REMOVE_GROUP, g)
            plan.ops.append((B.REMOVE, g, rec))
            drafts[g] = Draft(None, g)
        else:  # pragma: no cover - WriteBatch only makes the kinds above
            raise AssertionError(kind)
    return plan


def _plan_append(plan: Plan, d: Draft, g: int, entries: List[Any]) -> None:
    if entries[0].index <= d.base_index:  # entries at or below the compaction point are ignored
        entries = entries[d.base_index + 1 - entries[0].index:]
        if not entries:
            return
    start = entries[0].index
    if len(entries) == 1:  # the Ready-loop case: one new entry per group
        e = entries[0]
        _plan_entries(plan, d, g, start, [e.term], [e.data], [e.type])
    else:
        _plan_entries(plan, d, g, start, [e.term for e in entries], [e.data for e in entries],
                      [e.type for e in entries])


def _plan_append_many(plan: Plan, d: Draft, g: int, start: int, terms: List[int],
                      datas: List[bytes], types: List[int]) -> None:
    if start <= d.base_index:
        skip = d.base_index + 1 - start
        terms, datas, types, start = terms[skip:], datas[skip:], types[skip:], start + skip
        if not terms:
            return
    _plan_entries(plan, d, g, start, terms, datas, types)


def _plan_entries(plan: Plan, d: Draft, g: int, start: int, terms: List[int],
                  datas: List[bytes], types: List[int]) -> None:
    """Records for entries start.. of group g (none at or below the base)."""
    if start > d.last + 1:
        raise ValueError(f"group {g}: entries start at {start}, leaving a gap after the last "
                         f"index {d.last}")
    n = len(terms)
    lo = len(plan.types)
    if n == 1:  # the Ready-loop case: one new entry per group
        data = datas[0]
        ln = len(data)
        if ln > U32_MAX:
            raise ValueError("an entry must be smaller than 4 GiB")
        plan.types.append(R.ENTRY)
        plan.auxs.append(types[0])
        plan.groups.append(g)
        plan.indexes.append(start)
        plan.terms.append(terms[0])
        plan.lens.append(ln)
        plan.payloads.append(data)
        plan.size += R.RECORD_HEADER_SIZE + ((ln + 7) & ~7)
    else:
        lens = [len(x) for x in datas]
        if max(lens) > U32_MAX:
            raise ValueError("an entry must be smaller than 4 GiB")
        plan.types.extend([R.ENTRY] * n)
        plan.auxs.extend(types)
        plan.groups.extend([g] * n)
        plan.indexes.extend(range(start, start + n))
        plan.terms.extend(terms)
        plan.lens.extend(lens)
        plan.payloads.extend(datas)
        plan.size += R.RECORD_HEADER_SIZE * n + sum((x + 7) & ~7 for x in lens)
    plan.ops.append((B.APPEND, g, start, terms, lo, lo + n))
    if start == d.last + 1 and not d.new_terms:  # plain append: nothing to cut
        d.new_start = start
        d.new_terms = list(terms)
        d.last = start + n - 1
    else:
        d.append(start, terms)


def _plan_snapshot(plan: Plan, d: Draft, g: int, snap: Snapshot, next_lsn: Callable[[], int],
                   crc32c: Any) -> None:
    meta = snap.meta
    # API.md: index 0 carrying only a ConfState (no term, no data) on an empty group
    bootstrap = meta.index == 0 and meta.term == 0 and not snap.data and d.empty
    if meta.index <= d.base_index and not bootstrap:
        raise SnapshotOutOfDateError(f"group {g}: snapshot at {meta.index} is not newer than "
                                     f"{d.base_index}")
    ref: Optional[SnapRef] = None
    if snap.data:
        file_id = next_lsn() << 16 | len(plan.snapshot_files)
        if len(plan.snapshot_files) >= 1 << 16:
            raise ValueError("too many snapshots with data in one batch")
        ref = (len(snap.data), file_id, crc32c(snap.data))
        plan.snapshot_files.append((g, file_id, snap.data))
    size, file_id, crc = ref if ref else (0, 0, 0)
    payload = R.encode_snapshot(meta.conf_state, size, file_id, crc)
    rec = plan.add(R.SNAPSHOT, g, meta.index, meta.term, payload)
    plan.ops.append((B.SNAPSHOT, g, meta, ref, rec))
    d.reset(meta.index, meta.term)


def apply_ops(index: GroupIndex, ops: List[Op], positions: Any, release: array[int],
              superseded: List[Tuple[int, SnapRef]]) -> None:
    """Apply planned (or replayed) ops; `positions[k]` is record k's position.

    Positions of records that stop being needed go to `release` (or, for
    what C drops, to the index's release list: GroupIndex.flush_release);
    snapshot files that stop being referenced go to `superseded` as (group,
    ref)."""
    for op in ops:
        kind, g = op[0], op[1]
        if kind == B.APPEND:
            if op[5] - op[4] == 1:  # the Ready-loop case
                index.append_one(g, op[2], op[3][0], positions[op[4]])
            else:
                index.append(g, op[2], op[3], positions[op[4]:op[5]])
        elif kind == B.APPEND_COPIES:  # terms as a numpy array
            index.append(g, op[2], op[3], np.frombuffer(positions, np.uint64)[op[4]:op[5]])
        elif kind == B.STAGE:
            index.stage(g, op[2], np.asarray(op[3], np.uint64),
                        np.frombuffer(positions, np.uint64)[op[4]:op[5]].copy())
        elif kind == B.ADOPT:
            index.adopt(g, op[2], op[3], op[4], release)
            release.append(positions[op[5]])
        elif kind == B.HARD_STATE:
            index.set_hard_state(g, op[2], positions[op[3]])
        elif kind == B.SNAPSHOT:
            old = index.apply_snapshot(g, op[2], op[3], positions[op[4]])
            if old is not None:
                superseded.append((g, old))
        elif kind == B.COMPACT:
            index.compact(g, op[2], op[3], positions[op[4]])
        elif kind == B.TRUNCATE:
            index.truncate(g, op[2])
            release.append(positions[op[3]])
        elif kind == B.PUT:
            index.put(g, op[2], op[3], positions[op[4]], release)
        elif kind == B.DELETE:
            index.delete(g, op[2], release)
            release.append(positions[op[3]])
        elif kind == B.REMOVE:
            old = index.remove(g, release)
            if old is not None:
                superseded.append((g, old))
            release.append(positions[op[2]])
