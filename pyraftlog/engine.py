"""Engine: the public API of docs/API.md: opening a log (options, recovery),
writing, reading, purging and stats, over a Store (pyraftlog/store.py: the C
log, the group index and the snapshot store behind one lock, whose rules
for threads hold here too)."""
from __future__ import annotations

import os
import time
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import directory
from . import record as R
from ._native import check, crc32c, ffi, lib
from ._objects import make_entries
from .batch import WriteBatch
from .directory import DEFAULT_FILE_MODE, check_file_mode
from .errors import (
    FORKED,
    CompactedError,
    RaftLogError,
    UnavailableError,
)
from .group_index import GroupIndex, GroupState
from .group_view import GroupView
from .lockfile import lock_directory
from .logger import Summary, fields, log
from .purge import Purger
from .recovery import MODES, Recovery
from .snapshot_store import SnapshotStore
from .store import Store
from .ticket import Core, Ticket
from .types import EMPTY_SNAPSHOT, ConfState, Entry, HardState, Snapshot, check_bytes, check_u64
from .walker import list_free

DEFAULT_SEGMENT_SIZE = 64 << 20
DEFAULT_PURGE_THRESHOLD = 8 << 30
DEFAULT_PURGE_BATCH_BYTES = 16 << 10  # (at most a quarter of a segment)
_PAGE = os.sysconf("SC_PAGESIZE")

_live_engines: "weakref.WeakSet[Engine]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # The flusher thread does not exist in a forked child and the lock file
    # belongs to the parent: every engine is unusable there.  The engine lock
    # may have been held by a thread that does not exist in the child either,
    # so it is replaced, and every call raises instead of hanging.
    for e in list(_live_engines):
        e._forked = True
        e._store.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)



def _fb(kind: str, buf: Any) -> Any:
    return ffi.from_buffer(kind, buf)


