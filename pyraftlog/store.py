"""Store: the engine's core behind one lock — the C log handle, the group
index and the snapshot store — and the writes that change them together.

The Engine (the public API) and the Purger both go through a Store and touch
nothing below it: a WriteBatch is checked, written and applied by one C call
(csrc/batch.c), a purge's Plan by the C writer plus `apply_ops`.

Threading: `lock` serialises writes and guards the group index; every read
takes it too, so a read sees whole batches.  The C write runs with the GIL
released but `lock` held, which is what serialises concurrent batches
(docs/API.md: "concurrent batches are serialised").  Waiting for durability
never holds `lock`.  A method named `..._locked` is called with `lock` held."""
from __future__ import annotations

import os
import struct
import threading
from array import array
from collections import deque
from typing import Any, Deque, List, Optional, Tuple

import numpy as np

from . import record as R
from ._native import check, ffi, lib, raise_batch_error
from .batch import WriteBatch
from .errors import FORKED, ClosedError, RaftLogError
from .group_index import GroupIndex, GroupState, SnapRef, position_seq
from .ops import Applied, apply_ops
from .plan import Plan
from .snapshot_store import SnapshotStore
from .ticket import Core


def _fb(kind: str, buf: Any) -> Any:
    return ffi.from_buffer(kind, buf)


