"""Installing the journals into PySyncObj: ``install`` and ``uninstall``.

PySyncObj has no hook for a journal class, so :func:`install` replaces, where
``SyncObj`` looks them up:

- ``pysyncobj.syncobj.createJournal``: a ``journalFile`` name gives a
  :class:`PyraftlogJournal` (restored by :func:`uninstall`);
- the name-mangled ``SyncObj.__sendNextNodeIdx`` (a follower's acknowledgement):
  the journal is flushed before the reply leaves (stays installed);
- ``SyncObj._checkCommandsToApply`` (the end of a tick): buffered entries are
  handed to the engine without waiting (stays installed);
- ``pysyncobj.serializer.atomicReplace``: :func:`durable_replace`, with
  ``durable_dumps`` (stays installed).

The hooks that stay serve the ``SyncObj`` objects created while an
installation was active, which keep their journals.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyraftlog

from .dump_file import durable_replace
from .journal import PyraftlogJournal

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["GroupIdFunc", "Installation", "install", "uninstall"]

logger = logging.getLogger(__name__)

GroupIdFunc = Callable[[Any], int]

_state_lock = threading.RLock()
_stack: list[Installation] = []     # active Installations, newest last
_ORIG: dict[str, Any] = {}          # what install() replaced: restored / called by the hooks


class Installation:
    """What :func:`install` returns; a context manager that uninstalls on exit."""

    def __init__(self, engine: pyraftlog.Engine, group_id: GroupIdFunc | None) -> None:
        self.engine = engine
        self.group_id = group_id

    def create_journal(self, journal_file: str | bytes) -> PyraftlogJournal:
        group = self.group_id(journal_file) if self.group_id is not None else None
        return PyraftlogJournal(self.engine, journal_file, group=group)

    def uninstall(self) -> None:
        uninstall(self)

    def __enter__(self) -> Installation:  # noqa: PYI034 - final class
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.uninstall()


def _create_journal(journalFile: Any = None) -> Any:
    """Replacement for ``pysyncobj.syncobj.createJournal``."""
    with _state_lock:
        inst = _stack[-1] if _stack else None
    if journalFile is None or inst is None:
        return _ORIG["createJournal"](journalFile)
    _warn_without_dump_file()
    return inst.create_journal(journalFile)


def _warn_without_dump_file() -> None:
    try:
        caller = sys._getframe(2).f_locals.get("self")
        conf = getattr(caller, "_SyncObj__conf", None)
    except (AttributeError, ValueError):  # pragma: no cover - best effort
        return
    if conf is not None and getattr(conf, "fullDumpFile", "") is None:
        logger.warning(
            "SyncObj with journalFile=%r but no fullDumpFile: after PySyncObj "
            "compacts its log (logCompactionMinEntries/logCompactionMinTime), a "
            "restarted node cannot rebuild its state; set fullDumpFile",
            conf.journalFile)


def _send_next_node_idx(self: Any, *args: Any, **kwargs: Any) -> Any:
    """Wraps ``SyncObj.__sendNextNodeIdx``: the follower's reply to
    append-entries and snapshot transfers.  Everything the journal holds is
    made durable before the reply leaves."""
    journal = getattr(self, "_SyncObj__raftLog", None)
    if isinstance(journal, PyraftlogJournal):
        journal.flush()
    return _ORIG["sendNextNodeIdx"](self, *args, **kwargs)


_send_next_node_idx._pyraftlog_hook = True  # type: ignore[attr-defined]


def _check_commands_to_apply(self: Any, *args: Any, **kwargs: Any) -> Any:
    """Wraps ``SyncObj._checkCommandsToApply``, the last step of a tick before
    the tick thread sleeps in its poller (a leader adds the new commands to its
    journal there): what the journal buffered is handed to the engine then,
    without waiting (:meth:`PyraftlogJournal.issue`)."""
    result = _ORIG["checkCommandsToApply"](self, *args, **kwargs)
    journal = getattr(self, "_SyncObj__raftLog", None)
    if isinstance(journal, PyraftlogJournal):
        journal.issue()
    return result


_check_commands_to_apply._pyraftlog_hook = True  # type: ignore[attr-defined]


def install(engine: pyraftlog.Engine, group_id: GroupIdFunc | None = None,
            durable_dumps: bool = True) -> Installation:
    """Make every new ``SyncObj`` that has a ``journalFile`` keep its journal
    in ``engine`` (one group per journal name).

    - ``group_id``: optional ``callable(journalFile) -> int`` replacing
      :func:`group_id_for`.
    - ``durable_dumps``: fsync PySyncObj's dump files (its snapshots) before
      they replace the previous one.

    ``SyncObj`` objects created while an installation is active keep using
    their journal after it is uninstalled; the acknowledgement hook and the
    durable dumps stay in place for them.  Installations nest: the newest
    active one is used (``with install(engine_a): SyncObj(...)``).
    ``SyncObj`` objects without a ``journalFile`` keep PySyncObj's memory
    journal.  Returns an :class:`Installation` (a context manager).
    """
    import pysyncobj.serializer as pserializer  # type: ignore[import-untyped]
    import pysyncobj.syncobj as psyncobj  # type: ignore[import-untyped]

    if group_id is not None and not callable(group_id):
        raise TypeError("group_id must be a callable(journalFile) -> int")
    inst = Installation(engine, group_id)
    with _state_lock:
        cls = psyncobj.SyncObj
        current = cls.__dict__.get("_SyncObj__sendNextNodeIdx")
        if current is None or not callable(current):
            raise RuntimeError(
                "this pysyncobj version has no SyncObj.__sendNextNodeIdx; "
                "pyraftlog cannot make acknowledgements wait for durability")
        if "createJournal" not in _ORIG:
            _ORIG["createJournal"] = psyncobj.createJournal
        if not getattr(current, "_pyraftlog_hook", False):
            _ORIG["sendNextNodeIdx"] = current
            cls._SyncObj__sendNextNodeIdx = _send_next_node_idx
        check = cls.__dict__.get("_checkCommandsToApply")
        if callable(check) and not getattr(check, "_pyraftlog_hook", False):
            # without this hook (another pysyncobj version) entries are written
            # at the next acknowledgement, commit or timer: slower, as durable
            _ORIG["checkCommandsToApply"] = check
            cls._checkCommandsToApply = _check_commands_to_apply
        if (durable_dumps and os.name == "posix"
                and pserializer.atomicReplace is not durable_replace):
            _ORIG.setdefault("atomicReplace", pserializer.atomicReplace)
            pserializer.atomicReplace = durable_replace
        psyncobj.createJournal = _create_journal
        _stack.append(inst)
    return inst


def uninstall(installation: Installation | None = None) -> None:
    """Deactivate ``installation`` (default: the newest one).  When none is
    left, ``SyncObj`` creates PySyncObj's own journals again."""
    import pysyncobj.syncobj as psyncobj

    with _state_lock:
        if installation is None:
            if not _stack:
                return
            installation = _stack[-1]
        if installation in _stack:
            _stack.remove(installation)
        if not _stack and "createJournal" in _ORIG:
            psyncobj.createJournal = _ORIG["createJournal"]
