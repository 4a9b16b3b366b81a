"""The inspector: read-only views of a log directory for the command line
(`pyraftlog inspect | dump | verify`, see pyraftlog/tools/cli.py).

Nothing here takes the directory's LOCK, writes, or deletes: segments are
mapped read-only through a C log handle that never starts a writer.  So all
of it works on a directory a live Engine holds and is writing, which brings
three races, handled here:

* The newest segment's tail may be a batch the writer is copying right now
  (it looks torn), or a batch may complete between the scan that stopped at
  its place and the probe that looks past it (valid batches "follow the
  end").  `Walker` re-reads such a break for a while before it believes it;
  an unacknowledged tail that is still torn while another process holds the
  lock is a write in flight, not a problem.
* The writer recycles the oldest segments (csrc/ring.c): a listed segment
  may be gone before it is mapped, or renamed and reused while it is read.
  A problem in a segment that is no longer in the directory (or after one)
  is that race, not corruption.
* A rotation renames a free file `<seq>.seg` before writing its header.

`Walker` checks what strict recovery checks (pyraftlog/recovery.py) without
raising: every segment header, every batch checksum, the lsn chain across
segments; with the `Replay` sink also every payload, while it rebuilds the
group state recovery would.  It reports `Problem`s in log order."""
from __future__ import annotations

import errno
import os
import stat
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .. import record as R
from .._native import REASONS, check, crc32c, ffi, lib
from ..directory import kind
from ..errors import CorruptionError
from ..group_index import GroupIndex, SnapRef
from ..recovery import Scanner
from ..snapshot_store import SnapshotStore
from ..walker import (
    CHAIN,
    END,
    MISSING,
    TORN,
    chain_gap,
    classify,
    list_free,
    list_segments,
    probe,
    segment_name,
    unfinished,
)

# Only validated by prl_log_open: a read-only handle never creates a segment.
_HANDLE_SEGMENT_SIZE = 64 << 20
# How long a break at the newest segment's tail is re-read before it counts:
# a live writer finishes copying a batch in microseconds.
_SETTLE_LIVE = 2.0
_SETTLE_IDLE = 0.1
_SETTLE_PAUSE = 0.02

Progress = Callable[[int, int], None]
ChunkSink = Callable[["SegmentSummary", Any, Scanner, int, int], Optional["Problem"]]


class InspectError(Exception):
    """A directory the tools cannot read as a log; the message is one line."""


@dataclass
class Problem:
    path: str
    offset: int
    reason: str
    torn: bool = False  # an unacknowledged tail of the newest segment: recovery cuts it

    def __str__(self) -> str:
        return f"{self.path}: offset {self.offset}: {self.reason}"


@dataclass
class SegmentSummary:
    seq: int
    path: str
    size: int                  # bytes mapped: the file size (capped at 1 GiB)
    header_ok: bool = False
    first_lsn: int = 0         # from the header (0 if the header is invalid)
    used: int = 0              # offset where the segment's valid log ends
    batches: int = 0
    records: int = 0
    last_lsn: int = 0          # lsn of the last valid batch (0: none)
    unfinished: bool = False   # newest, header never written: recovery removes it
    in_flight: bool = False    # the tail was still being written
    recycled: bool = False     # a live writer recycled it while it was read


@dataclass
class WalkResult:
    segments: List[SegmentSummary] = field(default_factory=list)
    problems: List[Problem] = field(default_factory=list)
    batches: int = 0
    records: int = 0
    bytes: int = 0             # bytes of valid batches
    next_lsn: int = 1          # lsn after the last valid batch of the log


