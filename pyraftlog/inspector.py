"""The inspector: read-only views of a log directory for the command line
(`pyraftlog inspect | dump | verify`, see pyraftlog/cli.py).

Nothing here takes the directory's LOCK, writes, or deletes: segments are
mapped read-only through a C log handle that never starts a writer, and
recovery runs with `writable=False`.  So all of it works on a directory a live
Engine holds and is writing, with two consequences handled here:

* The newest segment's tail may be a batch the writer is copying right now
  (it looks torn), or a batch may complete between the scan that stopped at
  its place and the probe that looks past it (valid batches "follow the
  end").  `Walker` re-reads such a break a few times before it believes it;
  an unacknowledged tail that is still torn while another process holds the
  lock is a write in flight, not a problem.
* A segment may appear or vanish between listing and mapping; callers retry.

`Walker` checks what strict recovery checks (pyraftlog/recovery.py) without
raising: every segment header, every batch checksum, the lsn chain across
segments, and with `Replay` the payloads and each group's index sequence.
It reports problems as `Problem`s, in log order."""
from __future__ import annotations

import os
import stat
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

import numpy as np

from . import record as R
from ._native import REASONS, check, ffi, is_clean_end, lib
from .errors import CorruptionError
from .group_index import GapError, GroupIndex, SnapRef
from .plan import apply_ops
from .engine import crc32c
from .recovery import (TOLERATE_ANY, TOLERATE_TAIL, Recovery, Scanner, list_segments, probe,
                       retain_live, segment_name)
from .snapshot_store import SnapshotStore

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
    end_lsn: int = 0           # lsn after the last valid batch
    used: int = 0              # offset where the segment's valid log ends
    batches: int = 0
    records: int = 0
    last_lsn: int = 0          # lsn of the last valid batch (0: none)
    unfinished: bool = False   # newest, header never written: recovery removes it
    tail_cut: int = 0          # bytes of an earlier torn tail after `used`
    in_flight: bool = False    # the tail was still being written


@dataclass
class WalkResult:
    segments: List[SegmentSummary] = field(default_factory=list)
    problems: List[Problem] = field(default_factory=list)
    batches: int = 0
    records: int = 0
    bytes: int = 0             # bytes of valid batches


class RawLog:
    """A C log handle that only maps segments read-only: no writer, no lock."""

    def __init__(self, path: str):
        self.path = path
        opts = ffi.new("prl_log_options *", {"segment_size": _HANDLE_SEGMENT_SIZE, "sync": 0})
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
        if rc == -2:  # ENOENT: a live process removed it
            return False
        check(rc, f"open {os.path.join(self.path, segment_name(seq))}")
        return True

    def mapping(self, seq: int) -> Tuple[Any, int]:
        base = ffi.new("const uint8_t **")
        size = ffi.new("uint64_t *")
        check(lib.prl_log_segment_base(self.h, seq, base, size), "segment")
        return base[0], int(size[0])

    def live_bytes(self, seq: int) -> Optional[int]:
        info = ffi.new("prl_segment_info *")
        if lib.prl_log_segment_info(self.h, seq, info):
            return None
        return int(info.live)

    def record_bytes(self, positions: "array[int]") -> int:
        """Bytes on disk of the records at `positions` (headers and padding)."""
        n = len(positions)
        if not n:
            return 0
        lens = np.zeros(n, np.uint32)
        auxs = np.zeros(n, np.uint8)
        total = ffi.new("uint64_t *")
        check(lib.prl_log_read_meta(self.h, n, ffi.from_buffer("uint64_t[]", positions),
                                    ffi.from_buffer("uint32_t[]", lens),
                                    ffi.from_buffer("uint8_t[]", auxs), total), "read")
        return int(n * R.RECORD_HEADER_SIZE + ((lens.astype(np.uint64) + 7) & ~np.uint64(7)).sum())


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
            mode = os.stat(name).st_mode
        except FileNotFoundError:
            continue  # removed meanwhile by a live process
        except OSError as exc:
            raise InspectError(f"{name}: {exc.strerror}") from None
        if not stat.S_ISREG(mode):
            raise InspectError(f"{name}: not a regular file")
        out.append(seq)
    return out


