"""Plan: the records of a purge rewrite (purge.py) for the C writer, some of
them verbatim copies of existing records, and the ops (pyraftlog/ops.py)
that change the group index once they are in the log.  (A WriteBatch is
encoded as records when it is built, and checked, written and applied in C:
pyraftlog/batch.py, csrc/batch.c.)"""
from __future__ import annotations

from array import array
from typing import List, Optional, Tuple

import numpy as np

from . import record as R
from .ops import Append, Op

U32_MAX = (1 << 32) - 1


class Plan:
    """Records for prl_log_write, and the ops to apply once they are written."""

    __slots__ = ("types", "auxs", "groups", "indexes", "terms", "lens", "payloads", "ops",
                 "size", "copy_lo", "copy_src")

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

    def add_op(self, op: Op) -> None:
        """The op's record, and the op to apply once it is written."""
        index, term, payload = op.record()
        op.k = self.add(op.TYPE, op.group, index, term, payload)
        self.ops.append(op)

    def add_copies(self, op: Append, positions: array[int], lens: "np.ndarray") -> None:
        """Records that copy the records at `positions` (payload lengths
        `lens`) verbatim, retyped as `op`'s (an Append or a Stage of as many
        entries): C copies them, Python never sees their bytes.  One run of
        copies per plan."""
        assert self.copy_src is None
        n = len(positions)
        op.k = self.copy_lo = len(self.types)
        op.hi = op.k + n
        self.copy_src = array("Q", positions)
        zeros = [0] * n  # ignored by the writer for copies
        self.types.extend([op.TYPE] * n)
        for column in (self.auxs, self.groups, self.indexes, self.terms, self.lens):
            column.extend(zeros)
        self.size += R.RECORD_HEADER_SIZE * n + int(((lens.astype(np.int64) + 7) & ~7).sum())
        self.ops.append(op)

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
