"""Replay: recovery applies every valid batch to the group index with the
write path's C code.  csrc/replay.c checks each batch of a segment
(checksum, lsn, records, payloads) and applies it with csrc/apply.c, the
function Engine.write applies a written batch with, a run of batches per
call with the GIL released.  The records whose other half Python keeps
(group_index.py: a snapshot's metadata and file reference, the key-value
space, what a removal forgets, a purge rewrite's staged entries) come back
as items, which `Replayer` applies here, in log order: the C call stops
after an ADOPT, the one record whose Python half changes the C index.

Live-byte accounting is done as the writes did it (csrc/replay.c): every
applied record counts, every record the index or Python drops is released.
That is exact unless replay had to guess (a log whose oldest segments were
recycled); then `exact` turns False and recovery counts again from the
index (Recovery.retain_live).
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import ops as O
from . import record as R
from ._native import check, ffi, lib
from .errors import CorruptionError
from .group_index import GroupIndex, SnapRef

ALL = 0xFFFFFFFF  # max_batches: no limit
_ITEMS = 4096
_STAGE = 1 << 16

@dataclass
class Outcome:
    """Where a replay stopped (as prl_scan_batches says it) and what it did."""
    offset: int
    lsn: int
    reason: int = 0
    bad_len: int = 0
    batches: int = 0                     # applied
    skipped: int = 0                     # left out: a payload does not decode (skip_bad)
    bytes: int = 0                       # of both
    first_skipped: Optional[int] = None  # offset of the first left out


class Replayer:
    """Replays segments into `index`; with the log's `handle`, also counts
    live bytes in it (see the module doc)."""

    def __init__(self, index: GroupIndex, handle: Any = None, items: int = _ITEMS,
                 stage: int = _STAGE):
        self.index, self.h = index, handle
        self.items = ffi.new("prl_replay_item[]", items)
        self.stage_terms = np.empty(stage, np.uint64)
        self.stage_pos = np.empty(stage, np.uint64)
        self._st = ffi.from_buffer("uint64_t[]", self.stage_terms)
        self._sp = ffi.from_buffer("uint64_t[]", self.stage_pos)
        self.res = ffi.new("prl_replay_result *")
        self.release = array("Q")
        self.exact = handle is not None
        # positions of the STAGE records no ADOPT has taken yet, by group
        # (index.staged's, which recovery clears before retain_live)
        self.staged: Dict[int, List["np.ndarray"]] = {}

    def run(self, seq: int, base: Any, size: int, mem: Any, offset: int, lsn: int, path: str,
            superseded: List[Tuple[int, SnapRef]], skip_bad: bool,
            max_batches: int = ALL) -> Outcome:
        """Replays the batches of segment `seq` (mapped at base, `mem` its
        buffer) from `offset` on, the first with `lsn`, until the first that
        is not valid or max_batches.  A payload that does not decode is a
        CorruptionError, or with skip_bad its batch is left out."""
        out = Outcome(offset, lsn)
        r, frm, left = self.res, 0, max_batches
        flags = lib.PRL_REPLAY_SKIP_BAD if skip_bad else 0
        while left:
            check(lib.prl_replay(self.h if self.exact else ffi.NULL, self.index.h, base, size, seq,
                                 out.offset, out.lsn, frm, left, flags, self.items,
                                 len(self.items), self._st, self._sp, len(self.stage_pos), r),
                  "replay")
            if r.irregular:
                self.exact = False
            if r.n_items:
                self._apply(int(r.n_items), mem, superseded)
            out.batches += r.batches
            out.skipped += r.skipped
            out.bytes += r.bytes
            if r.skipped and out.first_skipped is None:
                out.first_skipped = int(r.first_skipped)
            out.offset, out.lsn, frm = int(r.next_offset), int(r.next_lsn), int(r.next_record)
            left -= r.batches + r.skipped
            if r.reason == lib.PRL_R_BAD_PAYLOAD:
                raise bad_payload(path, mem, int(r.bad_record))
            if r.reason != lib.PRL_R_NONE:
                out.reason, out.bad_len = int(r.reason), int(r.bad_len)
                break
        return out

    def _apply(self, n: int, mem: Any, superseded: List[Tuple[int, SnapRef]]) -> None:
        """Python's half of the reported records, in log order (C applied
        its half of all of them, and all of everything between them): Op.keep
        of the record types C applies too, as for a written WriteBatch, and
        Op.apply of those only Python applies (STAGE, ADOPT)."""
        items = self.items[0:n]
        # positions: the staged records' (stage_pos), then item i's at n_stage + i
        m = max((it.first + it.count for it in items if it.type == R.STAGE), default=0)
        positions = np.empty(m + n, np.uint64)
        positions[:m] = self.stage_pos[:m]
        a = O.Applied(self.index, positions)
        for i, it in enumerate(items):
            t, g, k = it.type, it.group, m + i
            positions[k] = it.pos
            if t == R.STAGE:
                lo, hi = it.first, it.first + it.count
                O.Stage(g, it.index, self.stage_terms[lo:hi].copy(), lo, hi).apply(a)
                self.staged.setdefault(g, []).append(self.stage_pos[lo:hi].copy())
                continue
            o = (it.pos & 0xFFFFFFFF) + R.RECORD_HEADER_SIZE
            op = O.decode(t, g, it.index, it.term, mem[o:o + it.len], k)
            if t == R.ADOPT:
                self._adopt(op, a)
            else:
                op.keep(a)
        superseded.extend(a.superseded)
        self.release.extend(a.release)
        self._release()

    def _adopt(self, op: O.Op, a: O.Applied) -> None:
        assert isinstance(op, O.Adopt)
        g = op.group
        before = self.index.bounds(g) or (0, 0, 0)
        op.apply(a)
        self.staged.pop(g, None)  # each one taken or released
        if self.exact:
            # as the purge wrote it: all of first..last, right above the base
            # the same batch set (else the C index guessed: see csrc/replay.c)
            after = self.index.bounds(g)
            self.exact = (after is not None and before[0] < op.first == before[2] + 1 and
                          after[0] == before[0] and after[2] == op.last)

    def _release(self) -> None:
        rel = self.release
        if rel and self.exact:
            if lib.prl_log_release(self.h, len(rel), ffi.from_buffer("uint64_t[]", rel)):
                self.exact = False
        del rel[:]

    def finish(self) -> bool:
        """At the end of recovery: releases the staged records no ADOPT took
        (a rewrite a crash interrupted); True if the live bytes are exact."""
        for runs in self.staged.values():
            for pos in runs:
                self.release.frombytes(pos.tobytes())
        self.staged.clear()
        self._release()
        return self.exact


def bad_payload(path: str, mem: Any, off: int) -> CorruptionError:
    """The error for the record at `off` whose payload C found not to decode,
    with the reason the Python decoder gives."""
    t, _, _, n = R.RECORD_HEADER.unpack(mem[off:off + R.RECORD_HEADER_SIZE])[:4]
    payload = mem[off + R.RECORD_HEADER_SIZE:off + R.RECORD_HEADER_SIZE + n]
    name = R.NAMES.get(t, str(t))
    try:
        O.decode(t, 0, 0, 0, payload, 0)
    except ValueError as exc:
        return CorruptionError(path, off, f"bad {name} payload: {exc}")
    return CorruptionError(path, off, f"bad {name} payload")  # C and ops.py disagree
