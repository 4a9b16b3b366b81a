"""Test hooks: make a named place fail with an errno (raft-engine style
failpoints).  C places: `C_POINTS`, read from the one table in
csrc/failpoint.c (any other name raises ValueError).  Python places:
"snapshot::write", "snapshot::fsync", "snapshot::rename", "snapshot::dir_fsync".

    with pyraftlog.failpoint.armed("flusher::fdatasync", errno.EIO):
        ...

Failpoints are process-wide and meant for tests only."""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Tuple

from . import snapshot_store
from ._native import ffi, lib


def _c_points() -> Tuple[str, ...]:
    """The C failpoints, from the one table in csrc/failpoint.c."""
    names: List[str] = []
    while True:
        name = lib.prl_failpoint_name(len(names))
        if name == ffi.NULL:
            return tuple(names)
        names.append(ffi.string(name).decode())


C_POINTS = _c_points()
PY_POINTS = ("snapshot::write", "snapshot::fsync", "snapshot::rename", "snapshot::dir_fsync")


def set(name: str, err: int, count: int = -1) -> None:  # noqa: A001 - mirrors the C name
    """The next `count` hits of `name` fail with errno `err` (count < 0: all
    of them until cleared; err 0 clears).  Python places ignore `count`."""
    if name in PY_POINTS:
        if err:
            snapshot_store.FAILPOINTS[name] = err
        else:
            snapshot_store.FAILPOINTS.pop(name, None)
    elif lib.prl_failpoint_set(name.encode(), err, count) != 0:  # C knows its own names
        raise ValueError(f"unknown failpoint {name!r}; known: {C_POINTS + PY_POINTS}")


def clear_all() -> None:
    for name in C_POINTS + PY_POINTS:
        set(name, 0)


@contextlib.contextmanager
def armed(name: str, err: int, count: int = -1) -> Iterator[None]:
    set(name, err, count)
    try:
        yield
    finally:
        set(name, 0)


def sync_history(engine: object) -> List[int]:
    """The lsn each of the engine's last (up to 256) syncs made durable."""
    out = ffi.new("uint64_t[256]")
    n = ffi.new("uint64_t *")
    lib.prl_log_sync_history(engine._h, out, 256, n)  # type: ignore[attr-defined]
    return [int(out[i]) for i in range(int(n[0]))]
