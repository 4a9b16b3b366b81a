"""The raw C bindings (ffi, lib) and the one table that turns C status codes
into the exceptions of docs/API.md.  Nothing else in the package calls `lib`
without going through `check`."""
from __future__ import annotations

import errno
import os
from typing import Any, NoReturn

from ._pyraftlog_c import ffi, lib  # type: ignore[import-not-found]
from .errors import (
    ClosedError,
    CompactedError,
    CorruptionError,
    PoisonedError,
    SnapshotOutOfDateError,
)

__all__ = ["ffi", "lib", "check", "crc32c", "raise_status", "raise_batch_error", "REASONS",
           "is_clean_end"]

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


def raise_batch_error(rc: int, res: Any, segment_size: int) -> NoReturn:
    """The exception of a batch that prl_batch_check refused (res: its
    prl_batch_result): docs/API.md's error for the rule the batch broke."""
    if rc == lib.PRL_E_TOO_LARGE:
        raise ValueError(f"batch of {int(res.total)} bytes does not fit a segment of "
                         f"{segment_size} bytes (raise segment_size)")
    g, a, b, code = int(res.group), int(res.a), int(res.b), res.code
    if code == lib.PRL_BATCH_GAP:
        raise ValueError(f"group {g}: entries start at {a}, leaving a gap after the "
                         f"last index {b}")
    if code == lib.PRL_BATCH_COMPACT_COMPACTED:
        raise CompactedError(f"group {g}: compact {a}: already compacted to {b}")
    if code == lib.PRL_BATCH_COMPACT_ABOVE:
        raise ValueError(f"group {g}: compact {a} is above the last index {b}")
    if code == lib.PRL_BATCH_TRUNCATE_COMPACTED:
        raise CompactedError(f"group {g}: truncate {a}: entries up to {b} are compacted")
    if code == lib.PRL_BATCH_SNAPSHOT_OLD:
        raise SnapshotOutOfDateError(f"group {g}: snapshot at {a} is not newer than {b}")
    raise RuntimeError(f"write: batch refused with status {rc}, rule {code} (internal error)")


def crc32c(data: bytes) -> int:
    """CRC-32C of `data` (the C implementation: hardware where available)."""
    return int(lib.prl_crc32c(0, ffi.from_buffer(data), len(data)))


def check(rc: int, what: str) -> None:
    """Raise the exception for C status `rc` (0 is success)."""
    if rc:
        raise_status(rc, what)

