"""PyraftlogJournal: PySyncObj's journal interface on one group of a shared engine.

What is stored where, when ``add``/``setCurrentTerm``/``setRaftCommitIndex``
write and wait, and why: see the package docstring
(:mod:`pyraftlog.contrib.pysyncobj`) and the class's.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import operator
import os
import threading
import weakref
from collections.abc import Iterator
from typing import Any, overload

import pyraftlog
from pyraftlog import Entry, HardState, Snapshot, SnapshotMeta

from .vote import KEY_VOTE, decode_vote, encode_vote

__all__ = ["MAX_BUFFERED_BYTES", "PyraftlogJournal", "group_id_for"]

logger = logging.getLogger(__name__)

#: kv key of the journal's name in its group (the vote's is vote.KEY_VOTE).
KEY_NAME = b"pysyncobj/name"

#: buffered adds are handed to the engine (without waiting) once they hold
#: this many bytes of commands, which keeps batches well below a segment.
MAX_BUFFERED_BYTES = 1 << 20

#: entries already handed to the engine that the journal keeps in memory (its
#: newest ones): a leader reads them back to send them, so they are read from
#: here and not from the engine (whose lock 50 ``SyncObj`` threads share).
TAIL_ENTRIES = 256

#: PySyncObj's log entry: (command, index, term).
JournalEntry = tuple[bytes, int, int]

_NO_INDEX = 2 ** 64          # "touches no entry" (above every u64 index)


def group_id_for(journal_file: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> int:
    """The pyraftlog group id of a PySyncObj ``journalFile`` name.

    ``int.from_bytes(blake2b(os.fsencode(journal_file), digest_size=8).digest(), "big")``:
    stable across processes, Python versions and machines.  The name is used
    as given (it is not made absolute).
    """
    name = os.fsencode(os.fspath(journal_file))
    return int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "big")



def _as_bytes(command: Any) -> bytes:
    if type(command) is bytes:
        return command
    if isinstance(command, str):
        return command.encode("utf-8")
    return bytes(command)


def _as_tuple(entry: Entry) -> JournalEntry:
    data = entry.data
    if type(data) is not bytes:
        data = bytes(data)
    return (data, entry.index, entry.term)


# One live journal per (engine, group) in a process.
_live_lock = threading.Lock()
_live: dict[tuple[int, int], weakref.ref[PyraftlogJournal]] = {}


class PyraftlogJournal:
    """PySyncObj's journal interface on one group of a :class:`pyraftlog.Engine`.

    The journal is the list of PySyncObj entries ``(command: bytes, index,
    term)`` with consecutive indexes; its positions (what ``journal[i]``,
    ``deleteEntriesFrom(i)`` and ``deleteEntriesTo(i)`` take) start at 0 for
    the first entry kept.  Group state used:

    - entries: ``Entry(index, term, command)``;
    - ``HardState(term=currentTerm, vote=0, commit=raftCommitIndex)``;
    - kv ``pysyncobj/voted_for`` (PySyncObj node ids are strings) and
      ``pysyncobj/name`` (the journal name, to detect id collisions).

    ``journal[0]``, ``journal[-1]`` and ``len(journal)`` are answered from
    memory; other reads go to the engine.  Thread-safe, although PySyncObj
    uses a journal from its tick thread only.
    """

    def __init__(self, engine: pyraftlog.Engine, journal_file: str | bytes | None = None,
                 group: int | None = None) -> None:
        if group is None:
            if journal_file is None:
                raise TypeError("PyraftlogJournal needs a journal_file name or a group id")
            group = group_id_for(journal_file)
        name = b"group:%d" % group if journal_file is None else os.fsencode(os.fspath(journal_file))
        self._engine = engine
        self._group = group
        self._name = name
        self._lock = threading.RLock()
        self._batch: pyraftlog.WriteBatch | None = None   # not yet handed to the engine
        self._run: list[JournalEntry] = []       # entries added after self._batch
        # the newest entries already handed to the engine, consecutive and
        # ending right before self._run (a read cache, at most 2*TAIL_ENTRIES)
        self._tail: list[JournalEntry] = []
        self._run_bytes = 0
        self._lo: int | None = None           # lowest index the pending writes change
        self._inflight: collections.deque[tuple[int, pyraftlog.Ticket]] = collections.deque()
        self._last_ticket: pyraftlog.Ticket | None = None
        # the last write that carried more than a commit-index hint: what an
        # acknowledgement has to wait for
        self._last_needed: pyraftlog.Ticket | None = None
        self._durable_lsn = -1   # highest ticket lsn this journal saw durable
        self._failed: BaseException | None = None
        self._destroyed = False

        stored = engine.get(group, KEY_NAME)
        if stored is None:
            if group in engine.groups():
                raise ValueError(f"group {group} (journal {journal_file!r}) holds state "
                                 "that this journal did not write")
            self._need_name = True
        elif bytes(stored) != name:
            raise ValueError(f"group id collision: group {group} belongs to journal "
                             f"{bytes(stored)!r}, not {name!r}")
        else:
            self._need_name = False

        first = engine.first_index(group)
        last = engine.last_index(group)
        self._first_idx = first
        self._len = max(0, last - first + 1)
        self._first: JournalEntry | None = None
        self._last: JournalEntry | None = None
        if self._len:
            self._first = _as_tuple(engine.entries(group, first, first + 1)[0])
            self._last = (self._first if last == first
                          else _as_tuple(engine.entries(group, last, last + 1)[0]))
        hs = engine.initial_state(group)[0]
        self._term = hs.term
        self._commit = hs.commit
        self._saved_commit = hs.commit
        self._vote: Any = decode_vote(engine.get(group, KEY_VOTE), group)
        self._need_hs = False
        self._need_vote = False

        key = (id(engine), group)
        with _live_lock:
            ref = _live.get(key)
            other = ref() if ref is not None else None
            if other is not None and not other._destroyed:
                raise RuntimeError(f"group {group} of this engine already has an open "
                                   f"journal ({other._name!r})")
            _live[key] = weakref.ref(self)

    # ------------------------------------------------------------ properties

    @property
    def engine(self) -> pyraftlog.Engine:
        return self._engine

    @property
    def group(self) -> int:
        """The pyraftlog group id."""
        return self._group

    @property
    def first_index(self) -> int:
        """Raft index of ``journal[0]`` (also when the journal is empty: the next add)."""
        return self._first_idx

    def __repr__(self) -> str:
        return (f"<PyraftlogJournal {self._name!r} group={self._group} "
                f"entries={self._len} first={self._first_idx}>")

    # ------------------------------------------------------------ internals

    def _check(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._destroyed:
            raise RuntimeError(f"journal {self._name!r} was destroyed")

    def _b(self) -> pyraftlog.WriteBatch:
        if self._batch is None:
            self._batch = pyraftlog.WriteBatch()
        return self._batch

    def _touch(self, index: int) -> None:
        if self._lo is None or index < self._lo:
            self._lo = index

    def _seal(self) -> None:
        """Move buffered adds into the pending batch (keeps operation order)."""
        run = self._run
        if run:
            self._b().append(self._group, [Entry(i, t, d) for (d, i, t) in run])
            tail = self._tail
            if tail and tail[-1][1] + 1 == run[0][1]:
                tail.extend(run)
                if len(tail) > 2 * TAIL_ENTRIES:
                    del tail[:-TAIL_ENTRIES]
            else:
                self._tail = run[-TAIL_ENTRIES:]
            self._run = []
            self._run_bytes = 0

    def _memory_from(self) -> int | None:
        """Lowest index served from memory (tail and run, contiguous)."""
        if self._tail:
            return self._tail[0][1]
        if self._run:
            return self._run[0][1]
        return None

    def _memory_range(self, lo: int, hi: int) -> list[JournalEntry]:
        """Tuples [lo, hi) from the tail and the run (lo >= _memory_from())."""
        tail, run = self._tail, self._run
        out: list[JournalEntry] = []
        if tail and lo <= tail[-1][1]:
            t0 = tail[0][1]
            out = tail[lo - t0:hi - t0]
        if run and hi > run[0][1]:
            r0 = run[0][1]
            out.extend(run[max(lo, r0) - r0:hi - r0])
        return out

    def _last_index(self) -> int:
        return self._first_idx + self._len - 1

    def _write(self) -> pyraftlog.Ticket | None:
        """Hand everything pending to the engine; returns the ticket or None.

        Visible to reads when this returns; durable when the ticket completes.
        """
        self._seal()
        g = self._group
        needed = self._batch is not None or self._need_hs or self._need_vote
        commit = min(self._commit, max(self._last_index(), 0))
        if self._need_hs or commit != self._saved_commit:
            self._b().set_hard_state(g, HardState(self._term, 0, commit))
        if self._need_vote:
            vote = encode_vote(self._vote)
            if vote is None:
                self._b().delete(g, KEY_VOTE)
            else:
                self._b().put(g, KEY_VOTE, vote)
        if self._batch is None:
            return None
        if self._need_name:
            self._batch.put(g, KEY_NAME, self._name)
        try:
            ticket = self._engine.write(self._batch)
        except BaseException as exc:
            # The engine changed nothing, but this journal's view already
            # moved on: it cannot be used any more (fail-stop).
            self._failed = exc
            raise
        self._batch = None
        inflight = self._inflight
        inflight.append((_NO_INDEX if self._lo is None else self._lo, ticket))
        self._lo = None
        self._last_ticket = ticket
        if needed:
            self._last_needed = ticket
        self._need_name = self._need_hs = self._need_vote = False
        self._saved_commit = commit
        if len(inflight) > 64:      # nobody waited for a while (a leader's issue())
            while inflight and inflight[0][1].done():
                inflight.popleft()
        return ticket

    def _wait(self, ticket: pyraftlog.Ticket) -> None:
        """Wait until ``ticket`` is durable; then forget the tickets it covers.

        One C call, none for a ticket already seen durable (tickets complete
        in write order): with dozens of ``SyncObj`` threads every call that
        releases the GIL is a chance to lose it for a while.
        """
        if ticket.lsn <= self._durable_lsn:
            return
        try:
            ticket.wait()
        except BaseException as exc:
            if not isinstance(exc, (KeyboardInterrupt, TimeoutError)):
                self._failed = exc
            raise
        self._durable_lsn = ticket.lsn
        inflight = self._inflight
        while inflight and inflight[0][1].lsn <= ticket.lsn:
            inflight.popleft()

    def _wait_all(self, hints: bool = False) -> None:
        """Write what is pending and wait until everything written is durable.

        A write that carries nothing but the commit-index hint needs no sync
        (etcd's ``MustSync``): it is written, and waited for only with
        ``hints``.  Followers flush before every append-entries answer,
        heartbeats included, whose only news is often the leader's commit
        index; not waiting there saves a blocking wait (and, with many
        ``SyncObj`` threads, a trip through the GIL) per heartbeat.
        """
        self._write()
        ticket = self._last_ticket if hints else self._last_needed
        if ticket is not None:
            self._wait(ticket)

    def _wait_upto(self, index: int) -> None:
        """Wait until every entry with an index <= ``index`` is durable."""
        if self._lo is not None and self._lo <= index:
            self._write()
        for lo, ticket in reversed(self._inflight):
            if lo <= index:
                # tickets complete in write order: this covers earlier batches
                self._wait(ticket)
                break

    def _entry_at(self, index: int) -> JournalEntry:
        """The tuple at Raft ``index`` (first_idx <= index <= last)."""
        run = self._run
        if run and index >= run[0][1]:
            return run[index - run[0][1]]
        tail = self._tail
        if tail and tail[0][1] <= index <= tail[-1][1]:
            return tail[index - tail[0][1]]
        if self._batch is not None:
            self._write()
        return _as_tuple(self._engine.entries(self._group, index, index + 1)[0])

    def _range(self, lo: int, hi: int) -> list[JournalEntry]:
        """Tuples for Raft indexes [lo, hi), all within the journal."""
        if lo >= hi:
            return []
        m0 = self._memory_from()
        if m0 is not None and lo >= m0:
            return self._memory_range(lo, hi)
        run = self._run
        r0 = run[0][1] if run else None
        eng_hi = hi if r0 is None else min(hi, r0)
        out: list[JournalEntry] = []
        if lo < eng_hi:
            if self._batch is not None:
                self._write()               # also seals the run
                r0, eng_hi = None, hi
            out = [_as_tuple(e) for e in self._engine.entries(self._group, lo, eng_hi)]
        if r0 is not None and hi > r0:
            out.extend(run[max(lo, r0) - r0:hi - r0])
        return out

    def _truncate_from(self, index: int, need_last: bool = True) -> None:
        """Drop entries with Raft index >= ``index`` (first_idx <= index <= last).

        The truncation stays pending: PySyncObj re-appends right after it, and
        both reach the engine in one atomic batch (on disk the log is never
        seen cut short between the two).
        """
        new_last = None
        if need_last and index > self._first_idx:
            new_last = self._entry_at(index - 1)     # read before truncating
        run = self._run
        if run and index >= run[0][1]:
            del run[index - run[0][1]:]      # never written: just forget them
            self._run_bytes = sum(len(e[0]) for e in run)
        else:
            self._run = []
            self._run_bytes = 0
            self._seal()
            self._b().truncate(self._group, index)
            self._touch(index)
            tail = self._tail
            if tail and index <= tail[-1][1]:
                del tail[max(0, index - tail[0][1]):]
        self._len = index - self._first_idx
        if self._len == 0:
            self._first = self._last = None
        elif need_last:
            self._last = new_last

    def _reset_to(self, index: int, term: int) -> None:
        """Make the (empty) journal start at ``index`` (after ``clear()``)."""
        g = self._group
        b = self._b()
        if index > self._first_idx:
            # discards every entry; first_index() becomes `index`.  The term of
            # entry index-1 is unknown (PySyncObj never asks for it): `term` is
            # an upper bound.
            b.apply_snapshot(g, Snapshot(SnapshotMeta(index - 1, term)))
        elif index < self._first_idx:
            # going back below the compaction point: start the group afresh
            # and restore what this journal keeps beside the entries
            b.remove_group(g)
            self._need_name = self._need_hs = self._need_vote = True
            if index > 1:
                b.apply_snapshot(g, Snapshot(SnapshotMeta(index - 1, term)))
        self._touch(0)
        self._first_idx = index
        self._tail = []

    # ------------------------------------------------------------ journal API

    def add(self, command: bytes, idx: int, term: int) -> None:
        """Append ``(command, idx, term)``; ``idx`` must follow the last entry.

        On an empty journal (new, or after ``clear()``) any ``idx`` starts it.
        An ``idx`` inside the journal replaces that entry and drops every entry
        after it (Raft's conflicting suffix).  Buffered until the next write.
        """
        with self._lock:
            self._check()
            cmd = _as_bytes(command)
            if self._len == 0:
                if idx != self._first_idx:
                    self._reset_to(idx, term)
            else:
                last = self._first_idx + self._len - 1
                if idx != last + 1:
                    if self._first_idx <= idx <= last:
                        self._truncate_from(idx, need_last=False)
                    else:
                        raise ValueError(f"add(idx={idx}): journal holds indexes "
                                         f"{self._first_idx}..{last}")
            entry = (cmd, idx, term)
            self._run.append(entry)
            self._run_bytes += len(cmd)
            self._touch(idx)
            if self._len == 0:
                self._first = entry
            self._last = entry
            self._len += 1
            if self._run_bytes >= MAX_BUFFERED_BYTES:
                self._write()

    def clear(self) -> None:
        """Remove every entry; the next ``add`` may use any index."""
        with self._lock:
            self._check()
            self._run = []
            self._run_bytes = 0
            self._tail = []
            self._seal()
            self._b().truncate(self._group, self._first_idx)
            self._touch(self._first_idx)
            self._len = 0
            self._first = self._last = None

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        """``del journal[entryFrom:]`` (a Raft truncation of the suffix)."""
        with self._lock:
            self._check()
            start = slice(entryFrom, None).indices(self._len)[0]
            if start < self._len:
                self._truncate_from(self._first_idx + start)

    def deleteEntriesTo(self, entryTo: int) -> None:
        """``journal = journal[entryTo:]``: a log compaction (``compact``)."""
        with self._lock:
            self._check()
            count = slice(None, entryTo).indices(self._len)[1]
            if count <= 0:
                return
            upto = self._first_idx + count - 1
            self._seal()
            self._b().compact(self._group, upto)
            tail = self._tail
            if tail and tail[0][1] <= upto:
                del tail[:upto + 1 - tail[0][1]]
            self._first_idx = upto + 1
            self._len -= count
            if self._len == 0:
                self._first = self._last = None
            else:
                self._first = self._entry_at(self._first_idx)
                if self._len == 1:
                    self._last = self._first
            if self._batch is not None:
                self._write()

    @overload
    def __getitem__(self, item: int) -> JournalEntry: ...

    @overload
    def __getitem__(self, item: slice) -> list[JournalEntry]: ...

    def __getitem__(self, item: int | slice) -> JournalEntry | list[JournalEntry]:
        with self._lock:
            n = self._len
            if isinstance(item, slice):
                start, stop, step = item.indices(n)
                if step == 1:
                    if start >= stop:
                        return []
                    if stop - start == 1:
                        if start == n - 1 and self._last is not None:
                            return [self._last]
                        if start == 0 and self._first is not None:
                            return [self._first]
                    return self._range(self._first_idx + start, self._first_idx + stop)
                positions = range(start, stop, step)
                if not positions:
                    return []
                lo, hi = min(positions), max(positions) + 1
                chunk = self._range(self._first_idx + lo, self._first_idx + hi)
                return [chunk[p - lo] for p in positions]
            i = operator.index(item)
            if i < 0:
                i += n
            if not 0 <= i < n:
                raise IndexError("journal index out of range")
            if i == n - 1 and self._last is not None:
                return self._last
            if i == 0 and self._first is not None:
                return self._first
            return self._entry_at(self._first_idx + i)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[JournalEntry]:
        return iter(self[:])

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:
        """Store term and vote; durable when this returns."""
        encode_vote(votedForNodeId)  # a TypeError before anything changes
        with self._lock:
            self._check()
            self._term = term
            self._vote = votedForNodeId
            self._need_hs = self._need_vote = True
            self._wait_all()

    def getCurrentTerm(self) -> int:
        return self._term

    def getVotedForNodeId(self) -> Any:
        return self._vote

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        """Remember the commit index (stored lazily) and make sure every entry
        up to it is durable (the leader counts itself in the quorum)."""
        with self._lock:
            self._check()
            self._commit = raftCommitIndex
            self._wait_upto(raftCommitIndex)

    def getRaftCommitIndex(self) -> int:
        return self._commit or 1

    def issue(self) -> None:
        """Hand buffered entries (and whatever else is pending) to the engine
        without waiting.

        ``install`` calls this at the end of every PySyncObj tick, just before
        the tick thread sleeps in its poller: a leader's new entries then
        start towards the disk while they travel to the followers, so by the
        time the followers' acknowledgements arrive they are usually durable
        and :meth:`setRaftCommitIndex` does not block; and the writes of the
        groups whose ticks end together share one ``fdatasync``.  A pending
        commit-index hint alone is not written here.
        """
        with self._lock:
            if self._failed is None and not self._destroyed and (
                    self._run or self._batch is not None or self._need_hs or self._need_vote):
                self._write()

    def onOneSecondTimer(self) -> None:
        """Write what is pending (commit index, buffered entries); no wait."""
        with self._lock:
            if self._failed is None and not self._destroyed:
                self._write()

    def flush(self) -> None:
        """Write what is pending and wait until all of it is durable."""
        with self._lock:
            self._check()
            self._wait_all()

    def _destroy(self) -> None:
        """Flush and detach from the engine (the engine stays open)."""
        with self._lock:
            if self._destroyed:
                return
            try:
                if self._failed is None:
                    self._wait_all(hints=True)
            except (pyraftlog.RaftLogError, OSError):
                # PySyncObj destroys journals from its tick thread, where an
                # exception would only kill the thread: report it here.
                logger.exception("%s: journal %r: final flush failed", self._engine.path,
                                 self._name, extra={"pyraftlog_dir": self._engine.path})
            finally:
                self._destroyed = True
                key = (id(self._engine), self._group)
                with _live_lock:
                    ref = _live.get(key)
                    if ref is not None and ref() is self:
                        del _live[key]

    def close(self) -> None:
        """Same as ``_destroy()``."""
        self._destroy()