class Store:
    """What the engine and the purger share; see the module doc."""

    def __init__(self, path: str, handle: Any, core: Core, index: GroupIndex,
                 snapshots: SnapshotStore, segment_size: int):
        self.path, self.h, self.core, self.index = path, handle, core, index
        self.snapshots, self.segment_size = snapshots, segment_size
        self.lock = threading.Lock()
        self.closed = False
        self.forked = False
        self._pending_deletes: Deque[Tuple[int, int, int]] = deque()  # (lsn, group, file_id)
        self.stats_buf = ffi.new("prl_stats *")
        self._batch_res = ffi.new("prl_batch_result *")
        self._lsn_out = ffi.new("uint64_t *")

    def check(self) -> None:
        """ClosedError once closed; RaftLogError in a forked child."""
        if self.closed:
            raise ClosedError(f"engine {self.path!r} is closed")
        if self.forked:
            raise RaftLogError(FORKED)

    def after_fork(self) -> None:
        """In a forked child: the lock may have been held by a thread that does
        not exist there, so it is replaced, and every call raises instead of
        hanging."""
        self.forked = True
        self.lock = threading.Lock()
        self.core.forked = True

    # -- writing -------------------------------------------------------------

    def write_batch_locked(self, b: WriteBatch) -> int:
        """Checks, writes and applies a WriteBatch (csrc/batch.c); returns its
        lsn, or 0 if nothing had to be written.  Snapshot files are stored
        first; an invalid batch raises before anything is touched."""
        buf, n, res = b._buf, b._n, self._batch_res
        cbuf = _fb("uint8_t[]", buf)
        written: List[Tuple[int, int]] = []
        if b._snaps:
            keep = bytearray(n)
            rc = lib.prl_batch_check(self.index.h, cbuf, len(buf), n, _fb("uint8_t[]", keep), res)
            if not rc and res.total > self.segment_size - R.SEGMENT_HEADER_SIZE:
                rc = lib.PRL_E_TOO_LARGE
            if rc:
                self.raise_batch_error(rc)
            base = self.lsns_locked()[0] << 16  # docs/FORMAT.md: lsn << 16 | k
            try:
                for k, (snap, at, data) in enumerate(b._snaps):
                    struct.pack_into("<Q", buf, at, base | k)
                    self.snapshots.write(snap.group, base | k, data)
                    written.append((snap.group, base | k))
                    assert snap.ref is not None
                    snap.ref = (snap.ref[0], base | k, snap.ref[2])
            except BaseException:
                self._unwrite(written)
                raise
        positions = array("Q", bytes(8 * n)) if b._rare else None
        rc = lib.prl_batch_write(self.h, self.index.h, cbuf, len(buf), n,
                                 ffi.NULL if positions is None else _fb("uint64_t[]", positions),
                                 res, self._lsn_out)
        if rc:
            self._unwrite(written)
            self.raise_batch_error(rc)
        if not res.kept:
            return 0
        lsn = int(self._lsn_out[0])
        if positions is not None:
            # the parts Python keeps: snapshot metadata, the key-value space,
            # what a removal forgets (C applied the rest)
            kept = Applied(self.index, positions)
            for op in b._rare:
                op.keep(kept)
            self.release_locked(kept.release)
            self._supersede_locked(kept.superseded, lsn)
        elif self._pending_deletes:
            self.reap_deletes_locked()
        return lsn

    def write_plan_locked(self, plan: Plan, flags: int = 0) -> int:
        """Write the plan's records, apply its ops to the index; returns the
        batch's lsn.  Nothing changes on error."""
        n = len(plan.types)
        payload = b"".join(plan.payloads)
        positions = array("Q", bytes(8 * n))
        types, auxs, groups, indexes, terms, lens = plan.arrays()
        copies = plan.copies()
        rc = lib.prl_log_write(
            self.h, n, _fb("uint8_t[]", types), _fb("uint8_t[]", auxs),
            _fb("uint64_t[]", groups), _fb("uint64_t[]", indexes),
            _fb("uint64_t[]", terms), _fb("uint32_t[]", lens),
            ffi.NULL if copies is None else _fb("uint64_t[]", copies),
            _fb("uint8_t[]", payload), len(payload),
            flags, self._lsn_out, _fb("uint64_t[]", positions))
        if rc:
            self.raise_write_error(rc)
        lsn = int(self._lsn_out[0])
        freed = apply_ops(self.index, plan.ops, positions)
        self.release_locked(freed.release)
        self.index.flush_release(self.h)
        self._supersede_locked(freed.superseded, lsn)
        return lsn

    def _unwrite(self, written: List[Tuple[int, int]]) -> None:
        """Snapshot files stored for a write that failed."""
        for g, fid in written:
            self.snapshots.delete(g, fid)

    def release_locked(self, positions: array[int]) -> None:
        """Records at `positions` are no longer needed (live-byte accounting)."""
        if positions:
            check(lib.prl_log_release(self.h, len(positions), _fb("uint64_t[]", positions)),
                  "release")

    def _supersede_locked(self, superseded: List[Tuple[int, SnapRef]], lsn: int) -> None:
        """Snapshot files no longer referenced go once batch `lsn` is durable."""
        for g, ref in superseded:
            st = self.index.get(g)
            if st is None or st.snap_ref != ref:  # a rewrite re-references its own file
                self._pending_deletes.append((lsn, g, ref[1]))
        if self._pending_deletes:
            self.reap_deletes_locked()

    def reap_deletes_locked(self, final: bool = False) -> None:
        """Delete snapshot files whose superseding record is durable."""
        durable = self.lsns_locked()[2]
        q = self._pending_deletes
        while q and q[0][0] <= durable:
            _, g, fid = q.popleft()
            self.snapshots.delete(g, fid)
        if final:
            q.clear()  # not durable: recovery keeps or removes them by what the log says

    def raise_batch_error(self, rc: int) -> None:
        if rc in (lib.PRL_E_INVALID_BATCH, lib.PRL_E_TOO_LARGE):
            raise_batch_error(rc, self._batch_res, self.segment_size)
        self.raise_write_error(rc)

    def raise_write_error(self, rc: int) -> None:
        """A failed write: PoisonedError if the log is poisoned (sticky),
        otherwise the OSError of what failed (e.g. ENOSPC creating the next
        segment: nothing was written, a later write may succeed)."""
        if -1000 < rc < 0:  # -errno (PRL_E_* codes are below -1000)
            raise OSError(-rc, f"write: opening the next segment failed: {os.strerror(-rc)}")
        self.core.raise_for(rc, "write")

    # -- the log's position --------------------------------------------------

    def lsns_locked(self) -> Tuple[int, int, int]:
        """(next, written, durable) lsn."""
        st = self.stats_buf
        lib.prl_log_stats(self.h, st)
        return int(st.next_lsn), int(st.written_lsn), int(st.durable_lsn)

    def active_seq_locked(self) -> int:
        """The segment being written."""
        lib.prl_log_stats(self.h, self.stats_buf)
        return int(self.stats_buf.active_seq)

    def disk_bytes(self) -> int:
        return int(lib.prl_log_disk_bytes(self.h))

    def oldest_live_seq(self) -> Optional[int]:
        """The oldest segment still holding a live record (None: none)."""
        seq = ffi.new("uint64_t[2]")
        lib.prl_log_oldest_live(self.h, seq, seq + 1)
        return int(seq[0]) or None

    # -- reading records -----------------------------------------------------

    def read_meta_locked(self, pbuf: Any, n: int) -> Tuple[array[int], array[int], int]:
        """Payload lengths, aux bytes and total payload of the n records at
        the positions in `pbuf`."""
        lens = array("I", bytes(4 * n))
        auxs = array("B", bytes(n))
        total = ffi.new("uint64_t *")
        check(lib.prl_log_read_meta(self.h, n, pbuf, _fb("uint32_t[]", lens),
                                    _fb("uint8_t[]", auxs), total), "read")
        return lens, auxs, int(total[0])

    def read_data_locked(self, pbuf: Any, n: int, size: int) -> bytearray:
        """The payloads of the n records at `pbuf`, concatenated (`size` bytes)."""
        buf = bytearray(size)
        check(lib.prl_log_read_data(self.h, n, pbuf, _fb("uint8_t[]", buf), size), "read")
        return buf

    def entry_lens_locked(self, st: GroupState) -> "np.ndarray":
        """Payload lengths of all of a group's entries (for a purge rewrite)."""
        lens = self.read_meta_locked(_fb("uint64_t[]", st.positions), len(st.positions))[0]
        return np.frombuffer(lens, np.uint32)

    # -- purge ---------------------------------------------------------------

    def pinners_locked(self, seq: int, start: int, count: int,
                       out: "np.ndarray") -> Tuple[List[int], int]:
        """Groups pinning segment `seq` among the C index's groups start ..
        start+count-1, and where the next slice starts (0: walked them all;
        the groups whose key-value records pin it are added then)."""
        head = self.active_seq_locked()
        n, nxt = ffi.new("uint32_t *"), ffi.new("uint32_t *")
        lib.prl_index_pinners(self.index.h, seq, head, start, count,
                              _fb("uint64_t[]", out), n, nxt)
        found: List[int] = out[:n[0]].tolist()
        if not nxt[0]:
            found += [g for g, kv in self.index.kv_spaces()
                      if any(position_seq(p, head) <= seq for _, p in kv.values())]
        return found, int(nxt[0])

    def drop_staged_locked(self, group: int) -> None:
        """A purge rewrite given up: its staged records are not needed."""
        dead = array("Q", self.index.drop_staged(group))
        if not self.closed:
            self.release_locked(dead)
