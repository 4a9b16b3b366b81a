"""Snapshot data, one file per snapshot, outside the log.

A file is written to a temporary name, fsynced, renamed into place and the
directory fsynced — all before the log record that refers to it is written,
so a durable record never points at a file that is not.  The record carries
the data's size and CRC-32C and the file repeats them in its header, so a
missing, truncated or corrupt file is a CorruptionError, never wrong data.
Files a newer durable record superseded are deleted by the Engine.

File `snapshots/<group>-<file_id>.snap` (hex), little-endian:
  0  u8[8] magic "PRLSNAP1"
  8  u64   group
  16 u64   file_id
  24 u64   data size
  32 u32   CRC-32C of the data
  36 u32   CRC-32C of bytes [0, 36)
  40       data
"""
from __future__ import annotations

import os
import re
import struct
from typing import Callable, Dict, Iterable, Optional, Set, Tuple

from .errors import CorruptionError

MAGIC = b"PRLSNAP1"
HEADER = struct.Struct("<8sQQQII")
_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")

# Test hook: failpoint name -> errno ("snapshot::write", "snapshot::fsync",
# "snapshot::rename", "snapshot::dir_fsync").  Empty in production.
FAILPOINTS: Dict[str, int] = {}


def _fail(point: str) -> None:
    err = FAILPOINTS.get(point)
    if err:
        raise OSError(err, f"{point}: {os.strerror(err)} (injected)")


class SnapshotStore:
    def __init__(self, root: str, crc32c: Callable[[bytes], int], create: bool = True):
        self.dir = os.path.join(root, "snapshots")
        self._crc = crc32c
        if create:
            os.makedirs(self.dir, exist_ok=True)

    def path(self, group: int, file_id: int) -> str:
        return os.path.join(self.dir, f"{group:016x}-{file_id:016x}.snap")

    def write(self, group: int, file_id: int, data: bytes) -> None:
        """Store `data` durably (temp file, fsync, rename, directory fsync)."""
        final = self.path(group, file_id)
        tmp = final + ".tmp"
        head = HEADER.pack(MAGIC, group, file_id, len(data), self._crc(data), 0)
        head = head[:-4] + struct.pack("<I", self._crc(head[:-4]))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            _fail("snapshot::write")
            _write_all(fd, memoryview(head))
            _write_all(fd, memoryview(data))
            _fail("snapshot::fsync")
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink_quietly(tmp)
            raise
        os.close(fd)
        try:
            _fail("snapshot::rename")
            os.rename(tmp, final)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        try:
            self.sync_dir()
        except BaseException:
            _unlink_quietly(final)  # no record will name it
            raise

    def sync_dir(self) -> None:
        _fail("snapshot::dir_fsync")
        dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def read(self, group: int, ref: Tuple[int, int, int]) -> bytes:
        size, file_id, crc = ref
        path = self.path(group, file_id)
        try:
            with open(path, "rb") as f:
                raw = f.read(HEADER.size + size + 1)
        except FileNotFoundError:
            raise CorruptionError(path, 0, "snapshot file missing") from None
        if len(raw) < HEADER.size:
            raise CorruptionError(path, 0, "snapshot file shorter than its header")
        magic, g, fid, hsize, hcrc, head_crc = HEADER.unpack_from(raw)
        if magic != MAGIC:
            raise CorruptionError(path, 0, "bad snapshot magic")
        if head_crc != self._crc(raw[:HEADER.size - 4]):
            raise CorruptionError(path, 32, "snapshot header checksum mismatch")
        if (g, fid, hsize, hcrc) != (group, file_id, size, crc):
            raise CorruptionError(path, 8, "snapshot header does not match the log record")
        data = raw[HEADER.size:]
        if len(data) != size:
            raise CorruptionError(path, HEADER.size, "snapshot file has a bad length")
        if self._crc(data) != crc:
            raise CorruptionError(path, HEADER.size, "snapshot data checksum mismatch")
        return data

    def delete(self, group: int, file_id: int) -> None:
        _unlink_quietly(self.path(group, file_id))

    def files(self) -> Iterable[Tuple[int, int]]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            m = _NAME.match(n)
            if m:
                out.append((int(m.group(1), 16), int(m.group(2), 16)))
        return out

    def remove_orphans(self, referenced: Set[Tuple[int, int]]) -> int:
        """Delete files no record refers to (a crash between writing a file
        and its record becoming durable) and leftover temp files."""
        removed = 0
        for g, fid in self.files():
            if (g, fid) not in referenced:
                self.delete(g, fid)
                removed += 1
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            names = []
        for n in names:
            if n.endswith(".tmp"):
                _unlink_quietly(os.path.join(self.dir, n))
        return removed


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _unlink_quietly(path: str) -> Optional[bool]:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
