"""WriteBatch: the operations of one atomic write, encoded as they are added
into the records the log will hold (docs/FORMAT.md), one growing buffer.

Each method checks its arguments' types and ranges at once (TypeError /
ValueError) and leaves the batch as it was if it raises.  Checks against
the log's state happen in `Engine.write`, in C (csrc/batch.c), which also
fills in what only the log knows: a compaction's term.  Operations whose
state Python keeps (snapshot metadata, the key-value space, removal) are
also kept as ops (pyraftlog/ops.py) in `_rare`, whose Python half
(`Op.keep`) is applied once the records are written."""
from __future__ import annotations

import struct
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from . import ops as O
from . import record as R
from ._native import crc32c
from ._objects import encode_entries
from .types import (
    U64_MAX,
    Entry,
    HardState,
    Snapshot,
    check_bytes,
    check_entry,
    check_entry_type,
    check_hard_state,
    check_snapshot,
    check_u64,
)

U32_MAX = (1 << 32) - 1
_HEADER = struct.Struct("<BBHIQQQ")  # record header: type, aux, reserved, len, group, index, term
_PACK = _HEADER.pack
_HEADER_DTYPE = np.dtype([("type", "u1"), ("aux", "u1"), ("reserved", "<u2"), ("len", "<u4"),
                          ("group", "<u8"), ("index", "<u8"), ("term", "<u8")])
assert _HEADER_DTYPE.itemsize == _HEADER.size
_PAD = tuple(bytes((8 - k) & 7) for k in range(8))  # zeros after a payload of length = k mod 8


