"""Recovery: scan the segments in order, verify every batch, replay the
records into the group index, and apply the recovery mode's policy at each
break of the log (what a break is: pyraftlog/walker.py, shared with the
offline tools).

`strict` raises CorruptionError at any break that is not a clean end;
`tolerate_tail` cuts torn tails of the newest segment and raises for the
rest; `tolerate_any` skips whatever is invalid and keeps every valid batch."""
from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

import numpy as np

from . import record as R
from ._native import REASONS, check, ffi, lib
from .errors import CorruptionError
from .group_index import GroupIndex, SnapRef
from .logger import fields, log
from .replay import Replayer
from .walker import (
    ACKED,
    CHAIN,
    END,
    FOLLOWS,
    MISSING,
    TORN,
    Break,
    chain_gap,
    classify,
    first_batch_lsn,
    header_size,
    list_segments,
    probe,
    segment_name,
    unfinished,
)

STRICT, TOLERATE_TAIL, TOLERATE_ANY = "strict", "tolerate_tail", "tolerate_any"
MODES = (STRICT, TOLERATE_TAIL, TOLERATE_ANY)


@dataclass
class RecoveryResult:
    next_seq: int = 1
    next_lsn: int = 1
    segments: int = 0
    recovered_batches: int = 0
    recovered_bytes: int = 0
    dropped_tail_bytes: int = 0
    skipped_bytes: int = 0        # tolerate_any: invalid bytes passed over
    skipped_batches: int = 0      # tolerate_any: breaks passed over
    removed_segments: List[int] = field(default_factory=list)
    # (seq, offset): the newest segment ends cleanly there; writing continues
    # in it instead of in a new segment.  None: start a new segment.
    resume: Optional[Tuple[int, int]] = None
    superseded: List[Tuple[int, SnapRef]] = field(default_factory=list)
    first_skip: Optional[Tuple[str, int]] = None  # tolerate_any: (file, offset) of the first


class Scanner:
    """Reusable output arrays for prl_scan_batches (the inspector reads
    records with it), and the Replayer that applies batches to an index."""

    def __init__(self, max_batches: int = 1 << 16, max_records: int = 1 << 20):
        self.max_batches = max_batches
        self.res = ffi.new("prl_scan_result *")
        self._replayer: Optional[Replayer] = None
        # the arrays (~40 MB) are made by the first scan: recovery never scans
        self._batches(0)
        self._alloc(0)
        self.max_records = max_records

    def _batches(self, n: int) -> None:
        self.b_lsn = np.zeros(n, np.uint64)
        self.b_off = np.zeros(n, np.uint32)
        self.b_len = np.zeros(n, np.uint32)
        self.b_cnt = np.zeros(n, np.uint32)

    def _alloc(self, n: int) -> None:
        self.max_records = n
        self.r_type = np.zeros(n, np.uint8)
        self.r_aux = np.zeros(n, np.uint8)
        self.r_group = np.zeros(n, np.uint64)
        self.r_index = np.zeros(n, np.uint64)
        self.r_term = np.zeros(n, np.uint64)
        self.r_off = np.zeros(n, np.uint32)
        self.r_len = np.zeros(n, np.uint32)

    def scan(self, base: Any, size: int, seq: int, offset: int, lsn: int) -> Any:
        """One prl_scan_batches call; grows the record arrays when a single
        batch holds more records than they do."""
        if not len(self.b_lsn):
            self._batches(self.max_batches)
            self._alloc(self.max_records)
        while True:
            fb = ffi.from_buffer
            check(lib.prl_scan_batches(
                base, size, seq, offset, lsn, self.max_batches, self.max_records,
                fb("uint64_t[]", self.b_lsn), fb("uint32_t[]", self.b_off),
                fb("uint32_t[]", self.b_len), fb("uint32_t[]", self.b_cnt),
                fb("uint8_t[]", self.r_type), fb("uint8_t[]", self.r_aux),
                fb("uint64_t[]", self.r_group), fb("uint64_t[]", self.r_index),
                fb("uint64_t[]", self.r_term), fb("uint32_t[]", self.r_off),
                fb("uint32_t[]", self.r_len), self.res), "scan")
            r = self.res
            if r.reason == lib.PRL_R_NONE and r.n_batches == 0 and r.need_records:
                self._alloc(max(r.need_records, self.max_records * 2))
                continue
            return r

    def replayer(self, index: GroupIndex, handle: Any = None) -> Replayer:
        """The Replayer for `index` (one at a time; with the log's handle it
        counts live bytes: replay.py)."""
        rp = self._replayer
        if rp is None or rp.index is not index:
            rp = self._replayer = Replayer(index, handle)
        return rp

    def replay(self, index: GroupIndex, seq: int, mem: Any, nb: int, n: int, path: str,
               release: array[int], superseded: List[Tuple[int, SnapRef]],
               skip_bad: bool) -> int:
        """Applies the nb batches (n records) the last scan returned to
        `index`, as recovery does (replay.py; no live-byte accounting, so
        `release` stays empty).  A record whose payload does not decode
        (its batch checksum was fine: only a writer bug makes one) is a
        CorruptionError, or with skip_bad its whole batch is left out.
        Returns the batches left out."""
        out = self.replayer(index).run(seq, ffi.from_buffer("uint8_t[]", mem), len(mem), mem,
                                       int(self.b_off[0]), int(self.b_lsn[0]), path, superseded,
                                       skip_bad, nb)
        return out.skipped


