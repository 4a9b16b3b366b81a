"""PySyncObj's full-dump file (``fullDumpFile``, its snapshot) made durable.

PySyncObj writes a dump to a temporary file and renames it over the previous
one with ``pysyncobj.serializer.atomicReplace`` (``os.rename`` on POSIX, no
``fsync``), then compacts its log: after a power loss the dump can be empty
or the old one while the entries it replaced are gone from the log.
:func:`~pyraftlog.contrib.pysyncobj.install` (``durable_dumps=True``) puts
:func:`durable_replace` in its place.
"""

from __future__ import annotations

import os

__all__ = ["durable_replace"]


def durable_replace(src: str, dst: str) -> bool:
    """``os.replace(src, dst)`` made durable: fsync ``src``, rename, fsync the directory."""
    fd = os.open(src, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(src, dst)
    dirname = os.path.dirname(os.path.abspath(dst))
    fd = os.open(dirname, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True
