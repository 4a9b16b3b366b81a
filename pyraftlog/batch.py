"""WriteBatch: the operations of one atomic write, encoded as they are added
into the records the log will hold (docs/FORMAT.md), one growing buffer.

Each method checks its arguments' types and ranges at once (TypeError /
ValueError) and leaves the batch as it was if it raises.  Checks against
the log's state happen in `Engine.write`, in C (csrc/batch.c), which also
fills in what only the log knows: a compaction's term.  Operations whose
state Python keeps (snapshot metadata, the key-value space, removal) are
also listed in `_rare`, to be applied once the records are written."""
from __future__ import annotations

import struct
from typing import Any, Iterable, List, Optional, Sequence, Tuple

from . import record as R
from ._native import ffi, lib
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

U32_MAX = (1 << 32) - 1
_HEADER = struct.Struct("<BBHIQQQ")  # record header: type, aux, reserved, len, group, index, term
_PAD = tuple(bytes((8 - k) & 7) for k in range(8))  # zeros after a payload of length = k mod 8
# kinds of `_rare` operations
SNAPSHOT, PUT, DELETE, REMOVE = range(4)


class WriteBatch:
    """Operations on any number of groups, applied in order, atomically."""

    __slots__ = ("_buf", "_n", "_nops", "_rare", "_snaps")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._n = 0           # records
        self._nops = 0        # operations added (len)
        # (record number, kind, group, args...) for SNAPSHOT, PUT, DELETE, REMOVE
        self._rare: List[Tuple[Any, ...]] = []
        # snapshots with data: (record number, offset of file_id in _buf, group, data)
        self._snaps: List[Tuple[int, int, int, bytes]] = []

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
        ts = [check_u64(t, "entry term") for t in terms]
        ds = [check_bytes(p, "entry data") for p in payloads]
        ys = [0] * len(ts) if types is None else [check_entry_type(t) for t in types]
        if not len(ts) == len(ds) == len(ys):
            raise ValueError("terms, payloads and types must have the same length")
        if first + len(ts) - 1 > U64_MAX:
            raise ValueError("entry indexes would pass 2**64-1")
        if any(len(d) > U32_MAX for d in ds):
            raise ValueError("an entry must be smaller than 4 GiB")
        buf, pack, pad = self._buf, _HEADER.pack, _PAD
        for k, (t, d, y) in enumerate(zip(ts, ds, ys)):
            ln = len(d)
            buf += pack(R.ENTRY, y, 0, ln, g, first + k, t)
            buf += d
            buf += pad[ln & 7]
        if ts:
            self._n += len(ts)
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
        crc = _crc32c(data) if data else 0
        payload = R.encode_snapshot(meta.conf_state, len(data), 0, crc)
        if data and len(self._snaps) >= 1 << 16:
            raise ValueError("too many snapshots with data in one batch")
        at = len(self._buf) + R.RECORD_HEADER_SIZE + 8  # after data_size
        k = self._record(R.SNAPSHOT, g, meta.index, meta.term, payload)
        ref = (len(data), 0, crc) if data else None
        self._rare.append((k, SNAPSHOT, g, meta, ref))
        if data:
            self._snaps.append((k, at, g, data))
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
        self._rare.append((rec, PUT, g, k, v))
        return self

    def delete(self, group: int, key: bytes) -> "WriteBatch":
        g, k = check_u64(group, "group"), check_bytes(key, "key")
        rec = self._record(R.KV_DELETE, g, payload=k)
        self._rare.append((rec, DELETE, g, k))
        return self

    def remove_group(self, group: int) -> "WriteBatch":
        """Remove the group and all its state, as if it was never written."""
        g = check_u64(group, "group")
        rec = self._record(R.REMOVE_GROUP, g)
        self._rare.append((rec, REMOVE, g))
        return self


def _crc32c(data: bytes) -> int:
    return int(lib.prl_crc32c(0, ffi.from_buffer(data), len(data)))
