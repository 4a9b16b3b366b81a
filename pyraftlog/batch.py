"""WriteBatch: the operations of one atomic write, checked for types and
ranges as they are added (API.md, "Writing: batches and tickets")."""
from __future__ import annotations

from typing import Any, Iterable, List, Tuple

from .types import (U64_MAX, HardState, Snapshot, check_bytes, check_entry, check_hard_state,
                    check_snapshot, check_u64)

# operation codes (internal)
APPEND, HARD_STATE, SNAPSHOT, COMPACT, TRUNCATE, PUT, DELETE, REMOVE = range(8)


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
