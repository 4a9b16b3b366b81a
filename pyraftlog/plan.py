"""Records built field by field, and the index changes they make: a `Plan`
holds the records of a purge rewrite (purge.py) for the C writer, some of
them verbatim copies of existing records, and the `Op`s that `apply_ops`
makes to the group index once they are in the log.  Recovery builds the
same `Op`s from scanned records, so a write and its replay change the index
in the same way.  (A WriteBatch is encoded as records when it is built and
checked, written and applied in C: pyraftlog/batch.py, csrc/batch.c.)"""
from __future__ import annotations

from array import array
from typing import Any, List, Optional, Tuple

import numpy as np

from . import record as R
from .group_index import GroupIndex, SnapRef

Op = Tuple[Any, ...]  # (kind, group, args..., record number)
# op kinds: what a record does to the index (purge rewrites and recovery
# replay build them; a WriteBatch's records are applied in C, csrc/batch.c)
APPEND, HARD_STATE, SNAPSHOT, COMPACT, TRUNCATE, PUT, DELETE, REMOVE, APPEND_COPIES, STAGE, \
    ADOPT = range(11)
U32_MAX = (1 << 32) - 1


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


def apply_ops(index: GroupIndex, ops: List[Op], positions: Any, release: array[int],
              superseded: List[Tuple[int, SnapRef]]) -> None:
    """Apply planned (or replayed) ops; `positions[k]` is record k's position.

    Positions of records that stop being needed go to `release` (or, for
    what C drops, to the index's release list: GroupIndex.flush_release);
    snapshot files that stop being referenced go to `superseded` as (group,
    ref)."""
    for op in ops:
        kind, g = op[0], op[1]
        if kind == APPEND:
            if op[5] - op[4] == 1:  # the Ready-loop case
                index.append_one(g, op[2], op[3][0], positions[op[4]])
            else:
                index.append(g, op[2], op[3], positions[op[4]:op[5]])
        elif kind == APPEND_COPIES:  # terms as a numpy array
            index.append(g, op[2], op[3], np.frombuffer(positions, np.uint64)[op[4]:op[5]])
        elif kind == STAGE:
            index.stage(g, op[2], np.asarray(op[3], np.uint64),
                        np.frombuffer(positions, np.uint64)[op[4]:op[5]].copy())
        elif kind == ADOPT:
            index.adopt(g, op[2], op[3], op[4], release)
            release.append(positions[op[5]])
        elif kind == HARD_STATE:
            index.set_hard_state(g, op[2], positions[op[3]])
        elif kind == SNAPSHOT:
            old = index.apply_snapshot(g, op[2], op[3], positions[op[4]])
            if old is not None:
                superseded.append((g, old))
        elif kind == COMPACT:
            index.compact(g, op[2], op[3], positions[op[4]])
        elif kind == TRUNCATE:
            index.truncate(g, op[2])
            release.append(positions[op[3]])
        elif kind == PUT:
            index.put(g, op[2], op[3], positions[op[4]], release)
        elif kind == DELETE:
            index.delete(g, op[2], release)
            release.append(positions[op[3]])
        elif kind == REMOVE:
            old = index.remove(g, release)
            if old is not None:
                superseded.append((g, old))
            release.append(positions[op[2]])