def lock_holder(path: str) -> Optional[int]:
    """Pid of the process holding `path`/LOCK (Linux /proc/locks), read
    without taking any lock; None if free or unknown."""
    try:
        st = os.stat(os.path.join(path, "LOCK"))
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

    def _problem(self, seg: SegmentSummary, offset: int, reason: str, torn: bool = False) -> None:
        self.result.problems.append(Problem(seg.path, offset, reason, torn))
        if not self.keep_going:
            self.stopped = True

    def run(self, seqs: List[int]) -> WalkResult:
        heads = []
        for seq in seqs:
            if not self.log.attach(seq):
                continue
            base, size = self.log.mapping(seq)
            first = ffi.new("uint64_t *")
            reason = lib.prl_scan_header(base, size, seq, first)
            seg = SegmentSummary(seq, os.path.join(self.log.path, segment_name(seq)), size,
                                 not reason, int(first[0]))
            heads.append((seg, base, int(reason)))
        if heads and self.live:  # the writer may be writing the newest header right now
            seg, base, reason = heads[-1]
            deadline = time.monotonic() + _SETTLE_LIVE
            while reason and not _zero(base, seg.size) and time.monotonic() < deadline:
                time.sleep(_SETTLE_PAUSE)
                first = ffi.new("uint64_t *")
                reason = int(lib.prl_scan_header(base, seg.size, seg.seq, first))
                seg.header_ok, seg.first_lsn = not reason, int(first[0])
            heads[-1] = (seg, base, reason)
        # A newest segment whose header was never written and that holds no
        # batch is a creation a crash interrupted: not part of the chain.
        if heads:
            seg, base, reason = heads[-1]
            if reason and _zero(base, seg.size) and not (
                    seg.size and probe(base, seg.size, seg.seq, R.SEGMENT_HEADER_SIZE, 0)):
                seg.unfinished = True
        chain = [h for h in heads if not h[0].unfinished]
        total = sum(h[0].size for h in heads) or 1
        done = 0
        expect: Optional[int] = None
        for k, (seg, base, reason) in enumerate(chain):
            newest = k == len(chain) - 1
            nxt = chain[k + 1] if not newest else None
            nxt_first = nxt[0].first_lsn if nxt and not nxt[2] else None
            lsn = self._segment(seg, base, reason, expect, newest, nxt_first, nxt is not None)
            if lsn is not None:
                expect = lsn
            done += seg.size
            if self.progress:
                self.progress(done, total)
            if self.stopped:
                break
        self.result.segments = [h[0] for h in heads]
        return self.result

    def _segment(self, seg: SegmentSummary, base: Any, reason: int, expect: Optional[int],
                 newest: bool, next_first: Optional[int], has_next: bool) -> Optional[int]:
        size = seg.size
        offset = R.SEGMENT_HEADER_SIZE
        lsn = seg.first_lsn
        if reason:
            self._problem(seg, 0, REASONS.get(reason, "bad segment header"))
            found = probe(base, size, seg.seq, offset, 0) if size and self.keep_going else None
            if self.stopped or found is None:
                return None
            offset, lsn = found.offset, found.lsn
        elif expect is not None and seg.first_lsn != expect:
            self._problem(seg, 0, f"segment starts at batch {seg.first_lsn}, but the previous "
                                  f"segment ends before batch {expect}")
            if self.stopped:
                return None
        mem = ffi.buffer(base, size)
        deadline: Optional[float] = None
        while True:
            offset, lsn, why, bad_len = self._scan(seg, base, mem, offset, lsn)
            seg.used, seg.end_lsn = offset, lsn
            if self.stopped:
                return lsn
            clean = is_clean_end(why)
            if has_next and (next_first == lsn or (next_first is None and clean)):
                # the successor continues the chain (a tail after `offset` was
                # cut by an earlier recovery), or its own header is the problem
                seg.tail_cut = 0 if clean else max(bad_len, R.ALIGN)
                return lsn
            if newest:
                following = self._following(base, size, seg.seq, offset + R.ALIGN, lsn)
                if clean and not following:
                    return lsn
                # a live writer may be copying this very batch: look again
                deadline = deadline or time.monotonic() + (_SETTLE_LIVE if self.live else
                                                            _SETTLE_IDLE)
                if time.monotonic() < deadline:
                    time.sleep(_SETTLE_PAUSE)
                    continue
                acked = max((f.watermark for f in following), default=0) >= lsn
                if not clean and not acked and self.live:
                    seg.in_flight = True
                    return lsn
                if clean:
                    text = "valid batches follow the end of the log"
                elif acked:
                    text = REASONS.get(why, "?") + "; a later batch shows it was acknowledged"
                else:
                    text = REASONS.get(why, "?") + " (torn tail: never acknowledged)"
                self._problem(seg, offset, text, torn=not clean and not acked)
            else:
                found = probe(base, size, seg.seq, offset + R.ALIGN, lsn)
                following = [found] if found else []
                self._problem(seg, offset, (REASONS.get(why, "?") if not clean else
                                            "segment ends early") + f"; batches from {lsn} are missing")
            if self.stopped or not following:
                return lsn
            offset, lsn = following[0].offset, following[0].lsn

    def _following(self, base: Any, size: int, seq: int, offset: int, lsn: int) -> List[Any]:
        out = []
        while True:
            f = probe(base, size, seq, offset, lsn)
            if f is None:
                return out
            out.append(f)
            offset, lsn = f.offset + f.length, f.lsn + 1

    def _scan(self, seg: SegmentSummary, base: Any, mem: Any, offset: int,
              lsn: int) -> Tuple[int, int, int, int]:
        sc, res = self.scanner, self.result
        while True:
            r = sc.scan(base, seg.size, seg.seq, offset, lsn)
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
                        self.result.problems.append(p)
                        self.stopped = True
                        return int(r.next_offset), int(r.next_lsn), int(r.reason), 0
            offset, lsn = int(r.next_offset), int(r.next_lsn)
            if r.reason != lib.PRL_R_NONE:
                return offset, lsn, int(r.reason), int(r.bad_len)


