"""An in-memory reference model of the pyraftlog public API (see docs/API.md).

Each group behaves like etcd-raft's ``MemoryStorage`` with the rules docs/API.md
states.  The model is written for obviousness, not speed: every batch is
applied to a deep copy of the state and only swapped in when every operation
succeeded, so a failing batch changes nothing.

Only the data types and exception classes are taken from ``pyraftlog``; all
behaviour here is independent of the engine.

A batch is a list of operations ``(name, group, *args)`` with the names of
``WriteBatch`` methods; ``ModelBatch`` records them with the same method
signatures, and ``replay`` turns them into a real ``pyraftlog.WriteBatch``.
"""

import copy

import pyraftlog
from pyraftlog import (
    CompactedError,
    ConfState,
    Entry,
    HardState,
    Snapshot,
    SnapshotMeta,
    SnapshotOutOfDateError,
    UnavailableError,
)

U64_MAX = 2**64 - 1
U8_MAX = 255
EMPTY_SNAPSHOT = Snapshot(SnapshotMeta(0, 0, ConfState()), b"")


# ---------------------------------------------------------------- validation

def check_u64(value, what):
    """Group ids, indexes and terms: int (not bool) in [0, 2**64-1]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value <= U64_MAX:
        raise ValueError(f"{what} out of range: {value}")
    return value


def check_bytes(value, what):
    """Any bytes-like object; stored and read back as ``bytes``."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes-like, not {type(value).__name__}")


def check_entry(e):
    if not isinstance(e, Entry):
        raise TypeError(f"expected Entry, got {type(e).__name__}")
    check_u64(e.index, "index")
    check_u64(e.term, "term")
    if isinstance(e.type, bool) or not isinstance(e.type, int):
        raise TypeError("entry type must be an int")
    if not 0 <= e.type <= U8_MAX:
        raise ValueError(f"entry type out of u8 range: {e.type}")
    return Entry(e.index, e.term, check_bytes(e.data, "data"), e.type)


def check_entries(entries):
    ents = [check_entry(e) for e in entries]
    for a, b in zip(ents, ents[1:]):
        if b.index != a.index + 1:
            raise ValueError("append: entries are not consecutive")
    return ents


def check_hard_state(hs):
    if not isinstance(hs, HardState):
        raise TypeError("expected HardState")
    for f in hs._fields:
        check_u64(getattr(hs, f), f)
    return hs


def check_conf_state(cs):
    if not isinstance(cs, ConfState):
        raise TypeError("expected ConfState")
    out = []
    for f in ("voters", "learners", "voters_outgoing", "learners_next"):
        out.append(tuple(check_u64(v, f) for v in getattr(cs, f)))
    if not isinstance(cs.auto_leave, bool):
        raise TypeError("auto_leave must be a bool")
    return ConfState(*out, cs.auto_leave)


def check_snapshot(snap):
    if not isinstance(snap, Snapshot) or not isinstance(snap.meta, SnapshotMeta):
        raise TypeError("expected Snapshot(SnapshotMeta(...), data)")
    m = snap.meta
    meta = SnapshotMeta(check_u64(m.index, "snapshot index"),
                        check_u64(m.term, "snapshot term"),
                        check_conf_state(m.conf_state))
    return Snapshot(meta, check_bytes(snap.data, "snapshot data"))


# ---------------------------------------------------------------- one group