class WriteBatch:
    """Operations on any number of groups, applied in order, atomically."""

    __slots__ = ("_buf", "_n", "_nops", "_rare", "_snaps")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._n = 0           # records
        self._nops = 0        # operations added (len)
        # ops whose state Python keeps: SetSnapshot, Put, Delete, Remove
        self._rare: List[O.Op] = []
        # snapshots with data: (their op, offset of file_id in _buf, data)
        self._snaps: List[Tuple[O.SetSnapshot, int, bytes]] = []

    def __len__(self) -> int:
        return self._nops

    def __repr__(self) -> str:
        return f"<WriteBatch {self._nops} ops, {self._n} records, {len(self._buf)} bytes>"

    def _record(self, rtype: int, group: int, index: int = 0, term: int = 0,
                payload: bytes = b"", aux: int = 0) -> int:
        n = len(payload)
        if n > U32_MAX:
            raise ValueError("a record payload must be smaller than 4 GiB")
        buf = self._buf
        buf += _HEADER.pack(rtype, aux, 0, n, group, index, term)
        buf += payload
        buf += _PAD[n & 7]
        self._n += 1
        self._nops += 1
        return self._n - 1

    def append(self, group: int, entries: Iterable[Any]) -> "WriteBatch":
        """Append entries (consecutive indexes) to `group`'s log."""
        if type(entries) is list:
            # well-formed Entry objects are checked and encoded by C in one
            # call (csrc/objects.c); anything else takes the checks below,
            # which raise the error it deserves
            n = encode_entries(self._buf, group, entries, Entry)
            if n >= 0:
                if n:
                    self._n += n
                    self._nops += 1
                return self
        g = group if type(group) is int and 0 <= group <= U64_MAX else check_u64(group, "group")
        buf, pack, pad = self._buf, _HEADER.pack, _PAD
        mark, n = len(buf), 0
        prev = -1
        try:
            for e in entries:
                index, term, data, etype = check_entry(e)
                if prev >= 0 and index != prev + 1:
                    raise ValueError(f"group {g}: entries must have consecutive indexes, "
                                     f"got {prev} then {index}")
                prev = index
                ln = len(data)
                if ln > U32_MAX:
                    raise ValueError("an entry must be smaller than 4 GiB")
                buf += pack(R.ENTRY, etype, 0, ln, g, index, term)
                buf += data
                buf += pad[ln & 7]
                n += 1
        except BaseException:
            del buf[mark:]  # the batch stays as it was
            raise
        if n:
            self._n += n
            self._nops += 1
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
        ts = _u64_array(terms, "entry term")
        ds = (payloads if type(payloads) is list and all(type(p) is bytes for p in payloads)
              else [check_bytes(p, "entry data") for p in payloads])
        ys = (np.zeros(len(ts), np.uint8) if types is None else
              np.array([check_entry_type(t) for t in types], np.uint8))
        n = len(ts)
        if not n == len(ds) == len(ys):
            raise ValueError("terms, payloads and types must have the same length")
        if not n:
            return self
        if first + n - 1 > U64_MAX:
            raise ValueError("entry indexes would pass 2**64-1")
        lens = np.fromiter(map(len, ds), np.int64, n)
        if int(lens.max()) > U32_MAX:
            raise ValueError("an entry must be smaller than 4 GiB")
        head = np.zeros(n, _HEADER_DTYPE)
        head["type"] = R.ENTRY
        head["aux"] = ys
        head["len"] = lens
        head["group"] = g
        head["index"] = np.arange(first, first + n, dtype=np.uint64) if first + n <= 1 << 63 \
            else [first + k for k in range(n)]
        head["term"] = ts
        ln = int(lens[0])
        if (lens == ln).all():
            # one size for all: records are rows of a matrix, filled by numpy
            size = R.record_size(ln)
            rows = np.zeros((n, size), np.uint8)
            rows[:, :R.RECORD_HEADER_SIZE] = head.view(np.uint8).reshape(n, R.RECORD_HEADER_SIZE)
            if ln:
                rows[:, R.RECORD_HEADER_SIZE:R.RECORD_HEADER_SIZE + ln] = \
                    np.frombuffer(b"".join(ds), np.uint8).reshape(n, ln)
            self._buf += rows.tobytes()
        else:
            hb = head.tobytes()
            buf, pad = self._buf, _PAD
            for k, d in enumerate(ds):
                buf += hb[32 * k:32 * k + 32]
                buf += d
                buf += pad[len(d) & 7]
        self._n += n
        self._nops += 1
        return self

    def set_hard_state(self, group: int, hs: HardState) -> "WriteBatch":
        g, hs = check_u64(group, "group"), check_hard_state(hs)
        self._record(R.HARD_STATE, g, hs.commit, hs.term, R.encode_hard_state(hs))
        return self

    def apply_snapshot(self, group: int, snapshot: Snapshot) -> "WriteBatch":
        g, snap = check_u64(group, "group"), check_snapshot(snapshot)
        meta, data = snap.meta, snap.data
        # the file id (docs/FORMAT.md: lsn << 16 | k) is known only when the
        # batch is written: Engine.write puts it into the payload then
        crc = crc32c(data) if data else 0
        payload = R.encode_snapshot(meta.conf_state, len(data), 0, crc)
        if data and len(self._snaps) >= 1 << 16:
            raise ValueError("too many snapshots with data in one batch")
        at = len(self._buf) + R.RECORD_HEADER_SIZE + 8  # after data_size
        k = self._record(R.SNAPSHOT, g, meta.index, meta.term, payload)
        op = O.SetSnapshot(g, meta, (len(data), 0, crc) if data else None, k)
        self._rare.append(op)
        if data:
            self._snaps.append((op, at, data))
        return self

    def compact(self, group: int, index: int) -> "WriteBatch":
        """Discard entries up to and including `index`."""
        g, i = check_u64(group, "group"), check_u64(index, "compact index")
        self._record(R.COMPACT, g, i)  # its term is filled in by the write
        return self

    def truncate(self, group: int, index: int) -> "WriteBatch":
        """Discard entries with index >= `index`."""
        self._record(R.TRUNCATE, check_u64(group, "group"), check_u64(index, "truncate index"))
        return self

    def put(self, group: int, key: bytes, value: bytes) -> "WriteBatch":
        g, k, v = check_u64(group, "group"), check_bytes(key, "key"), check_bytes(value, "value")
        rec = self._record(R.KV_PUT, g, payload=R.encode_kv(k, v))
        self._rare.append(O.Put(g, k, v, rec))
        return self

    def delete(self, group: int, key: bytes) -> "WriteBatch":
        g, k = check_u64(group, "group"), check_bytes(key, "key")
        rec = self._record(R.KV_DELETE, g, payload=k)
        self._rare.append(O.Delete(g, k, rec))
        return self

    def remove_group(self, group: int) -> "WriteBatch":
        """Remove the group and all its state, as if it was never written."""
        g = check_u64(group, "group")
        rec = self._record(R.REMOVE_GROUP, g)
        self._rare.append(O.Remove(g, rec))
        return self


def _u64_array(values: Any, what: str) -> "np.ndarray":
    """`values` as a numpy uint64 array; TypeError/ValueError naming `what`
    for anything that is not an unsigned 64-bit integer."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "ui":
        if values.dtype.kind == "i" and len(values) and int(values.min()) < 0:
            raise ValueError(f"{what} must be in [0, 2**64-1], got {int(values.min())}")
        return values.astype(np.uint64, copy=False)
    return np.array([check_u64(v, what) for v in values], np.uint64)


