"""Ops: what each record type does, in one table (`RECORDS`).

Each record type has one Op class that knows how to
  - build its record (`record()`: index, term, payload: the encoding),
  - come back from a scanned record (`decode`),
  - change the group index once its record is in the log (`apply`),
  - say what a record holds (`describe`: JSON fields and a line of text,
    for `pyraftlog dump`).
A WriteBatch's records are checked and applied by C with the same rules
(csrc/batch.c); purge plans (plan.py) and recovery's replay of the record
types C leaves to Python use these classes."""
from __future__ import annotations

from array import array
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Type

import numpy as np

from . import record as R
from .group_index import GroupIndex, SnapRef
from .types import ConfState, HardState, SnapshotMeta

Fields = Tuple[Dict[str, Any], str]  # (JSON fields, one line of text)


class Applied:
    """Where applying ops leaves what they free: positions of records no
    longer needed (live-byte accounting), and (group, ref) of snapshot files
    no longer referenced."""

    __slots__ = ("index", "positions", "release", "superseded")

    def __init__(self, index: GroupIndex, positions: Any) -> None:
        self.index = index
        self.positions = positions  # positions[k]: record k's position
        self.release: array[int] = array("Q")
        self.superseded: List[Tuple[int, SnapRef]] = []

    def pos(self, k: int) -> int:
        return int(self.positions[k])

    def span(self, lo: int, hi: int) -> "np.ndarray":
        return np.frombuffer(self.positions, np.uint64)[lo:hi]


class Op:
    """An index change made by record number `k` (of its batch or plan)."""

    __slots__ = ("group", "k")
    TYPE: ClassVar[int]
    EMPTY: ClassVar[bool] = False  # its records have no payload

    def __init__(self, group: int, k: int = -1) -> None:
        self.group, self.k = group, k

    def record(self) -> Tuple[int, int, bytes]:
        """The record's (index, term, payload)."""
        return 0, 0, b""

    @classmethod
    def decode(cls, g: int, index: int, term: int, payload: bytes, k: int) -> "Op":
        """The op of a scanned record; ValueError if its payload is malformed."""
        return cls(g, k)

    def apply(self, a: Applied) -> None:
        """The whole change, to the C index and to what Python keeps."""
        raise NotImplementedError

    def keep(self, a: Applied) -> None:
        """The part of the change Python keeps, once C applied the rest (a
        WriteBatch: csrc/batch.c); nothing for most record types."""

    def fields(self) -> Fields:
        return {}, ""

    @classmethod
    def describe(cls, aux: int, index: int, term: int, payload: bytes, limit: int,
                 full: int) -> Fields:
        """What a record holds (payloads of entries arrive cut to `limit`
        bytes of `full`); a malformed payload is described, not raised."""
        try:
            if cls.EMPTY and payload:
                raise ValueError(f"unexpected {full}-byte payload")
            return cls.decode(0, index, term, payload, 0).fields()
        except ValueError as exc:
            return {"payload_error": str(exc)}, f"<invalid payload: {exc}>"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(group={self.group}, k={self.k}, {self.fields()[1]})"


def short_bytes(data: bytes, limit: int, full: int) -> str:
    """repr of `data` (the first `limit` bytes of `full`; limit < 0: all)."""
    shown = data if limit < 0 else data[:limit]
    return repr(shown) + (f"...(+{full - len(shown)})" if full > len(shown) else "")


class Append(Op):
    """Entries start.. of a group, records lo..hi-1 (terms: their terms)."""

    __slots__ = ("start", "terms", "hi")
    TYPE = R.ENTRY

    def __init__(self, group: int, start: int, terms: Any, k: int = -1,
                 hi: int = -1) -> None:  # terms: a sequence or a uint64 array
        super().__init__(group, k)
        self.start, self.terms, self.hi = start, terms, hi

    @classmethod
    def decode(cls, g: int, index: int, term: int, payload: bytes, k: int) -> "Op":
        return cls(g, index, [term], k, k + 1)

    def apply(self, a: Applied) -> None:
        a.index.append(self.group, self.start, self.terms, a.span(self.k, self.hi))

    @classmethod
    def describe(cls, aux: int, index: int, term: int, payload: bytes, limit: int,
                 full: int) -> Fields:
        return ({"entry_type": aux, "data_hex": payload.hex(),
                 "data_truncated": len(payload) < full},
                f"type={aux} data={short_bytes(payload, limit, full)}")


class Stage(Append):
    """Entries copied forward by a purge rewrite: they count once an Adopt
    names them (replay ignores staged records no Adopt took)."""

    __slots__ = ()
    TYPE = R.STAGE

    def apply(self, a: Applied) -> None:
        a.index.stage(self.group, self.start, np.asarray(self.terms, np.uint64),
                      a.span(self.k, self.hi).copy())