class GroupModel:
    """etcd MemoryStorage: ``offset``/``offset_term`` play the dummy entry."""

    def __init__(self):
        self.offset = 0          # compaction / snapshot point; first_index-1
        self.offset_term = 0     # term(offset)
        self.ents = []           # entries offset+1 .. last_index
        self.hard_state = HardState()
        self.snap = EMPTY_SNAPSHOT   # latest applied snapshot
        self.kv = {}

    def is_fresh(self):
        """True when every read answers exactly like a never-written group."""
        return (self.offset == 0 and self.offset_term == 0 and not self.ents
                and self.hard_state == HardState() and self.snap == EMPTY_SNAPSHOT
                and not self.kv)

    # reads
    def first_index(self):
        return self.offset + 1

    def last_index(self):
        return self.offset + len(self.ents)

    def term(self, i):
        check_u64(i, "index")
        if i < self.offset:
            raise CompactedError(f"term({i}): compacted")
        if i > self.last_index():
            raise UnavailableError(f"term({i}): unavailable")
        if i == self.offset:
            return self.offset_term
        return self.ents[i - self.offset - 1].term

    def entries(self, lo, hi, max_size=None):
        check_u64(lo, "lo")
        check_u64(hi, "hi")
        if max_size is not None:
            check_u64(max_size, "max_size")
        if lo > hi:
            raise ValueError(f"entries: lo {lo} > hi {hi}")
        if lo < self.first_index():
            raise CompactedError(f"entries({lo}): compacted")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"entries(.., {hi}): unavailable")
        if lo == hi:
            return []
        ents = self.ents[lo - self.offset - 1:hi - self.offset - 1]
        if max_size is None:
            return list(ents)
        out, size = [], 0
        for e in ents:
            size += len(e.data)
            if out and size > max_size:
                break
            out.append(e)
        return out

    # writes (each either succeeds completely or raises before changing self)
    def append(self, entries):
        ents = check_entries(entries)
        if not ents:
            return
        first = self.first_index()
        if ents[-1].index < first:          # wholly compacted: no-op
            return
        if ents[0].index < first:           # drop the compacted prefix
            ents = ents[first - ents[0].index:]
        if ents[0].index > self.last_index() + 1:
            raise ValueError(f"append: gap after last index {self.last_index()}")
        keep = ents[0].index - self.offset - 1
        self.ents = self.ents[:keep] + ents

    def truncate(self, i):
        check_u64(i, "index")
        if i < self.first_index():
            raise CompactedError(f"truncate({i}): compacted")
        if i > self.last_index():
            return
        self.ents = self.ents[:i - self.offset - 1]

    def compact(self, i):
        check_u64(i, "index")
        if i <= self.offset:
            raise CompactedError(f"compact({i}): already compacted")
        if i > self.last_index():
            raise ValueError(f"compact({i}): beyond last index {self.last_index()}")
        term = self.term(i)
        self.ents = self.ents[i - self.offset:]
        self.offset, self.offset_term = i, term

    def apply_snapshot(self, snap):
        snap = check_snapshot(snap)
        m = snap.meta
        bootstrap = (m.index == 0 and m.term == 0 and not snap.data
                     and self.offset == 0 and not self.ents
                     and self.snap.meta.index == 0)
        if m.index <= self.offset and not bootstrap:
            raise SnapshotOutOfDateError(
                f"snapshot {m.index} not above {self.offset}")
        self.snap = snap
        self.offset, self.offset_term = m.index, m.term
        self.ents = []

    def set_hard_state(self, hs):
        self.hard_state = check_hard_state(hs)

    def put(self, key, value):
        self.kv[check_bytes(key, "key")] = check_bytes(value, "value")

    def delete(self, key):
        self.kv.pop(check_bytes(key, "key"), None)


# ---------------------------------------------------------------- the engine

class ModelBatch:
    """Records operations with the signatures of ``pyraftlog.WriteBatch``."""

    def __init__(self):
        self.ops = []

    def append(self, group, entries):
        self.ops.append(("append", group, list(entries)))

    def set_hard_state(self, group, hs):
        self.ops.append(("set_hard_state", group, hs))

    def apply_snapshot(self, group, snap):
        self.ops.append(("apply_snapshot", group, snap))

    def compact(self, group, index):
        self.ops.append(("compact", group, index))

    def truncate(self, group, index):
        self.ops.append(("truncate", group, index))

    def put(self, group, key, value):
        self.ops.append(("put", group, key, value))

    def delete(self, group, key):
        self.ops.append(("delete", group, key))

    def remove_group(self, group):
        self.ops.append(("remove_group", group))


def replay(ops, batch=None):
    """Add ``ops`` to ``batch`` (a new ``pyraftlog.WriteBatch`` by default)."""
    if batch is None:
        batch = pyraftlog.WriteBatch()
    for name, *args in ops:
        getattr(batch, name)(*args)
    return batch