class Replay:
    """A Walker sink that replays records into a GroupIndex as recovery does,
    turning a malformed payload or a hole in a group's indexes into a Problem."""

    def __init__(self) -> None:
        self.index = GroupIndex()
        self.release: "array[int]" = array("Q")
        self.superseded: List[Tuple[int, SnapRef]] = []

    def __call__(self, seg: SegmentSummary, mem: Any, sc: Scanner, nb: int,
                 nr: int) -> Optional[Problem]:
        try:
            ops, positions = sc.ops(seg.seq, mem, nr, seg.path)
        except CorruptionError as exc:
            return Problem(exc.path, exc.offset, exc.reason)
        for op in ops:
            try:
                apply_ops(self.index, [op], positions, self.release, self.superseded)
            except GapError as exc:
                return Problem(seg.path, positions[op[4]] & 0xFFFFFFFF, f"group {op[1]}: {exc}")
        del self.release[:]
        return None


# -- inspect and verify ---------------------------------------------------------

def _recover(path: str, mode: str, progress: Optional[Progress]) -> Tuple[RawLog, Any, GroupIndex]:
    log = RawLog(path)
    index = GroupIndex()
    try:
        res = Recovery(path, log.h, mode, index, writable=False, progress=progress).run()
        retain_live(log.h, index)
    except BaseException:
        log.close()
        raise
    return log, res, index


def _segment_state(seg: SegmentSummary, active: bool, live: Optional[int]) -> str:
    if seg.unfinished:
        return "unfinished"
    if not seg.header_ok:
        return "invalid"
    if active:
        return "active"
    return "live" if live else ("free" if seg.batches else "empty")