class Recovery:
    """One recovery run over a directory whose segments the C log maps."""

    def __init__(self, path: str, handle: Any, mode: str, index: GroupIndex, writable: bool,
                 progress: Optional[Callable[[int, int], None]] = None):
        self.path, self.h, self.mode, self.index = path, handle, mode, index
        self.writable, self.progress = writable, progress
        self.result = RecoveryResult()
        self.scanner = Scanner()
        self.release = array("Q")  # replay does no live accounting: recovery retains at the end

    def run(self) -> RecoveryResult:
        res = self.result
        seqs = list_segments(self.path)
        heads = []
        for seq in seqs:
            rc = lib.prl_log_attach(self.h, seq)
            if rc == lib.PRL_E_NOT_REGULAR:  # replaced since it was listed
                raise self._corrupt(seq, 0, "not a regular file")
            check(rc, f"open {self._name(seq)}")
            base, size = self._mapping(seq)
            first = ffi.new("uint64_t *")
            reason = lib.prl_scan_header(base, size, seq, first)
            heads.append((seq, base, size, reason, int(first[0])))
        if heads and self._unfinished(*heads[-1][:4]):
            # created or recycled but never written (its header, or the
            # previous life's, is all it holds): nothing in it was acknowledged
            seq = heads.pop()[0]
            res.removed_segments.append(seq)
            check(lib.prl_log_detach(self.h, seq), "detach")
            if self.writable:
                os.unlink(self._name(seq))
        total = sum(h[2] for h in heads) or 1
        done = 0
        expect: Optional[int] = None
        for k, (seq, base, size, reason, first_lsn) in enumerate(heads):
            newest = k == len(heads) - 1
            if not newest and heads[k + 1][3] and self.mode != TOLERATE_ANY:
                # the next segment's header is damaged: that is the problem to
                # report, not wherever this segment's batches end
                nseq, nreason = heads[k + 1][0], heads[k + 1][3]
                raise self._corrupt(nseq, 0, REASONS.get(nreason, "bad segment header"))
            next_first = heads[k + 1][4] if not newest and heads[k + 1][3] == 0 else None
            # A segment that had a successor, even one removed above as
            # unfinished, was durable whole before the successor was named.
            whole = not newest or bool(res.removed_segments)
            lsn = self._segment(seq, base, size, reason, first_lsn, expect, newest, next_first,
                                whole)
            if lsn is not None:
                expect = lsn
            done += size
            if self.progress:
                self.progress(done, total)
        # staged records no ADOPT took: a rewrite the crash interrupted (dead)
        self.index.staged.clear()
        res.segments = len(seqs) - len(res.removed_segments)
        res.next_seq = (seqs[-1] + 1) if seqs else 1
        res.next_lsn = expect if expect is not None else 1
        if res.skipped_batches:
            # one line for the whole recovery: a damaged log may have thousands of breaks
            where, at = res.first_skip or ("?", 0)
            log.warning("%s: tolerate_any skipped %d invalid batches (%d bytes), the first at "
                        "offset %d of %s; every valid batch was kept", self.path,
                        res.skipped_batches, res.skipped_bytes, at, where,
                        extra=fields(self.path, skipped_batches=res.skipped_batches,
                                     skipped_bytes=res.skipped_bytes, file=where, offset=at))
        return res

    def _skipped_at(self, seq: int, offset: int) -> None:
        if self.result.first_skip is None:
            self.result.first_skip = (self._name(seq), offset)

    def _unfinished(self, seq: int, base: Any, size: int, reason: int) -> bool:
        """The newest segment is a creation or rotation a crash interrupted
        (walker.unfinished); the batches found in it were never acknowledged."""
        found = unfinished(base, size, seq, reason, strict=self.mode == STRICT)
        if found is None:
            return False
        self.result.dropped_tail_bytes += sum(f.length for f in found)
        return True

    def _name(self, seq: int) -> str:
        return os.path.join(self.path, segment_name(seq))

    def _mapping(self, seq: int) -> Tuple[Any, int]:
        base = ffi.new("const uint8_t **")
        size = ffi.new("uint64_t *")
        check(lib.prl_log_segment_base(self.h, seq, base, size), "segment")
        return base[0], int(size[0])

    def _corrupt(self, seq: int, offset: int, reason: str) -> CorruptionError:
        return CorruptionError(self._name(seq), offset, reason)

    def _segment(self, seq: int, base: Any, size: int, reason: int, first_lsn: int,
                 expect: Optional[int], newest: bool, next_first: Optional[int],
                 whole: bool) -> Optional[int]:
        """Replays one segment; returns the lsn after its last valid batch.
        `whole`: the segment had a successor, so no crash can have torn it."""
        res, mode = self.result, self.mode
        offset = R.SEGMENT_HEADER_SIZE
        header_ok = not reason
        if reason:
            found = probe(base, size, seq, R.SEGMENT_HEADER_SIZE, 0) if size else None
            if mode != TOLERATE_ANY:
                raise self._corrupt(seq, 0, REASONS.get(reason, "bad segment header"))
            res.skipped_batches += 1
            self._skipped_at(seq, 0)
            if found is None:
                return None
            first_lsn, offset = found.lsn, found.offset
        elif mode == TOLERATE_ANY and first_batch_lsn(base, size, seq) not in (None, first_lsn):
            # The batches carry their own lsn: a checksum-valid header that names
            # another first lsn (a writer bug) must not cost the segment its valid
            # first batch, which tolerate_any promises to keep.
            found = probe(base, size, seq, R.SEGMENT_HEADER_SIZE, 0)
            if found is not None and found.offset == R.SEGMENT_HEADER_SIZE:
                first_lsn = found.lsn
        if expect is not None and first_lsn != expect and mode != TOLERATE_ANY:
            raise self._corrupt(seq, 0, chain_gap(first_lsn, expect))
        lsn = first_lsn
        mem = ffi.buffer(base, size)
        while True:
            offset, lsn, reason, bad_len = self._replay(seq, base, size, mem, offset, lsn)
            b = classify(base, size, seq, offset, lsn, reason, bad_len, newest, next_first)
            if b.kind == END:
                intact = header_ok and header_size(base) == size
                if whole and not intact and mode != TOLERATE_ANY:
                    raise self._corrupt(seq, offset, f"the file is cut short ({size} bytes); "
                                                     f"batches from {lsn} may be missing")
                if intact:
                    res.resume = (seq, offset)
                return lsn
            if whole and b.kind in (TORN, ACKED, FOLLOWS):
                b.kind = MISSING  # it had a successor: no crash tears it
            if self._policy(seq, b):
                return lsn
            offset, lsn = b.following[0].offset, b.following[0].lsn

    def _policy(self, seq: int, b: Break) -> bool:
        """The recovery mode's answer to a break other than a clean end: True
        to end the log here, False to skip to the next valid batch
        (b.following[0]); CorruptionError to stop."""
        res, mode = self.result, self.mode
        if b.kind == CHAIN:
            return True  # the chain continues in the next segment
        if mode == TOLERATE_TAIL and b.kind == TORN:
            res.dropped_tail_bytes += b.span()
            name = self._name(seq)
            log.warning("%s: cut a torn tail at offset %d of %s (%s): batches written "
                        "but never acknowledged", self.path, b.offset, name, b.why,
                        extra=fields(self.path, file=name, offset=b.offset, reason=b.why,
                                     bytes=res.dropped_tail_bytes))
            return True
        if mode != TOLERATE_ANY:
            raise self._corrupt(seq, b.offset, b.text())
        if not b.following:
            if not b.clean:
                res.dropped_tail_bytes += b.bad_len
            return True
        res.skipped_batches += 1
        self._skipped_at(seq, b.offset)
        res.skipped_bytes += b.following[0].offset - b.offset
        return False

    def retain_live(self) -> None:
        """After run(): tell the C log which records are still needed
        (live-byte accounting).  Replay counted them as the writes did
        (replay.py); where it could not be exact, every segment is counted
        again from the index."""
        rp = self.scanner.replayer(self.index, self.h) if self.result.recovered_batches else None
        if rp is not None and rp.finish():
            return
        check(lib.prl_replay_reset_live(self.h), "reset live")
        recount_live(self.h, self.index)

    def _replay(self, seq: int, base: Any, size: int, mem: memoryview, offset: int,
                lsn: int) -> Tuple[int, int, int, int]:
        res = self.result
        rp = self.scanner.replayer(self.index, self.h)
        out = rp.run(seq, base, size, mem, offset, lsn, self._name(seq), res.superseded,
                     self.mode == TOLERATE_ANY)
        res.skipped_batches += out.skipped
        if out.first_skipped is not None:
            self._skipped_at(seq, out.first_skipped)
        res.recovered_batches += out.batches
        res.recovered_bytes += out.bytes
        return out.offset, out.lsn, out.reason, out.bad_len

def recount_live(handle: Any, index: GroupIndex) -> None:
    """Retain every record the index needs: what the C index holds, walked
    in C, and the key-value records (live bytes start from 0)."""
    n = ffi.new("uint64_t *")
    check(lib.prl_index_live_count(index.h, n), "live count")
    live = np.empty(int(n[0]), np.uint64)
    check(lib.prl_index_live_positions(index.h, ffi.from_buffer("uint64_t[]", live), len(live), n),
          "live positions")
    kv = index.kv_positions()
    step = 1 << 30  # prl_log_retain counts in uint32
    for part in (live, kv):
        for k in range(0, len(part), step):
            chunk = part[k:k + step]
            check(lib.prl_log_retain(handle, len(chunk), ffi.from_buffer("uint64_t[]", chunk)),
                  "retain")