class Model:
    """The whole multi-group store, with the engine's read methods."""

    def __init__(self):
        self._groups = {}
        # groups written since creation or their last removal: the engine may
        # list these in groups() even when their state equals a fresh group's.
        self.touched = set()

    def copy(self):
        return copy.deepcopy(self)

    def batch(self):
        return ModelBatch()

    def write(self, batch):
        """Apply a ModelBatch or list of ops atomically; raise and change nothing on error."""
        ops = batch.ops if isinstance(batch, ModelBatch) else list(batch)
        new = self.copy()
        for name, group, *args in ops:
            check_u64(group, "group")
            if name == "remove_group":
                new._groups.pop(group, None)
                new.touched.discard(group)
                continue
            if name not in ("append", "set_hard_state", "apply_snapshot", "compact",
                            "truncate", "put", "delete"):
                raise AttributeError(name)
            g = new._groups.setdefault(group, GroupModel())
            getattr(g, name)(*args)
            new.touched.add(group)
        self._groups, self.touched = new._groups, new.touched

    # reads
    def _g(self, group):
        check_u64(group, "group")
        return self._groups.get(group) or GroupModel()

    def first_index(self, g):
        return self._g(g).first_index()

    def last_index(self, g):
        return self._g(g).last_index()

    def term(self, g, i):
        return self._g(g).term(i)

    def entries(self, g, lo, hi, max_size=None):
        return self._g(g).entries(lo, hi, max_size)

    def initial_state(self, g):
        grp = self._g(g)
        return (grp.hard_state, grp.snap.meta.conf_state)

    def snapshot(self, g):
        return self._g(g).snap

    def get(self, g, key):
        return self._g(g).kv.get(bytes(key))

    def keys(self, g):
        return sorted(self._g(g).kv)

    def groups(self):
        """Groups whose state differs from a fresh group's: the least groups() must list."""
        return sorted(g for g, grp in self._groups.items() if not grp.is_fresh())

    def groups_upper_bound(self):
        """The most groups() may list (everything written and not removed)."""
        return sorted(self.touched)


# ---------------------------------------------------------------- observing

API_ERRORS = (CompactedError, UnavailableError, SnapshotOutOfDateError)


STATIC_CHECKS = {
    "append": lambda entries: check_entries(entries),
    "set_hard_state": check_hard_state,
    "apply_snapshot": check_snapshot,
    "compact": lambda i: check_u64(i, "index"),
    "truncate": lambda i: check_u64(i, "index"),
    "put": lambda k, v: (check_bytes(k, "key"), check_bytes(v, "value")),
    "delete": lambda k: check_bytes(k, "key"),
    "remove_group": lambda: None,
}


def static_error(op):
    """The error an operation raises whatever the state (bad types, ranges,
    non-consecutive entries), or None.  An engine may raise it as soon as the
    operation is added to a batch, so a batch with several invalid operations
    may fail with any of these instead of the model's (first) error."""
    name, group, *args = op
    try:
        check_u64(group, "group")
        STATIC_CHECKS[name](*args)
    except Exception as exc:  # noqa: BLE001
        return error_name(exc)
    return None


def error_name(exc):
    """The API-level class of an exception, for comparing engine and model."""
    for cls in API_ERRORS:
        if isinstance(exc, cls):
            return cls.__name__
    for cls in (TypeError, ValueError):
        if isinstance(exc, cls):
            return cls.__name__
    return f"unexpected {type(exc).__name__}: {exc}"


def outcome(fn, *args, **kwargs):
    """The result of a call, or ``("raised", ErrorName)``."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - recorded and compared
        return ("raised", error_name(exc))


def observe(reader, g, keys=(), max_sizes=()):
    """Everything a user can read about group ``g`` from ``reader``.

    ``reader`` is a Model, an Engine, or an engine's ``group(g)`` view
    (pass ``g=None`` for a view).  Reads that should fail are recorded as
    the error's class name.
    """
    call = (lambda name, *a, **k: outcome(getattr(reader, name), *a, **k)) if g is None \
        else (lambda name, *a, **k: outcome(getattr(reader, name), g, *a, **k))
    first, last = call("first_index"), call("last_index")
    out = {"first_index": first, "last_index": last,
           "initial_state": call("initial_state"), "snapshot": call("snapshot")}
    if isinstance(first, int) and isinstance(last, int):
        out["terms"] = [(i, call("term", i)) for i in range(max(0, first - 2), last + 2)]
        out["entries"] = call("entries", first, last + 1)
        out["entries_empty_at_end"] = call("entries", last + 1, last + 1)
        out["entries_unavailable"] = call("entries", first, last + 2)
        out["entries_reversed"] = call("entries", first + 1, first)
        out["entries_compacted"] = call("entries", first - 1, last + 1)
        for m in max_sizes:
            out[f"entries_max_{m}"] = call("entries", first, last + 1, max_size=m)
    for k in keys:
        out[("get", k)] = call("get", k)
    return out
