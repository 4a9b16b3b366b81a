"""WriteBatch: the operations of one atomic write, checked for types and
ranges as they are added (API.md, "Writing: batches and tickets")."""
from __future__ import annotations

from typing import Any, Iterable, List, Optional, Sequence, Tuple

from .types import (
    U64_MAX,
    HardState,
    Snapshot,
    check_bytes,
    check_entry,
    check_entry_type,
    check_hard_state,
    check_snapshot,
    check_u64,
)

# operation codes (internal); APPEND_COPIES, STAGE and ADOPT only in purge
# rewrites (purge.py)
APPEND, HARD_STATE, SNAPSHOT, COMPACT, TRUNCATE, PUT, DELETE, REMOVE, APPEND_MANY, \
    APPEND_COPIES, STAGE, ADOPT = range(12)


class WriteBatch:
    """Operations on any number of groups, applied in order, atomically.

    Each method checks its arguments' types and ranges at once (TypeError /
    ValueError); checks against the log's state happen in `Engine.write`."""

    __slots__ = ("_ops", "_nrecords")

    def __init__(self) -> None:
        self._ops: List[Tuple[Any, ...]] = []
        self._nrecords = 0

    def __len__(self) -> int:
        return len(self._ops)

    def __repr__(self) -> str:
        return f"<WriteBatch {len(self._ops)} ops>"

    def append(self, group: int, entries: Iterable[Any]) -> "WriteBatch":
        """Append entries (consecutive indexes) to `group`'s log."""
        g = group if type(group) is int and 0 <= group <= U64_MAX else check_u64(group, "group")
        es = [check_entry(e) for e in entries]
        if len(es) > 1:
            prev = es[0].index
            for e in es[1:]:
                if e.index != prev + 1:
                    raise ValueError(f"group {g}: entries must have consecutive indexes, "
                                     f"got {prev} then {e.index}")
                prev = e.index
        if es:
            self._ops.append((APPEND, g, es))
        return self

    def append_many(self, group: int, first_index: int, terms: Sequence[int],
                    payloads: Sequence[Any], types: Optional[Sequence[int]] = None) -> "WriteBatch":
        """Append len(terms) entries first_index, first_index+1, ... without
        building Entry objects: `terms` any sequence of ints (a numpy array
        works), `payloads` bytes-like objects, `types` entry types (default 0).
        The same semantics as `append`."""
        g = check_u64(group, "group")
        first = check_u64(first_index, "first_index")
        if isinstance(payloads, (bytes, bytearray, memoryview, str)):
            raise TypeError("payloads must be a sequence of bytes-like objects")
        ts = [check_u64(t, "entry term") for t in terms]
        ds = [check_bytes(p, "entry data") for p in payloads]
        ys = [0] * len(ts) if types is None else [check_entry_type(t) for t in types]
        if not len(ts) == len(ds) == len(ys):
            raise ValueError("terms, payloads and types must have the same length")
        if first + len(ts) - 1 > U64_MAX:
            raise ValueError("entry indexes would pass 2**64-1")
        if ts:
            self._ops.append((APPEND_MANY, g, first, ts, ds, ys))
        return self

    def set_hard_state(self, group: int, hs: HardState) -> "WriteBatch":
        self._ops.append((HARD_STATE, check_u64(group, "group"), check_hard_state(hs)))
        return self

    def apply_snapshot(self, group: int, snapshot: Snapshot) -> "WriteBatch":
        self._ops.append((SNAPSHOT, check_u64(group, "group"), check_snapshot(snapshot)))
        return self

    def compact(self, group: int, index: int) -> "WriteBatch":
        """Discard entries up to and including `index`."""
        self._ops.append((COMPACT, check_u64(group, "group"), check_u64(index, "compact index")))
        return self

    def truncate(self, group: int, index: int) -> "WriteBatch":
        """Discard entries with index >= `index`."""
        self._ops.append((TRUNCATE, check_u64(group, "group"), check_u64(index, "truncate index")))
        return self

    def put(self, group: int, key: bytes, value: bytes) -> "WriteBatch":
        self._ops.append((PUT, check_u64(group, "group"), check_bytes(key, "key"),
                          check_bytes(value, "value")))
        return self

    def delete(self, group: int, key: bytes) -> "WriteBatch":
        self._ops.append((DELETE, check_u64(group, "group"), check_bytes(key, "key")))
        return self

    def remove_group(self, group: int) -> "WriteBatch":
        """Remove the group and all its state, as if it was never written."""
        self._ops.append((REMOVE, check_u64(group, "group")))
        return self