class SetHardState(Op):
    __slots__ = ("hs",)
    TYPE = R.HARD_STATE

    def __init__(self, group: int, hs: HardState, k: int = -1) -> None:
        super().__init__(group, k)
        self.hs = hs

    def record(self) -> Tuple[int, int, bytes]:
        return self.hs.commit, self.hs.term, R.encode_hard_state(self.hs)

    @classmethod
    def decode(cls, g: int, index: int, term: int, payload: bytes, k: int) -> "Op":
        return cls(g, R.decode_hard_state(term, index, payload), k)

    def apply(self, a: Applied) -> None:
        a.index.set_hard_state(self.group, self.hs, a.pos(self.k))

    def fields(self) -> Fields:
        hs = self.hs
        return {"vote": hs.vote, "commit": hs.commit}, f"vote={hs.vote} commit={hs.commit}"


class SetSnapshot(Op):
    """Snapshot metadata; `ref` names its data file (None: no data)."""

    __slots__ = ("meta", "ref")
    TYPE = R.SNAPSHOT

    def __init__(self, group: int, meta: SnapshotMeta, ref: Optional[SnapRef],
                 k: int = -1) -> None:
        super().__init__(group, k)
        self.meta, self.ref = meta, ref

    def record(self) -> Tuple[int, int, bytes]:
        m = self.meta
        return m.index, m.term, R.encode_snapshot(m.conf_state, *(self.ref or (0, 0, 0)))

    @classmethod
    def decode(cls, g: int, index: int, term: int, payload: bytes, k: int) -> "Op":
        cs, size, file_id, crc = R.decode_snapshot(payload)
        return cls(g, SnapshotMeta(index, term, cs), (size, file_id, crc) if size else None, k)

    def apply(self, a: Applied) -> None:
        old = a.index.apply_snapshot(self.group, self.meta, self.ref, a.pos(self.k))
        if old is not None:
            a.superseded.append((self.group, old))

    def keep(self, a: Applied) -> None:
        old = a.index.set_snapshot(self.group, self.meta, self.ref)
        if old is not None:
            a.superseded.append((self.group, old))

    def fields(self) -> Fields:
        cs: ConfState = self.meta.conf_state
        lists = {"voters": list(cs.voters), "learners": list(cs.learners),
                 "voters_outgoing": list(cs.voters_outgoing),
                 "learners_next": list(cs.learners_next)}
        text = " ".join(f"{k}={v}" for k, v in lists.items() if v or k == "voters")
        text += " auto_leave" if cs.auto_leave else ""
        size, file_id, crc = self.ref or (0, 0, 0)
        if size:
            text += f" data_size={size} file={file_id:016x} crc={crc:08x}"
        return dict(lists, auto_leave=cs.auto_leave, data_size=size, file_id=file_id,
                    data_crc=crc), text


class Compact(Op):
    """Entries up to `index` (of term `term`) are gone."""

    __slots__ = ("index", "term")
    TYPE = R.COMPACT
    EMPTY = True

    def __init__(self, group: int, index: int, term: int, k: int = -1) -> None:
        super().__init__(group, k)
        self.index, self.term = index, term

    def record(self) -> Tuple[int, int, bytes]:
        return self.index, self.term, b""

    @classmethod
    def decode(cls, g: int, index: int, term: int, payload: bytes, k: int) -> "Op":
        return cls(g, index, term, k)

    def apply(self, a: Applied) -> None:
        a.index.compact(self.group, self.index, self.term, a.pos(self.k))


class Truncate(Op):
    """Entries from `index` on are gone."""

    __slots__ = ("index",)
    TYPE = R.TRUNCATE
    EMPTY = True

    def __init__(self, group: int, index: int, k: int = -1) -> None:
        super().__init__(group, k)
        self.index = index

    def record(self) -> Tuple[int, int, bytes]:
        return self.index, 0, b""

    @classmethod
    def decode(cls, g: int, index: int, term: int, payload: bytes, k: int) -> "Op":
        return cls(g, index, k)

    def apply(self, a: Applied) -> None:
        a.index.truncate(self.group, self.index)
        a.release.append(a.pos(self.k))


