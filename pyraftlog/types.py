"""The immutable data types of the API (docs/API.md, "Data types")."""
from __future__ import annotations

import operator
from typing import NamedTuple, Tuple

U64_MAX = (1 << 64) - 1


class Entry(NamedTuple):
    """One Raft log entry.  `type`: 0 normal, 1 conf change, 2 conf change v2."""

    index: int  # type: ignore[assignment]  # shadows tuple.index, as the API has it
    term: int
    data: bytes = b""
    type: int = 0


class HardState(NamedTuple):
    """Raft's persistent state: current term, vote, commit index."""

    term: int = 0
    vote: int = 0
    commit: int = 0


class ConfState(NamedTuple):
    """Cluster membership as of a snapshot."""

    voters: Tuple[int, ...] = ()
    learners: Tuple[int, ...] = ()
    voters_outgoing: Tuple[int, ...] = ()
    learners_next: Tuple[int, ...] = ()
    auto_leave: bool = False


class SnapshotMeta(NamedTuple):
    """Index and term of the last entry a snapshot covers, and its membership."""

    index: int  # type: ignore[assignment]  # shadows tuple.index, as the API has it
    term: int
    conf_state: ConfState = ConfState()


class Snapshot(NamedTuple):
    """A snapshot: metadata plus the application's opaque data."""

    meta: SnapshotMeta
    data: bytes = b""


EMPTY_SNAPSHOT = Snapshot(SnapshotMeta(0, 0))


def check_u64(value: object, what: str) -> int:
    """`value` as a u64, or TypeError/ValueError naming `what`.  Any integer
    type (numpy's too) is accepted; bool is not."""
    if type(value) is not int:
        if isinstance(value, bool) or not hasattr(value, "__index__"):
            raise TypeError(f"{what} must be an int, not {type(value).__name__}")
        value = operator.index(value)
    if value < 0 or value > U64_MAX:
        raise ValueError(f"{what} must be in [0, 2**64-1], got {value}")
    return value


def check_entry_type(value: object) -> int:
    """An entry type: an int in [0, 255]."""
    if type(value) is not int:
        if isinstance(value, bool) or not hasattr(value, "__index__"):
            raise TypeError(f"entry type must be an int, not {type(value).__name__}")
        value = operator.index(value)
    if not 0 <= value <= 255:
        raise ValueError(f"entry type must be in [0, 255], got {value}")
    return value


def check_bytes(value: object, what: str) -> bytes:
    """Any bytes-like object as immutable bytes (copied unless already bytes)."""
    if type(value) is bytes:
        return value
    if isinstance(value, str) or not _is_buffer(value):
        raise TypeError(f"{what} must be bytes-like, not {type(value).__name__}")
    return bytes(memoryview(value).cast("B")) if isinstance(value, memoryview) else bytes(value)  # type: ignore[call-overload]


def _is_buffer(value: object) -> bool:
    try:
        memoryview(value)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


def check_entry(e: object) -> Entry:
    """A validated Entry (fields checked, data made immutable)."""
    if type(e) is Entry:  # the hot path: a well-formed Entry is returned as is
        index, term, data, etype = e
        if (type(index) is int and type(term) is int and type(data) is bytes
                and type(etype) is int and 0 <= index <= U64_MAX and 0 <= term <= U64_MAX
                and 0 <= etype <= 255):
            return e
    return _check_entry_fields(e)


def _check_entry_fields(e: object) -> Entry:
    # every tuple has .index (tuple.index): look for the Entry fields instead
    if not all(hasattr(e, f) for f in ("term", "data", "type")):
        raise TypeError(f"entries must be Entry objects, not {type(e).__name__}")
    index = check_u64(e.index, "entry index")  # type: ignore[attr-defined]
    term = check_u64(e.term, "entry term")  # type: ignore[attr-defined]
    data = check_bytes(e.data, "entry data")  # type: ignore[attr-defined]
    etype = check_entry_type(e.type)  # type: ignore[attr-defined]
    if type(e) is Entry and data is e.data and etype is e.type:
        return e
    return Entry(index, term, data, etype)


def check_conf_state(cs: object) -> ConfState:
    if not isinstance(cs, ConfState):
        raise TypeError(f"conf_state must be a ConfState, not {type(cs).__name__}")
    lists = []
    for name in ("voters", "learners", "voters_outgoing", "learners_next"):
        ids = getattr(cs, name)
        if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
            raise TypeError(f"conf_state.{name} must be a sequence of ints")
        lists.append(tuple(check_u64(i, f"conf_state.{name} id") for i in ids))
    if not isinstance(cs.auto_leave, (bool, int)):
        raise TypeError("conf_state.auto_leave must be a bool")
    return ConfState(lists[0], lists[1], lists[2], lists[3], bool(cs.auto_leave))


def check_snapshot(snap: object) -> Snapshot:
    if not isinstance(snap, Snapshot):
        raise TypeError(f"expected a Snapshot, not {type(snap).__name__}")
    meta = snap.meta
    if not isinstance(meta, SnapshotMeta):
        raise TypeError(f"snapshot.meta must be a SnapshotMeta, not {type(meta).__name__}")
    m = SnapshotMeta(check_u64(meta.index, "snapshot index"), check_u64(meta.term, "snapshot term"),
                     check_conf_state(meta.conf_state))
    return Snapshot(m, check_bytes(snap.data, "snapshot data"))


def check_hard_state(hs: object) -> HardState:
    if not isinstance(hs, HardState):
        raise TypeError(f"expected a HardState, not {type(hs).__name__}")
    return HardState(check_u64(hs.term, "hard state term"), check_u64(hs.vote, "hard state vote"),
                     check_u64(hs.commit, "hard state commit"))
