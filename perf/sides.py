"""Building blocks shared by the write-path benchmarks.

* :class:`EngineSide` — a :class:`harness.Side` holding an open pyraftlog
  engine: next index per group, ``stats()`` counters, compaction of every
  group between runs (untimed) so the disk stays bounded, and the number of
  bytes one write really puts in the log (to size the references).
* :class:`RawFile` — the reference's file: preallocated by *writing* zeros
  (4 KiB at a time, see below) and syncing, so that the reference's ``pwrite``s land in allocated,
  written blocks (no unwritten-extent conversion, no journal commit per
  ``fdatasync``): the fastest a raw WAL gets, hence the strictest reference.
  Offsets go round the file like a ring.
* :func:`encoded_records` — bytes shaped like a batch of log records, used
  as the references' "pre-encoded" payload.
"""
from __future__ import annotations

import itertools
import os
import struct
import threading
from typing import Optional

from harness import Side

ENTRY_BYTES = 256  # payload of every entry in the write-path workloads
TERM = 1
# Fallback record size when the engine does not report bytes_written:
# 256 B of data + a 32 B fixed record header (DESIGN.md: "288-byte records").
RECORD_OVERHEAD = 32
BATCH_OVERHEAD = 32
RAW_FILE_BYTES = 64 << 20  # like one segment
PREFILL_CHUNK = 4096


class Skip(Exception):
    """Raised by a benchmark that cannot run here; the message says why."""


def payload(n: int = ENTRY_BYTES) -> bytes:
    return os.urandom(n)


def import_engine():
    try:
        import pyraftlog  # noqa: F401
    except Exception as e:  # noqa: BLE001 - reported as a skip
        raise Skip(f"pyraftlog is not importable ({type(e).__name__}: {e})") from e
    if not hasattr(pyraftlog, "open"):
        raise Skip("pyraftlog has no open() yet")
    return pyraftlog


def encoded_records(n_entries: int, total: int, data: bytes) -> bytes:
    """``total`` bytes laid out like a batch of ``n_entries`` records (header + data, 8-aligned)."""
    out = bytearray(struct.pack("<QQQQ", 0x7061726c, n_entries, total, 0))
    for i in range(n_entries):
        out += struct.pack("<IBxxxQQQ", len(data), 0, i + 1, i + 1, TERM)[:RECORD_OVERHEAD]
        out += data
        out += b"\0" * (-len(out) % 8)
    if len(out) < total:
        out += b"\0" * (total - len(out))
    return bytes(out[:total])


class RawFile:
    """A preallocated file written like a ring; thread-safe offsets."""

    def __init__(self, path: str, size: int = RAW_FILE_BYTES):
        self.path, self.size = path, size
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        # 4 KiB writes, not 1 MiB ones: the page cache keeps the folio size
        # the file was written with, and the kernel charges a whole folio to
        # write_bytes when any byte of it is dirtied (ext4 large folios), so
        # a 1 MiB prefill would make every later 288 B pwrite count as 1 MiB
        # written (measured: 1,066,926 B per 18.5 KB write; 4 KiB: 22,593 B,
        # which matches the device's own count).  Small folios are also the
        # faster case for the reference (0.136 vs 0.159 ms per write+sync).
        zeros = b"\0" * PREFILL_CHUNK
        for off in range(0, size, PREFILL_CHUNK):
            os.pwrite(self.fd, zeros[: min(PREFILL_CHUNK, size - off)], off)
        os.fsync(self.fd)
        self._next = 0
        self._lock = threading.Lock()

    def offset(self, n: int) -> int:
        """Reserve ``n`` bytes; wrap to 0 when they would pass the end."""
        with self._lock:
            off = self._next
            if off + n > self.size:
                off = 0
            self._next = off + n
            return off

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            os.unlink(self.path)
        except OSError:
            pass


class EngineSide(Side):
    """pyraftlog opened in ``workdir``; subclasses implement ``run``."""

    label = "pyraftlog"

    def __init__(self, workdir: str, groups: int, **options):
        self.pyraftlog = import_engine()
        self.workdir = workdir
        self.groups = list(range(1, groups + 1))  # group ids 1..N
        self.options = options
        self.log = None
        self.next_index: dict[int, int] = {}
        self._stats0: Optional[dict] = None
        self.max_disk_bytes = 0

    def setup(self) -> None:
        self.log = self.pyraftlog.open(os.path.join(self.workdir, "log"), **self.options)
        self.next_index = {g: self.log.last_index(g) + 1 for g in self.groups}
        self._stats0 = self.stats()

    def stats(self) -> dict:
        try:
            return dict(self.log.stats())
        except Exception:  # noqa: BLE001 - stats are optional figures
            return {}

    def counters(self) -> Optional[dict]:
        s = self.stats()
        if "syncs" not in s or "writes" not in s:
            return None
        out = {"syncs": s["syncs"], "writes": s["writes"]}
        if "sync_seconds" in s:  # time the flusher spent in fdatasync
            out["sync_seconds"] = s["sync_seconds"]
        return out

    def bytes_per_write(self, entries_per_write: int) -> tuple[int, str]:
        """Log bytes one write took since ``setup`` (from stats), else an estimate."""
        s0, s1 = self._stats0 or {}, self.stats()
        try:
            writes = s1["writes"] - s0.get("writes", 0)
            nbytes = s1["bytes_written"] - s0.get("bytes_written", 0)
            if writes > 0 and nbytes > 0:
                return max(1, round(nbytes / writes)), "measured from stats()"
        except (KeyError, TypeError):
            pass
        est = BATCH_OVERHEAD + entries_per_write * (ENTRY_BYTES + RECORD_OVERHEAD)
        return est, "estimated (stats() has no bytes_written)"

    def maintain(self) -> None:
        """Compact every group to its last index so that segments can be reclaimed."""
        b = self.pyraftlog.WriteBatch()
        n = 0
        for g in self.groups:
            last = self.next_index[g] - 1
            if last >= self.log.first_index(g):
                b.compact(g, last)
                n += 1
        if n:
            self.log.write(b).wait()
        self.max_disk_bytes = max(self.max_disk_bytes, self.stats().get("disk_bytes", 0) or 0)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None


def counter():
    """A thread-safe (under the GIL) counter: ``next(c)``."""
    return itertools.count()