def report(path: str, progress: Optional[Progress] = None) -> Tuple[dict[str, Any], List[str]]:
    """What `inspect` shows, as a JSON-able dict, and the problems that make
    it exit 1 (first one first): invalid bytes beyond a torn tail, or a log
    that the engine's default recovery (tolerate_tail) refuses to open."""
    seqs = check_directory(path)
    holder = lock_holder(path)
    with RawLog(path) as raw:
        walk = Walker(raw, keep_going=True, live=holder is not None, progress=progress).run(seqs)
    errors = [str(p) for p in walk.problems if not p.torn]
    mode, engine_error = TOLERATE_TAIL, None
    attempts = 3 if holder is not None else 1  # a live writer may race the listing
    for attempt in range(attempts):
        try:
            log, res, index = _recover(path, TOLERATE_TAIL, progress)
            break
        except (CorruptionError, FileNotFoundError) as exc:
            if attempt + 1 < attempts:
                time.sleep(0.1)
                continue
            if not isinstance(exc, CorruptionError):
                raise
            mode, engine_error = TOLERATE_ANY, f"default recovery refuses the log: {exc}"
            log, res, index = _recover(path, TOLERATE_ANY, progress)
    with log:
        chain = [s for s in walk.segments if not s.unfinished]
        segments = []
        for seg in walk.segments:
            live = log.live_bytes(seg.seq)
            segments.append({
                "seq": seg.seq, "file": os.path.basename(seg.path), "size": seg.size,
                "used": seg.used, "live_bytes": live or 0, "first_lsn": seg.first_lsn,
                "last_lsn": seg.last_lsn, "batches": seg.batches, "records": seg.records,
                "state": _segment_state(seg, bool(chain) and seg is chain[-1], live)})
        groups = []
        for g in sorted(index.groups):
            st = index.groups[g]
            positions = array("Q", st.positions)
            positions.extend(st.pins())
            hs, meta = st.hard_state, st.snap_meta
            groups.append({
                "group": g, "first_index": st.first_index, "last_index": st.last_index,
                "entries": len(st.positions),
                "hard_state": {"term": hs.term, "vote": hs.vote, "commit": hs.commit},
                "snapshot": {"index": meta.index, "term": meta.term,
                             "data_size": st.snap_ref[0] if st.snap_ref else 0,
                             "voters": list(meta.conf_state.voters),
                             "learners": list(meta.conf_state.learners)},
                "kv_keys": len(st.kv) if st.kv else 0,
                "live_bytes": log.record_bytes(positions)})
        referenced = {(g, st.snap_ref[1]) for g, st in index.groups.items() if st.snap_ref}
    store = SnapshotStore(path, crc32c, create=False)
    snap_files = snap_bytes = orphans = 0
    for g, fid in store.files():
        try:
            snap_bytes += os.stat(store.path(g, fid)).st_size
        except OSError:
            continue
        snap_files += 1
        orphans += (g, fid) not in referenced
    out: dict[str, Any] = {
        "path": os.path.abspath(path), "locked_by_pid": holder,
        "disk_bytes": sum(s["size"] for s in segments),
        "used_bytes": sum(s["used"] for s in segments),
        "live_bytes": sum(s["live_bytes"] for s in segments),
        "batches": walk.batches, "records": walk.records, "next_lsn": res.next_lsn,
        "entries": sum(g["entries"] for g in groups),
        "segments": segments, "groups": groups,
        "snapshots": {"files": snap_files, "bytes": snap_bytes, "orphans": orphans},
        "recovery": {"mode": mode, "dropped_tail_bytes": res.dropped_tail_bytes,
                     "skipped_bytes": res.skipped_bytes, "skipped_batches": res.skipped_batches,
                     "replay_anomalies": res.replay_anomalies, "error": engine_error},
        "problems": [{"file": p.path, "offset": p.offset, "reason": p.reason, "torn_tail": p.torn}
                     for p in walk.problems],
    }
    if engine_error:
        errors.append(engine_error)
    return out, errors


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


# -- records as text -------------------------------------------------------------

def short_bytes(data: bytes, limit: int) -> str:
    """repr of the first `limit` bytes (all if limit < 0), noting the rest."""
    if limit < 0 or len(data) <= limit:
        return repr(bytes(data))
    return f"{bytes(data[:limit])!r}...(+{len(data) - limit})"


def decode_payload(rtype: int, aux: int, index: int, term: int, payload: bytes,
                   limit: int) -> Tuple[dict[str, Any], str]:
    """(JSON fields, one-line text) describing a record's payload."""
    try:
        if rtype == R.ENTRY:
            shown = payload if limit < 0 else payload[:limit]
            return ({"entry_type": aux, "data_hex": bytes(shown).hex(),
                     "data_truncated": len(shown) < len(payload)},
                    f"type={aux} data={short_bytes(payload, limit)}")
        if rtype == R.HARD_STATE:
            hs = R.decode_hard_state(term, index, payload)
            return ({"vote": hs.vote, "commit": hs.commit}, f"vote={hs.vote} commit={hs.commit}")
        if rtype == R.SNAPSHOT:
            cs, size, file_id, crc = R.decode_snapshot(payload)
            fields = {"data_size": size, "file_id": file_id, "data_crc": crc,
                      "voters": list(cs.voters), "learners": list(cs.learners),
                      "voters_outgoing": list(cs.voters_outgoing),
                      "learners_next": list(cs.learners_next), "auto_leave": cs.auto_leave}
            text = f"voters={list(cs.voters)} learners={list(cs.learners)}"
            if cs.voters_outgoing or cs.learners_next or cs.auto_leave:
                text += (f" voters_outgoing={list(cs.voters_outgoing)} "
                         f"learners_next={list(cs.learners_next)} auto_leave={cs.auto_leave}")
            if size:
                text += f" data_size={size} file={file_id:016x} crc={crc:08x}"
            return fields, text
        if rtype == R.KV_PUT:
            key, value = R.decode_kv(payload)
            return ({"key_hex": key.hex(), "value_hex": value.hex()},
                    f"key={short_bytes(key, limit)} value={short_bytes(value, limit)}")
        if rtype == R.KV_DELETE:
            return {"key_hex": bytes(payload).hex()}, f"key={short_bytes(payload, limit)}"
        if payload:
            raise ValueError(f"unexpected {len(payload)}-byte payload")
        return {}, ""
    except ValueError as exc:
        return {"payload_error": str(exc)}, f"<invalid payload: {exc}>"
