"""pyraftlog: one durable write-ahead log for many Raft groups.

    log = pyraftlog.open(path)
    b = pyraftlog.WriteBatch()
    b.append(group, [pyraftlog.Entry(1, 1, b"x")])
    log.write(b).wait()          # durable

See README.md and docs/API.md (the whole contract)."""
from ._version import __version__
from .batch import WriteBatch
from .engine import Engine, open
from .errors import (
                     ClosedError,
                     CompactedError,
                     CorruptionError,
                     LockedError,
                     PoisonedError,
                     RaftLogError,
                     SnapshotOutOfDateError,
                     UnavailableError,
)
from .group_view import GroupView
from .ticket import Ticket
from .types import ConfState, Entry, HardState, Snapshot, SnapshotMeta

__all__ = [
    "__version__", "open", "Engine", "GroupView", "WriteBatch", "Ticket",
    "Entry", "HardState", "ConfState", "SnapshotMeta", "Snapshot",
    "RaftLogError", "CompactedError", "UnavailableError", "SnapshotOutOfDateError",
    "CorruptionError", "LockedError", "ClosedError", "PoisonedError",
]
