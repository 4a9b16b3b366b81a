"""Snapshot data, one file per snapshot, outside the log.

Every file is opened relative to a descriptor of `snapshots/` (itself never a
symbolic link), never through a link and never blocking (directory.py); a
name of the format that is not a regular file is a CorruptionError.

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
import stat
import struct
from typing import Callable, Dict, Iterable, Optional, Set, Tuple

from .directory import DEFAULT_FILE_MODE, dir_mode, kind, open_regular, open_subdir
from .errors import CorruptionError

MAGIC = b"PRLSNAP1"
HEADER = struct.Struct("<8sQQQII")
_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")
_TMP_NAME = re.compile(r"\.tmp$")  # any leftover temp file (a crash while writing one)

# Test hook: failpoint name -> errno ("snapshot::write", "snapshot::fsync",
# "snapshot::rename", "snapshot::dir_fsync").  Empty in production.
FAILPOINTS: Dict[str, int] = {}


def _fail(point: str) -> None:
    err = FAILPOINTS.get(point)
    if err:
        raise OSError(err, f"{point}: {os.strerror(err)} (injected)")


class SnapshotStore:
    def __init__(self, root: str, crc32c: Callable[[bytes], int], create: bool = True,
                 mode: int = DEFAULT_FILE_MODE):
        self.dir = os.path.join(root, "snapshots")
        self._crc = crc32c
        self._mode = mode
        if create:
            try:
                os.mkdir(self.dir, dir_mode(mode))
            except FileExistsError:
                pass
            os.close(open_subdir(self.dir))  # a symbolic link or a file there: refused now

    def _name(self, group: int, file_id: int) -> str:
        return f"{group:016x}-{file_id:016x}.snap"

    def path(self, group: int, file_id: int) -> str:
        return os.path.join(self.dir, self._name(group, file_id))

    def write(self, group: int, file_id: int, data: bytes) -> None:
        """Store `data` durably (temp file, fsync, rename, directory fsync)."""
        final = self._name(group, file_id)
        tmp = final + ".tmp"
        head = HEADER.pack(MAGIC, group, file_id, len(data), self._crc(data), 0)
        head = head[:-4] + struct.pack("<I", self._crc(head[:-4]))
        dfd = open_subdir(self.dir)
        try:
            fd = open_regular(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self._mode,
                              dir_fd=dfd, shown=os.path.join(self.dir, tmp))
            try:
                _fail("snapshot::write")
                _write_all(fd, memoryview(head))
                _write_all(fd, memoryview(data))
                _fail("snapshot::fsync")
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                _unlink_quietly(tmp, dfd)
                raise
            os.close(fd)
            try:
                _fail("snapshot::rename")
                os.rename(tmp, final, src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                _unlink_quietly(tmp, dfd)
                raise
            try:
                _fail("snapshot::dir_fsync")
                os.fsync(dfd)
            except BaseException:
                _unlink_quietly(final, dfd)  # no record will name it
                raise
        finally:
            os.close(dfd)

    def sync_dir(self) -> None:
        _fail("snapshot::dir_fsync")
        dfd = open_subdir(self.dir)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def read(self, group: int, ref: Tuple[int, int, int]) -> bytes:
        size, file_id, crc = ref
        path = self.path(group, file_id)
        try:
            dfd = open_subdir(self.dir)
        except FileNotFoundError:
            raise CorruptionError(path, 0, "snapshot file missing") from None
        try:
            fd = open_regular(self._name(group, file_id), os.O_RDONLY, dir_fd=dfd, shown=path)
        except FileNotFoundError:
            raise CorruptionError(path, 0, "snapshot file missing") from None
        finally:
            os.close(dfd)
        with os.fdopen(fd, "rb") as f:
            raw = f.read(HEADER.size + size + 1)
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
        try:
            dfd = open_subdir(self.dir)
        except FileNotFoundError:
            return
        try:
            _unlink_quietly(self._name(group, file_id), dfd)
        finally:
            os.close(dfd)

    def _names(self) -> Dict[str, "os.stat_result"]:
        """The names of the format in snapshots/ (snapshot and temp files),
        each checked to be a regular file (a CorruptionError otherwise)."""
        try:
            dfd = open_subdir(self.dir)
        except FileNotFoundError:
            return {}
        try:
            out = {}
            for n in os.listdir(dfd):
                if not (_NAME.match(n) or _TMP_NAME.search(n)):
                    continue  # not ours: never opened, written or deleted
                try:
                    st = os.stat(n, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed meanwhile by a live writer
                if not stat.S_ISREG(st.st_mode):
                    raise CorruptionError(os.path.join(self.dir, n), 0,
                                          f"not a regular file ({kind(st.st_mode)})")
                out[n] = st
            return out
        finally:
            os.close(dfd)

    def files(self) -> Iterable[Tuple[int, int]]:
        return list(self.sizes())

    def sizes(self) -> Dict[Tuple[int, int], int]:
        """{(group, file_id): bytes} of the snapshot files."""
        out = {}
        for n, st in self._names().items():
            m = _NAME.match(n)
            if m:
                out[(int(m.group(1), 16), int(m.group(2), 16))] = st.st_size
        return out

    def remove_orphans(self, referenced: Set[Tuple[int, int]]) -> int:
        """Delete files no record refers to (a crash between writing a file
        and its record becoming durable) and leftover temp files."""
        removed = 0
        names = self._names()
        for n in names:
            m = _NAME.match(n)
            if m and (int(m.group(1), 16), int(m.group(2), 16)) not in referenced:
                self.delete(int(m.group(1), 16), int(m.group(2), 16))
                removed += 1
        tmps = [n for n in names if _TMP_NAME.search(n)]
        if tmps:
            dfd = open_subdir(self.dir)
            try:
                for n in tmps:
                    _unlink_quietly(n, dfd)
            finally:
                os.close(dfd)
        return removed


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _unlink_quietly(name: str, dir_fd: int) -> Optional[bool]:
    try:
        os.unlink(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False