class Engine:
    """One durable log for many Raft groups.  Create with `pyraftlog.open`
    (its docstring: file modes, and the errors for a wrong path)."""

    def __init__(self, path: "os.PathLike[str] | str", *, segment_size: int = DEFAULT_SEGMENT_SIZE,
                 recovery_mode: str = "tolerate_tail",
                 purge_threshold: int = DEFAULT_PURGE_THRESHOLD,
                 min_sync_interval: float = 0.0, sync: bool = True,
                 prepare_ahead: int = 2, max_free_segments: Optional[int] = None,
                 purge_batch_bytes: Optional[int] = None,
                 progress: Optional[Callable[[int, int], None]] = None,
                 file_mode: int = DEFAULT_FILE_MODE):
        self._forked = False
        self.path = os.fspath(path)
        seg = check_u64(segment_size, "segment_size")
        seg = -(-seg // _PAGE) * _PAGE
        if not R.MIN_SEGMENT_SIZE <= seg <= R.MAX_SEGMENT_SIZE:
            raise ValueError(f"segment_size must be between {R.MIN_SEGMENT_SIZE} and "
                             f"{R.MAX_SEGMENT_SIZE} bytes, got {segment_size}")
        if recovery_mode not in MODES:
            raise ValueError(f"recovery_mode must be one of {MODES}, got {recovery_mode!r}")
        self.purge_threshold = check_u64(purge_threshold, "purge_threshold")
        if not isinstance(min_sync_interval, (int, float)) or isinstance(min_sync_interval, bool):
            raise TypeError("min_sync_interval must be a number of seconds")
        if not 0 <= min_sync_interval <= 10:
            raise ValueError("min_sync_interval must be between 0 and 10 seconds")
        if not isinstance(sync, bool):
            raise TypeError("sync must be True or False")
        prepare_ahead = check_u64(prepare_ahead, "prepare_ahead")
        if not 1 <= prepare_ahead <= 64:
            raise ValueError("prepare_ahead must be between 1 and 64")
        pool_max = prepare_ahead + 2 if max_free_segments is None else check_u64(
            max_free_segments, "max_free_segments")
        if not prepare_ahead <= pool_max <= 1024:
            raise ValueError("max_free_segments must be between prepare_ahead and 1024")
        if purge_batch_bytes is None:
            purge_batch_bytes = min(DEFAULT_PURGE_BATCH_BYTES, seg // 4)
        purge_batch_bytes = check_u64(purge_batch_bytes, "purge_batch_bytes")
        if not 1 <= purge_batch_bytes <= seg // 4:
            raise ValueError(f"purge_batch_bytes must be between 1 and a quarter of the "
                             f"segment_size ({seg // 4}), got {purge_batch_bytes}")
        self.file_mode = check_file_mode(file_mode)
        self.segment_size = seg
        self.recovery_mode = recovery_mode
        self.sync_enabled = sync

        directory.prepare(self.path, file_mode)
        self._lockfd = lock_directory(self.path, file_mode)
        try:
            opts = ffi.new("prl_log_options *", {
                "segment_size": seg, "sync": int(sync),
                "min_sync_interval_ns": int(min_sync_interval * 1e9),
                "prepare_ahead": prepare_ahead, "pool_max": pool_max,
                # past the purge's starting point, one file ready is enough:
                # the purge is about to free segments (and the pool alone
                # then never takes disk use two segments past the threshold)
                "prepare_disk_limit": min(self.purge_threshold + seg, (1 << 64) - 1),
                "file_mode": file_mode})
            hp = ffi.new("prl_log **")
            check(lib.prl_log_open(self.path.encode(), opts, hp), f"open {self.path}")
            self._h = ffi.gc(hp[0], lib.prl_log_free)
            self._core = Core(self._h, self.path)
            self._index = GroupIndex()
            snapshots = SnapshotStore(self.path, crc32c, mode=file_mode)
            t0 = time.monotonic()
            recovery = Recovery(self.path, self._h, recovery_mode, self._index, writable=True,
                                progress=progress)
            self._recovery = recovery.run()
            rec = self._recovery
            took = time.monotonic() - t0
            log.info("%s: recovered %d batches (%d bytes, %d groups) from %d segments in "
                     "%.3f s; %d torn tail bytes cut", self.path, rec.recovered_batches,
                     rec.recovered_bytes, len(self._index.groups), rec.segments, took,
                     rec.dropped_tail_bytes,
                     extra=fields(self.path, batches=rec.recovered_batches,
                                  bytes=rec.recovered_bytes, groups=len(self._index.groups),
                                  segments=rec.segments, seconds=took,
                                  dropped_tail_bytes=rec.dropped_tail_bytes,
                                  skipped_batches=rec.skipped_batches,
                                  skipped_bytes=rec.skipped_bytes))
            recovery.retain_live()
            lib.prl_index_trim()
            for fid in list_free(self.path):
                check(lib.prl_log_adopt_free(self._h, fid), "adopt free segment")
            snapshots.remove_orphans(self._index.snapshot_files())
            seq, offset = rec.resume or (rec.next_seq, 0)
            check(lib.prl_log_start(self._h, seq, rec.next_lsn, offset),
                  f"start writing segment {seq} in {self.path}")
        except BaseException:
            os.close(self._lockfd)
            raise
        # the read path uses the store's index and handle directly (they never change)
        self._store: Store = Store(self.path, self._h, self._core, self._index, snapshots, seg)
        self._health = ffi.new("uint64_t[2]")
        self._health_errno = ffi.new("int32_t *")
        self._recycle_errors = 0
        self._purger = Purger(self._store, self.purge_threshold, purge_batch_bytes)
        self._kicked_at = 0  # disk use when the purger was last woken
        # what `_watch_locked` saw last: it looks only when disk use changed
        self._watched_disk = 0
        self._stalls_seen = 0
        self._stalls = Summary()
        _live_engines.add(self)

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<pyraftlog.Engine {self.path!r}{' closed' if self._closed() else ''}>"

    def close(self) -> None:
        """Make everything written durable, stop the flusher, release the
        directory.  Pending tickets complete (or fail if the log is poisoned).
        Idempotent."""
        if self._forked:
            raise RaftLogError(FORKED)
        self._purger.stop()
        store = self._store
        with store.lock:
            if store.closed:
                return
            store.closed = True
            lib.prl_log_close(self._h)
            store.reap_deletes_locked(final=True)
            os.close(self._lockfd)
            _live_engines.discard(self)
            self._log_stalls(self._stalls.flush())
        # Outside the lock: a callback completing now may call the engine (it
        # gets ClosedError) without deadlocking against close().
        self._core.stop()

    def _closed(self) -> bool:
        store = getattr(self, "_store", None)  # None: __init__ failed
        return store is None or store.closed

    def _check(self) -> None:
        self._store.check()

    # -- writing -----------------------------------------------------------

    def batch(self) -> WriteBatch:
        """A new, empty WriteBatch (the same as `pyraftlog.WriteBatch()`)."""
        self._check()
        return WriteBatch()

    def write(self, batch: WriteBatch) -> Ticket:
        """Append `batch` atomically.  Returns once it is in the log and
        visible to reads; the ticket completes once it is durable.  An invalid
        batch raises and changes nothing."""
        if not isinstance(batch, WriteBatch):
            raise TypeError(f"write takes a WriteBatch, not {type(batch).__name__}")
        store = self._store
        with store.lock:
            store.check()
            lsn = store.write_batch_locked(batch) if batch._n else 0
            ticket = Ticket(self._core, lsn or store.lsns_locked()[1])
            if not lsn:
                return ticket  # nothing to write: durable with what came before
            h = self._health  # shared buffers: read under the lock
            lib.prl_log_health(self._h, h, h + 1, self._health_errno)
            disk, errors = int(h[0]), int(h[1])
            if errors != self._recycle_errors:
                self._report_recycle_errors_locked(errors, int(self._health_errno[0]))
            if disk != self._watched_disk:
                self._watched_disk = disk
                self._watch_locked()
        if disk <= self.purge_threshold:
            self._kicked_at = 0
        elif disk != self._kicked_at:
            # once per change of disk use (segments come and go), not per write
            self._kicked_at = disk
            self._purger.kick()
        return ticket

    def _report_recycle_errors_locked(self, count: int, errno_: int) -> None:
        """Recycling an emptied segment failed (a rename, unlink or directory
        sync; the C preparer retries each a second later)."""
        new, self._recycle_errors = count - self._recycle_errors, count
        log.warning("%s: recycling an emptied segment failed %d time(s): %s; retried",
                    self.path, new, os.strerror(errno_),
                    extra=fields(self.path, recycle_errors=count, errno=errno_))

    def _watch_locked(self) -> None:
        """Reports what the C threads cannot log themselves.  Called when disk
        use changed (a segment was created, recycled or deleted), which is
        also when a rotation that found no prepared file created one."""
        s = self._store.stats_buf
        lib.prl_log_stats(self._h, s)
        if s.poison_errno:
            self._core.note_poison(int(s.poison_errno))
        stalls = int(s.prepare_stalls)
        if stalls > self._stalls_seen:
            new, self._stalls_seen = stalls - self._stalls_seen, stalls
            self._log_stalls(self._stalls.add(stalls=new))

    def _log_stalls(self, summary: Optional[Dict[str, int]]) -> None:
        if summary:
            n = summary["stalls"]
            log.warning("%s: %d rotations found no prepared segment file and created one "
                        "while the writer waited (the disk is slow to allocate, or "
                        "prepare_ahead is too low)", self.path, n,
                        extra=fields(self.path, prepare_stalls=n,
                                     prepare_stalls_total=self._stalls_seen))

    def purge(self, max_bytes: Optional[int] = None) -> int:
        """Rewrite the groups that pin the oldest segments at the head of the
        log so those segments can be recycled; returns the bytes rewritten.
        Runs even below `purge_threshold` for the oldest segment; at most about
        `max_bytes` per call.  A background thread does the same on its own
        whenever disk use passes `purge_threshold`."""
        self._check()
        return self._purger.purge(max_bytes=max_bytes, force=True)

    def sync(self) -> None:
        """Block until everything written so far is durable."""
        store = self._store
        with store.lock:
            store.check()
            written = store.lsns_locked()[1]
        Ticket(self._core, written).wait()

    # -- reading -----------------------------------------------------------

    def _state(self, group: int) -> Optional[GroupState]:
        self._check()
        return self._index.get(check_u64(group, "group"))

    def _bounds_locked(self, group: int) -> Tuple[int, int, int]:
        """(base_index, base_term, last_index) of a group ((0, 0, 0): none)."""
        self._check()
        return self._index.bounds(check_u64(group, "group")) or (0, 0, 0)

    def first_index(self, group: int) -> int:
        with self._store.lock:
            return self._bounds_locked(group)[0] + 1

    def last_index(self, group: int) -> int:
        with self._store.lock:
            return self._bounds_locked(group)[2]

    def term(self, group: int, index: int) -> int:
        """Term of entry `index`, for first_index-1 <= index <= last_index."""
        i = check_u64(index, "index")
        with self._store.lock:
            self._check()
            t = self._index.term(check_u64(group, "group"), i)
            if t is not None:  # the common case: in range
                return t
            base, base_term, last = self._bounds_locked(group)
            if i < base:
                raise CompactedError(f"group {group}: index {i} is compacted "
                                     f"(first index {base + 1})")
            if i > last:
                raise UnavailableError(f"group {group}: index {i} is above the last index {last}")
            return base_term  # term(0) of a group never written

    def entries(self, group: int, lo: int, hi: int, max_size: Optional[int] = None) -> List[Entry]:
        """Entries [lo, hi); with max_size, the longest prefix whose data
        adds up to at most max_size bytes, but at least one entry."""
        lo = check_u64(lo, "lo")
        hi = check_u64(hi, "hi")
        if max_size is not None:
            max_size = check_u64(max_size, "max_size")
        with self._store.lock:
            self._range_locked(group, lo, hi)
            if lo == hi:
                return []
            return self._read_entries_locked(group, lo, hi, max_size)

    def _range_locked(self, group: int, lo: int, hi: int) -> None:
        """Checks that [lo, hi) is a valid range of the group (docs/API.md's order
        of checks: lo > hi, then compacted, then unavailable)."""
        base, _, last = self._bounds_locked(group)
        if lo > hi:
            raise ValueError(f"lo {lo} > hi {hi}")
        if lo <= base:
            raise CompactedError(f"group {group}: index {lo} is compacted "
                                 f"(first index {base + 1})")
        if hi > last + 1:
            raise UnavailableError(f"group {group}: index {hi - 1} is above the last "
                                   f"index {last}")

    def _read_entries_locked(self, group: int, lo: int, hi: int,
                             max_size: Optional[int] = None) -> List[Entry]:
        """Entries [lo, hi) of a group, checked by the caller, copied out of
        the segment mappings by C."""
        if lo >= hi:
            return []
        terms, pos = self._index.terms_and_positions(group, lo, hi)
        n = len(pos)
        pbuf = _fb("uint64_t[]", pos)
        store = self._store
        lens, auxs, size = store.read_meta_locked(pbuf, n)
        if max_size is not None and size > max_size:
            acc = 0
            for k, ln in enumerate(lens):
                acc += ln
                if acc > max_size:
                    n = max(k, 1)
                    break
            size = sum(lens[:n])
            terms, lens, auxs = terms[:n], lens[:n], auxs[:n]
        data = store.read_data_locked(pbuf, n, size)
        return make_entries(Entry, lo, terms, lens, auxs, data)

    def terms(self, group: int, lo: int, hi: int) -> "np.ndarray":
        """Terms of entries [lo, hi) as a numpy uint64 array, without Entry
        objects or reading the log; the same range rules as `entries`."""
        lo = check_u64(lo, "lo")
        hi = check_u64(hi, "hi")
        with self._store.lock:
            self._range_locked(group, lo, hi)
            return self._index.term_array(group, lo, hi)

    def initial_state(self, group: int) -> Tuple[HardState, ConfState]:
        with self._store.lock:
            self._check()
            return self._index.initial_state(check_u64(group, "group"))

    def snapshot(self, group: int) -> Snapshot:
        """The latest snapshot, its data read back (and verified) from its file."""
        with self._store.lock:
            st = self._state(group)
            if st is None:
                return EMPTY_SNAPSHOT
            meta, ref = st.snap_meta, st.snap_ref
            g = check_u64(group, "group")
            # read under the lock: a newer snapshot cannot delete this file meanwhile
            data = self._store.snapshots.read(g, ref) if ref else b""
        return Snapshot(meta, data)

    def get(self, group: int, key: bytes) -> Optional[bytes]:
        k = check_bytes(key, "key")
        with self._store.lock:
            st = self._state(group)
            v = st.kv.get(k) if st is not None and st.kv else None
            return v[0] if v is not None else None

    def groups(self) -> List[int]:
        """Sorted list of the ids of the groups that have any state."""
        return self.group_ids().tolist()  # type: ignore[no-any-return]

    def group_ids(self) -> "np.ndarray":
        """The ids of the groups that have any state, ascending, as a numpy
        uint64 array (a copy): for a million groups, no Python int per group
        until the caller wants one."""
        with self._store.lock:
            self._check()
            ids = self._index.id_array()
        ids.sort()
        return ids

    def group(self, group: int) -> "GroupView":
        self._check()
        return GroupView(self, check_u64(group, "group"))

    def stats(self) -> Dict[str, Any]:
        """Counters and gauges; docs/API.md describes each key."""
        with self._store.lock:
            self._check()
            s = self._store.stats_buf
            lib.prl_log_stats(self._h, s)
            if s.poison_errno:
                self._core.note_poison(int(s.poison_errno))
            rec = self._recovery
            out: Dict[str, Any] = {
                "segments": int(s.segments),
                "disk_bytes": int(s.disk_bytes),
                "live_bytes": int(s.live_bytes),
                "groups": len(self._index.groups),
                "entries": self._index.entry_count(),
                "index_bytes": self._index.nbytes(),
                "writes": int(s.writes),
                "syncs": int(s.syncs),
                "bytes_written": int(s.bytes_written),
                "records_written": int(s.records_written),
                "sync_seconds": int(s.sync_ns) / 1e9,
                "written_lsn": int(s.written_lsn),
                "durable_lsn": int(s.durable_lsn),
                "rotations": int(s.rotations),
                "free_segments": int(s.free_segments),
                "segments_created": int(s.segments_created),
                "segments_reused": int(s.segments_reused),
                "segments_recycled": int(s.segments_recycled),
                "segments_deleted": int(s.segments_deleted),
                "prepare_stalls": int(s.prepare_stalls),
                "recycle_errors": int(s.recycle_errors),
                "table_slots": int(s.table_slots),
                "purge_runs": self._purger.runs,
                "purge_rewritten_bytes": self._purger.rewritten_bytes,
                "purge_rewritten_groups": self._purger.rewritten_groups,
                "purge_skipped_groups": self._purger.skipped_groups,
                "poisoned_errno": int(s.poison_errno),
                "recovered_batches": rec.recovered_batches,
                "recovered_bytes": rec.recovered_bytes,
                "dropped_tail_bytes": rec.dropped_tail_bytes,
                "skipped_bytes": rec.skipped_bytes,
                "skipped_batches": rec.skipped_batches,
                "batches_per_sync": _histogram(s.batches_per_sync, 16),
                "durable_latency_us": _histogram(s.durable_latency_us, 24),
            }
        out["durable_latency_p50_us"] = _percentile(out["durable_latency_us"], 0.50)
        out["durable_latency_p99_us"] = _percentile(out["durable_latency_us"], 0.99)
        return out


def _histogram(buckets: Any, n: int) -> Dict[int, int]:
    """{lower bound of a power-of-two bucket: count}, empty buckets left out."""
    return {1 << k: int(buckets[k]) for k in range(n) if buckets[k]}


def _percentile(hist: Dict[int, int], q: float) -> Optional[int]:
    """Upper bound of the power-of-two bucket holding quantile q."""
    total = sum(hist.values())
    if not total:
        return None
    acc = 0
    for lower, count in sorted(hist.items()):
        acc += count
        if acc >= q * total:
            return lower * 2
    return None  # pragma: no cover


def open(path: "os.PathLike[str] | str", **options: Any) -> Engine:  # noqa: A001
    """Open (creating if missing, with missing parents) the log in directory
    `path`; see Engine and docs/API.md (the options).

    New files are private: `file_mode` (default 0o600; e.g. 0o640 for group
    read access) for segment, snapshot and lock files, the matching mode with
    search bits (0o700, 0o750) for the directory and `snapshots/`; the umask
    applies; existing files keep their modes.  A path that is not a
    directory is NotADirectoryError, a directory this process cannot write
    PermissionError, both naming the path.  A name of the log format that is
    not a regular file (a symbolic link, FIFO, device or directory planted
    in the log directory) is a CorruptionError naming it: nothing in a log
    directory is followed, opened elsewhere or waited on."""
    return Engine(path, **options)