class RawLog:
    """A C log handle that only maps segments read-only: no writer, no lock."""

    def __init__(self, path: str):
        self.path = path
        opts = ffi.new("prl_log_options *")
        opts.segment_size = _HANDLE_SEGMENT_SIZE
        for name, _ in ffi.typeof("prl_log_options").fields:
            if name in ("prepare_ahead", "pool_max"):  # validated only: no writer starts
                setattr(opts, name, 1)
        hp = ffi.new("prl_log **")
        check(lib.prl_log_open(os.fsencode(path), opts, hp), f"open {path}")
        self.h: Any = hp[0]

    def __enter__(self) -> "RawLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.h is not None:
            lib.prl_log_close(self.h)
            lib.prl_log_free(self.h)
            self.h = None

    def attach(self, seq: int) -> bool:
        """Map segment `seq`; False if it vanished since it was listed."""
        rc = lib.prl_log_attach(self.h, seq)
        if rc == -errno.ENOENT:  # a live process recycled it
            return False
        name = os.path.join(self.path, segment_name(seq))
        if rc == lib.PRL_E_NOT_REGULAR:  # replaced since it was listed
            raise CorruptionError(name, 0, "not a regular file")
        if rc == -errno.E2BIG:
            raise InspectError(f"{name}: sequence number too far from the other segments'")
        check(rc, f"open {name}")
        return True

    def mapping(self, seq: int) -> Tuple[Any, int]:
        base = ffi.new("const uint8_t **")
        size = ffi.new("uint64_t *")
        check(lib.prl_log_segment_base(self.h, seq, base, size), "segment")
        return base[0], int(size[0])

    def record_sizes(self, positions: Any) -> Optional[Any]:
        """Bytes on disk (header and padding included) of the records at
        `positions` (a uint64 array); None if they no longer parse."""
        n = len(positions)
        lens = np.zeros(n, np.uint32)
        auxs = np.zeros(n, np.uint8)
        total = ffi.new("uint64_t *")
        if n and lib.prl_log_read_meta(self.h, n, ffi.from_buffer("uint64_t[]", positions),
                                       ffi.from_buffer("uint32_t[]", lens),
                                       ffi.from_buffer("uint8_t[]", auxs), total):
            return None
        return R.RECORD_HEADER_SIZE + ((lens.astype(np.uint64) + 7) & ~np.uint64(7))


