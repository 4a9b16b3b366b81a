"""The exceptions of pyraftlog (docs/API.md, "Errors")."""
from __future__ import annotations

import os


class RaftLogError(Exception):
    """Base class of every pyraftlog error."""


class CompactedError(RaftLogError):
    """The requested index is at or below the group's compaction point."""


class UnavailableError(RaftLogError):
    """The requested index is above the group's last index."""


class SnapshotOutOfDateError(RaftLogError):
    """The snapshot is not newer than the group's snapshot or compaction point."""


class CorruptionError(RaftLogError):
    """Invalid bytes on disk.  `path`, `offset` and `reason` say where and why."""

    def __init__(self, path: str, offset: int, reason: str):
        super().__init__(f"{path}: offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class LockedError(RaftLogError):
    """Another open Engine (this process or another) holds the directory."""


class ClosedError(RaftLogError):
    """The engine was closed."""


FORKED = "an Engine cannot be used in a forked child; open it there anew"  # a RaftLogError


class PoisonedError(RaftLogError, OSError):
    """A sync or write failed; the engine accepts no more writes.

    Reads keep working; reopening the directory recovers what was durable."""

    def __init__(self, err: int, what: str = "fdatasync"):
        OSError.__init__(self, err, f"log poisoned by a failed {what}: {os.strerror(err)}")


__all__ = [
    "RaftLogError",
    "CompactedError",
    "UnavailableError",
    "SnapshotOutOfDateError",
    "CorruptionError",
    "LockedError",
    "ClosedError",
    "PoisonedError",
]