class Put(Op):
    __slots__ = ("key", "value")
    TYPE = R.KV_PUT

    def __init__(self, group: int, key: bytes, value: bytes, k: int = -1) -> None:
        super().__init__(group, k)
        self.key, self.value = key, value

    def record(self) -> Tuple[int, int, bytes]:
        return 0, 0, R.encode_kv(self.key, self.value)

    @classmethod
    def decode(cls, g: int, index: int, term: int, payload: bytes, k: int) -> "Op":
        return cls(g, *R.decode_kv(payload), k)

    def apply(self, a: Applied) -> None:
        a.index.put(self.group, self.key, self.value, a.pos(self.k), a.release)

    def keep(self, a: Applied) -> None:
        a.index.kv_put(self.group, self.key, self.value, a.pos(self.k), a.release)

    def fields(self) -> Fields:
        return self.describe_kv(-1)

    def describe_kv(self, limit: int) -> Fields:
        key, value = self.key, self.value
        return ({"key_hex": key.hex(), "value_hex": value.hex()},
                f"key={short_bytes(key, limit, len(key))} "
                f"value={short_bytes(value, limit, len(value))}")

    @classmethod
    def describe(cls, aux: int, index: int, term: int, payload: bytes, limit: int,
                 full: int) -> Fields:
        try:
            op = cls.decode(0, index, term, payload, 0)
        except ValueError as exc:
            return {"payload_error": str(exc)}, f"<invalid payload: {exc}>"
        assert isinstance(op, Put)
        return op.describe_kv(limit)


class Delete(Op):
    __slots__ = ("key",)
    TYPE = R.KV_DELETE

    def __init__(self, group: int, key: bytes, k: int = -1) -> None:
        super().__init__(group, k)
        self.key = key

    def record(self) -> Tuple[int, int, bytes]:
        return 0, 0, self.key

    @classmethod
    def decode(cls, g: int, index: int, term: int, payload: bytes, k: int) -> "Op":
        return cls(g, bytes(payload), k)

    def apply(self, a: Applied) -> None:
        a.index.delete(self.group, self.key, a.release)
        a.release.append(a.pos(self.k))

    def keep(self, a: Applied) -> None:  # C released the record itself
        a.index.kv_delete(self.group, self.key, a.release)

    def fields(self) -> Fields:
        return {"key_hex": self.key.hex()}, f"key={short_bytes(self.key, -1, len(self.key))}"

    @classmethod
    def describe(cls, aux: int, index: int, term: int, payload: bytes, limit: int,
                 full: int) -> Fields:
        return {"key_hex": payload.hex()}, f"key={short_bytes(payload, limit, full)}"


class Remove(Op):
    """The group and everything it held are gone."""

    __slots__ = ()
    TYPE = R.REMOVE_GROUP
    EMPTY = True

    def apply(self, a: Applied) -> None:
        old = a.index.remove(self.group, a.release)
        if old is not None:
            a.superseded.append((self.group, old))
        a.release.append(a.pos(self.k))

    def keep(self, a: Applied) -> None:  # C removed the group and released the record
        old = a.index.forget(self.group, a.release)
        if old is not None:
            a.superseded.append((self.group, old))


class Adopt(Op):
    """A purge rewrite's final batch: entries first..last of the group are the
    Stage records at positions >= stage_pos."""

    __slots__ = ("first", "last", "stage_pos")
    TYPE = R.ADOPT

    def __init__(self, group: int, first: int, last: int, stage_pos: int, k: int = -1) -> None:
        super().__init__(group, k)
        self.first, self.last, self.stage_pos = first, last, stage_pos

    def record(self) -> Tuple[int, int, bytes]:
        return self.first, 0, R.encode_adopt(self.last, self.stage_pos)

    @classmethod
    def decode(cls, g: int, index: int, term: int, payload: bytes, k: int) -> "Op":
        return cls(g, index, *R.decode_adopt(payload), k)

    def apply(self, a: Applied) -> None:
        a.index.adopt(self.group, self.first, self.last, self.stage_pos, a.release)
        a.release.append(a.pos(self.k))

    def fields(self) -> Fields:
        p = self.stage_pos
        return ({"last": self.last, "stage_pos": p},
                f"last={self.last} stage_pos={p >> 32:x}:{p & 0xffffffff}")


# The table: record type -> the Op class of its records.
RECORDS: Dict[int, Type[Op]] = {c.TYPE: c for c in (
    Append, SetHardState, SetSnapshot, Compact, Truncate, Put, Delete, Remove, Stage, Adopt)}
assert sorted(RECORDS) == sorted(R.NAMES), "every record type has one Op class"


def decode(t: int, g: int, index: int, term: int, payload: bytes, k: int) -> Op:
    """The op of a scanned record of type t; ValueError if malformed."""
    cls = RECORDS.get(t)
    if cls is None:
        raise ValueError(f"unknown record type {t}")
    return cls.decode(g, index, term, payload, k)


def describe(t: int, aux: int, index: int, term: int, payload: bytes, limit: int,
             full: int) -> Fields:
    cls = RECORDS.get(t)
    if cls is None:
        return {"payload_error": f"unknown record type {t}"}, f"<unknown record type {t}>"
    return cls.describe(aux, index, term, payload, limit, full)


def apply_ops(index: GroupIndex, ops: Sequence[Op], positions: Any) -> Applied:
    """Apply ops (planned or replayed) in order; `positions[k]` is record k's
    position.  Returns what they freed."""
    a = Applied(index, positions)
    for op in ops:
        op.apply(a)
    return a