def check_directory(path: str) -> List[int]:
    """The segment seqs of `path`, or InspectError saying why it is no log."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InspectError(f"{path}: no such directory") from None
    except OSError as exc:
        raise InspectError(f"{path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise InspectError(f"{path}: not a directory")
    try:
        seqs = list_segments(path)
    except OSError as exc:
        raise InspectError(f"{path}: {exc.strerror}") from None
    if not seqs:
        raise InspectError(f"{path}: no segment files (<16 hex digits>.seg): "
                           "not a pyraftlog log directory")
    out = []
    for seq in seqs:
        name = os.path.join(path, segment_name(seq))
        try:
            mode = os.lstat(name).st_mode  # a symbolic link is not followed
        except FileNotFoundError:
            continue  # removed meanwhile by a live process
        except OSError as exc:
            raise InspectError(f"{name}: {exc.strerror}") from None
        if not stat.S_ISREG(mode):
            raise InspectError(f"{name}: not a regular file ({kind(mode)})")
        out.append(seq)
    return out


def lock_holder(path: str) -> Optional[int]:
    """Pid of the process holding `path`/LOCK (Linux /proc/locks), read
    without taking any lock; None if free or unknown."""
    try:
        st = os.lstat(os.path.join(path, "LOCK"))
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        parts = line.split()
        if "->" in parts:  # a blocked waiter, not the holder
            continue
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == dev:
            try:
                return int(parts[4])
            except ValueError:
                return None
    return None


def _zero(base: Any, size: int) -> bool:
    n = min(size, R.SEGMENT_HEADER_SIZE)
    return n == 0 or bytes(ffi.buffer(base, n)) == bytes(n)


class Walker:
    """Reads every batch of every segment in log order with strict recovery's
    rules.  `sink(seg, mem, scanner, nb, nr)` sees each run of valid batches
    (the scanner's arrays) and may return a Problem.  Without keep_going the
    walk stops at the first problem; with it, it skips to the next valid
    batch, as tolerate_any recovery does."""

    def __init__(self, log: RawLog, sink: Optional[ChunkSink] = None, keep_going: bool = False,
                 live: bool = False, progress: Optional[Progress] = None):
        self.log, self.sink, self.keep_going = log, sink, keep_going
        self.live, self.progress = live, progress
        self.scanner = Scanner()
        self.result = WalkResult()
        self.stopped = False
        self.chain: List[SegmentSummary] = []

    def run(self, seqs: List[int]) -> WalkResult:
        heads = []
        for _ in range(10):
            for seq in seqs:
                if not self.log.attach(seq):
                    continue
                base, size = self.log.mapping(seq)
                seg = SegmentSummary(seq, os.path.join(self.log.path, segment_name(seq)), size)
                heads.append((seg, base, self._header(seg, base)))
            if heads or not self.live:
                break
            seqs = list_segments(self.log.path)  # a live writer recycled all it had listed
        if heads and self.live:  # the writer may be writing the newest header right now
            seg, base, reason = heads[-1]
            deadline = time.monotonic() + _SETTLE_LIVE
            while reason and not _zero(base, seg.size) and time.monotonic() < deadline:
                time.sleep(_SETTLE_PAUSE)
                reason = self._header(seg, base)
            heads[-1] = (seg, base, reason)
        # A newest segment that holds nothing but zeros or its previous life
        # is a creation or a rotation a crash interrupted (recovery removes
        # it): the log ends in the segment before.
        if heads:
            seg, base, reason = heads[-1]
            # strict's rule: the tools never remove anything, and call a
            # segment unfinished only where every recovery mode removes it
            seg.unfinished = unfinished(base, seg.size, seg.seq, reason, strict=True) is not None
        chain = [h for h in heads if not h[0].unfinished]
        self.chain = [h[0] for h in chain]
        total = sum(h[0].size for h in heads) or 1
        done = 0
        expect: Optional[int] = None
        for k, (seg, base, reason) in enumerate(chain):
            newest = k == len(chain) - 1
            nxt = chain[k + 1] if not newest else None
            nxt_first = nxt[0].first_lsn if nxt and not nxt[2] else None
            expect = self._segment(k, seg, base, reason, expect, newest, nxt_first, nxt is not None)
            if expect is not None:
                self.result.next_lsn = expect
            done += seg.size
            if self.progress:
                self.progress(done, total)
            if self.stopped:
                break
        self.result.segments = [h[0] for h in heads]
        return self.result

    @staticmethod
    def _header(seg: SegmentSummary, base: Any) -> int:
        first = ffi.new("uint64_t *")
        reason = int(lib.prl_scan_header(base, seg.size, seg.seq, first))
        seg.header_ok, seg.first_lsn = not reason, int(first[0])
        return reason

    def _problem(self, k: int, offset: int, reason: str, torn: bool = False) -> bool:
        return self._report(k, Problem(self.chain[k].path, offset, reason, torn))

    def _report(self, k: int, problem: Problem) -> bool:
        """Record a problem in chain segment k; False if instead a live
        writer recycled that segment or an older one while it was read (a
        file is renamed away before its bytes are reused)."""
        if self.live:
            gone = [s for s in self.chain[:k + 1] if not os.path.exists(s.path)]
            for s in gone:
                s.recycled = True
            if gone:
                return False
        self.result.problems.append(problem)
        if not self.keep_going:
            self.stopped = True
        return True

    def _segment(self, k: int, seg: SegmentSummary, base: Any, reason: int, expect: Optional[int],
                 newest: bool, next_first: Optional[int], has_next: bool) -> Optional[int]:
        """Walks one segment; the lsn after its last valid batch, or None if
        the chain cannot continue from it."""
        size = seg.size
        offset, lsn = R.SEGMENT_HEADER_SIZE, seg.first_lsn
        if reason:
            if not self._problem(k, 0, REASONS.get(reason, "bad segment header")):
                return None
            found = probe(base, size, seg.seq, offset, 0) if size and not self.stopped else None
            if found is None:
                return None
            offset, lsn = found.offset, found.lsn
        elif expect is not None and seg.first_lsn != expect:
            if (not self._problem(k, 0, chain_gap(seg.first_lsn, expect))
                    and seg.recycled):
                return None
        if self.stopped:
            return None
        mem = ffi.buffer(base, size)
        deadline: Optional[float] = None
        while True:
            offset, lsn, why = self._scan(k, seg, base, mem, offset, lsn)
            seg.used = offset
            if self.stopped:
                return lsn
            if seg.recycled:
                return None
            b = classify(base, size, seg.seq, offset, lsn, why, 0, not has_next, next_first,
                         chain_on_clean=True)
            if b.kind in (CHAIN, END):
                return lsn
            if b.kind != MISSING:
                # a live writer may be copying this very batch: look again
                deadline = deadline or time.monotonic() + (_SETTLE_LIVE if self.live else
                                                            _SETTLE_IDLE)
                if time.monotonic() < deadline:
                    time.sleep(_SETTLE_PAUSE)
                    continue
                if b.kind == TORN and self.live:
                    seg.in_flight = True
                    return lsn
            if not self._problem(k, offset, b.text(), torn=b.kind == TORN):
                return None
            if b.kind == TORN:
                return lsn  # recovery cuts it here, and what follows
            if self.stopped or not b.following:
                return lsn
            offset, lsn = b.following[0].offset, b.following[0].lsn

    def _scan(self, k: int, seg: SegmentSummary, base: Any, mem: Any, offset: int,
              lsn: int) -> Tuple[int, int, int]:
        sc, res = self.scanner, self.result
        while True:
            r: Any = sc.scan(base, seg.size, seg.seq, offset, lsn)
            nb, nr = int(r.n_batches), int(r.n_records)
            if nb:
                seg.batches += nb
                seg.records += nr
                seg.last_lsn = int(sc.b_lsn[nb - 1])
                res.batches += nb
                res.records += nr
                res.bytes += int(sc.b_len[:nb].sum())
                if self.sink:
                    p = self.sink(seg, mem, sc, nb, nr)
                    if p is not None:
                        recorded = self._report(k, p)
                        if self.stopped or (not recorded and seg.recycled):
                            return int(r.next_offset), int(r.next_lsn), int(r.reason)
            offset, lsn = int(r.next_offset), int(r.next_lsn)
            if r.reason != lib.PRL_R_NONE:
                return offset, lsn, int(r.reason)


class Replay:
    """A Walker sink that replays records into a GroupIndex as recovery does;
    a malformed payload is a Problem."""

    def __init__(self) -> None:
        self.index = GroupIndex()
        self.release: "array[int]" = array("Q")
        self.superseded: List[Tuple[int, SnapRef]] = []

    def __call__(self, seg: SegmentSummary, mem: Any, sc: Scanner, nb: int,
                 nr: int) -> Optional[Problem]:
        try:
            sc.replay(self.index, seg.seq, mem, nb, nr, seg.path, self.release, self.superseded,
                      skip_bad=False)
        except CorruptionError as exc:  # a payload that does not decode
            return Problem(exc.path, exc.offset, exc.reason)
        finally:
            del self.release[:]
            self.index.discard_release()
        return None


# -- inspect and verify ---------------------------------------------------------

def live_bytes(log: RawLog, index: GroupIndex,
               chain: List[SegmentSummary]) -> Tuple[Dict[int, int], Dict[int, int]]:
    """Bytes of the records the recovered state still needs: ({seq: bytes},
    {group: bytes}).  A segment whose records no longer parse was reused by
    a live writer after the walk read it: it is marked recycled."""
    groups = sorted(index.groups)
    parts: List[Any] = [np.zeros(0, np.uint64)]
    owners: List[Any] = [np.zeros(0, np.int64)]
    for k, g in enumerate(groups):
        st = index.groups[g]
        pos = np.concatenate((np.frombuffer(st.positions, np.uint64) if len(st.positions)
                              else np.zeros(0, np.uint64), np.array(st.pins(), np.uint64)))
        parts.append(pos)
        owners.append(np.full(len(pos), k, np.int64))
    pos, own = np.concatenate(parts), np.concatenate(owners)
    order = np.argsort(pos, kind="stable")
    pos, own = pos[order], own[order]
    seqs = pos >> np.uint64(32)
    sizes = np.zeros(len(pos), np.uint64)
    cuts = np.flatnonzero(np.diff(seqs)) + 1
    seg_live: Dict[int, int] = {}
    by_seq = {s.seq: s for s in chain}
    for lo, hi in zip([0] + cuts.tolist(), cuts.tolist() + [len(pos)]):
        if lo == hi:
            continue
        seq = int(seqs[lo])
        got = log.record_sizes(np.ascontiguousarray(pos[lo:hi]))
        if got is None:
            if seq in by_seq:
                by_seq[seq].recycled = True
            continue
        sizes[lo:hi] = got
        seg_live[seq] = int(got.sum())
    per_group = np.bincount(own, weights=sizes.astype(np.float64), minlength=len(groups))
    return seg_live, {g: int(per_group[k]) for k, g in enumerate(groups)}


@dataclass
class Report:
    """What `inspect` shows: the walk, the group state recovery would
    rebuild, live bytes, and the files outside the log."""
    path: str
    holder: Optional[int]                       # pid holding the LOCK, if any
    walk: WalkResult
    index: GroupIndex
    segment_live: Dict[int, int]                # seq -> live bytes
    group_live: Dict[int, int]                  # group -> live bytes
    free_files: List[Tuple[str, int]] = field(default_factory=list)   # (name, size)
    snapshot_files: List[Tuple[int, int, int]] = field(default_factory=list)  # group, id, size


def report(path: str, progress: Optional[Progress] = None) -> Report:
    """Walks the log with the Replay sink, past invalid bytes (as
    tolerate_any does) but not past a torn tail (which recovery cuts)."""
    seqs = check_directory(path)
    holder = lock_holder(path)
    with RawLog(path) as log:
        replay = Replay()
        walk = Walker(log, sink=replay, keep_going=True, live=holder is not None,
                      progress=progress).run(seqs)
        seg_live, group_live = live_bytes(log, replay.index, walk.segments)
    rep = Report(path, holder, walk, replay.index, seg_live, group_live)
    for fid in list_free(path):
        name = f"{fid:016x}.free"
        try:
            rep.free_files.append((name, os.lstat(os.path.join(path, name)).st_size))
        except OSError:
            continue  # taken by a live writer meanwhile
    store = SnapshotStore(path, crc32c, create=False)
    for (g, fid), size in sorted(store.sizes().items()):
        rep.snapshot_files.append((g, fid, size))
    return rep


@dataclass
class Verdict:
    problem: Optional[Problem]
    walk: WalkResult
    groups: int = 0
    snapshots: int = 0


def verify(path: str, progress: Optional[Progress] = None) -> Verdict:
    """Every record and checksum with strict recovery's rules, then every
    snapshot file the log refers to; the first problem, or None."""
    seqs = check_directory(path)
    holder = lock_holder(path)
    replay = Replay()
    with RawLog(path) as raw:
        walk = Walker(raw, sink=replay, live=holder is not None, progress=progress).run(seqs)
    verdict = Verdict(walk.problems[0] if walk.problems else None, walk, len(replay.index.groups))
    if verdict.problem:
        return verdict
    store = SnapshotStore(path, crc32c, create=False)
    for g, st in sorted(replay.index.groups.items()):
        if st.snap_ref is None:
            continue
        try:
            store.read(g, st.snap_ref)
        except CorruptionError as exc:
            if holder is not None and exc.reason == "snapshot file missing":
                continue  # a live writer superseded and deleted it after the scan
            verdict.problem = Problem(exc.path, exc.offset, exc.reason)
            return verdict
        verdict.snapshots += 1
    return verdict
