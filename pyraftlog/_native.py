"""The raw C bindings (ffi, lib) and the one table that turns C status codes
into the exceptions of API.md.  Nothing else in the package calls `lib`
without going through `check`."""
from __future__ import annotations

import errno
import os
from typing import NoReturn

from ._pyraftlog_c import ffi, lib  # type: ignore[import-not-found]
from .errors import ClosedError, CorruptionError, PoisonedError

__all__ = ["ffi", "lib", "check", "raise_status", "REASONS", "is_clean_end"]

# prl_reason -> the short, testable reason a CorruptionError carries
REASONS = {
    lib.PRL_R_END_ZERO: "end of log (zeros)",
    lib.PRL_R_END_STALE: "end of log (leftovers of a recycled segment)",
    lib.PRL_R_END_SPACE: "end of segment",
    lib.PRL_R_BAD_LENGTH: "bad batch length",
    lib.PRL_R_BAD_CHECKSUM: "batch checksum mismatch",
    lib.PRL_R_BAD_RECORD: "bad record length",
    lib.PRL_R_BAD_RECORD_TYPE: "unknown record type",
    lib.PRL_R_BAD_LSN: "batch sequence number out of order",
    lib.PRL_R_SHORT_FILE: "file shorter than a segment header",
    lib.PRL_R_BAD_MAGIC: "bad segment magic",
    lib.PRL_R_BAD_VERSION: "unsupported segment format version",
    lib.PRL_R_BAD_HEADER_CHECKSUM: "segment header checksum mismatch",
    lib.PRL_R_SEQ_MISMATCH: "segment header names another sequence number",
    lib.PRL_R_BAD_SEGMENT_SIZE: "bad segment size in header",
}


def is_clean_end(reason: int) -> bool:
    return reason in (lib.PRL_R_END_ZERO, lib.PRL_R_END_STALE, lib.PRL_R_END_SPACE)


def raise_status(rc: int, what: str, poison_errno: int = errno.EIO) -> NoReturn:
    """The exception of C status `rc` (what: the operation, for the
    message; poison_errno: why the log is poisoned, for PRL_E_POISONED)."""
    if rc == lib.PRL_E_POISONED:
        raise PoisonedError(poison_errno)
    if rc == lib.PRL_E_CLOSED:
        raise ClosedError(f"{what}: the log is closed")
    if rc == lib.PRL_E_TOO_LARGE:
        raise ValueError(f"{what}: batch is larger than a segment (raise segment_size)")
    if rc == lib.PRL_E_TIMEOUT:
        raise TimeoutError(f"{what}: timed out")
    if rc == lib.PRL_E_BAD_POSITION:
        raise RuntimeError(f"{what}: index points at no record (internal error)")
    if rc == lib.PRL_E_BAD_ARGUMENT:
        raise ValueError(f"{what}: bad argument")
    if rc == lib.PRL_E_NOT_REGULAR:
        raise CorruptionError(what, 0, "not a regular file (a symbolic link, directory, FIFO, "
                                       "socket or device)")
    raise OSError(-rc, f"{what}: {os.strerror(-rc)}")


def check(rc: int, what: str) -> None:
    """Raise the exception for C status `rc` (0 is success)."""
    if rc:
        raise_status(rc, what)

