"""The directory lock: one Engine per log directory, across processes."""
from __future__ import annotations

import errno
import fcntl
import os

from .directory import DEFAULT_FILE_MODE, open_regular
from .errors import CorruptionError, LockedError

LOCK_FILE = "LOCK"


def lock_directory(path: str, mode: int = DEFAULT_FILE_MODE) -> int:
    """An advisory lock on `path`/LOCK (created with `mode`); LockedError if
    another Engine holds it.  A LOCK that is not a regular file (a planted
    symbolic link, FIFO or directory) is never followed or waited on: an
    OSError naming it (IsADirectoryError for a directory; its bytes are never
    read, so this is not corruption of the log).

    flock locks belong to the open file description, so a second open in the
    same process conflicts too (POSIX fcntl locks would not)."""
    name = os.path.join(path, LOCK_FILE)
    try:
        fd = open_regular(name, os.O_RDWR | os.O_CREAT, mode)
    except PermissionError as exc:
        raise PermissionError(errno.EACCES, f"cannot create or open {LOCK_FILE} in the log "
                              f"directory (it must be writable): {exc.strerror}", path) from None
    except CorruptionError as exc:
        err = errno.EISDIR if "directory" in exc.reason else errno.EINVAL
        raise OSError(err, exc.reason, name) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockedError(f"{path} is locked by another pyraftlog Engine") from None
    return fd
