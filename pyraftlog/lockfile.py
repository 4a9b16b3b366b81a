"""The directory lock: one Engine per log directory, across processes."""
from __future__ import annotations

import fcntl
import os

from .errors import LockedError

LOCK_FILE = "LOCK"


def lock_directory(path: str) -> int:
    """An advisory lock on `path`/LOCK; LockedError if another Engine holds it.

    flock locks belong to the open file description, so a second open in the
    same process conflicts too (POSIX fcntl locks would not)."""
    fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockedError(f"{path} is locked by another pyraftlog Engine") from None
    return fd
