"""PySyncObj journals stored in one shared pyraftlog engine.

PySyncObj (``pip install pysyncobj``) runs one Raft group per ``SyncObj`` and
keeps that group's log in a *journal*, created by
``pysyncobj.journal.createJournal(conf.journalFile)``.  This module provides
:class:`PyraftlogJournal`, a journal that stores the log, the current term,
the vote and the commit index as **one group of a shared**
:class:`pyraftlog.Engine`, so that every ``SyncObj`` of a process writes into
one write-ahead log and shares its ``fdatasync`` calls (group commit)::

    import pyraftlog
    from pyraftlog.contrib.pysyncobj import install
    from pysyncobj import SyncObj, SyncObjConf

    engine = pyraftlog.open("/var/lib/myapp/raftlog")
    install(engine)          # every SyncObj with a journalFile now uses `engine`
    conf = SyncObjConf(journalFile="counter-7", fullDumpFile="/var/lib/myapp/counter-7.dump")
    obj = MySyncObj("127.0.0.1:4321", ["127.0.0.1:4322", "127.0.0.1:4323"], conf=conf)

``install`` replaces ``createJournal`` where ``SyncObj`` looks it up.  The
``journalFile`` setting becomes a *name*: no file of that name is created; the
group id is ``group_id_for(journalFile)``, the first 8 bytes (big-endian) of
``blake2b(os.fsencode(journalFile), digest_size=8)``.  The name is stored in
the group, so a hash collision or a group written by something else is
detected when the journal opens (``ValueError``).

Durability (what Raft requires, and where it is enforced):

- ``setCurrentTerm(term, vote)`` writes and waits for the write to be durable
  before it returns: PySyncObj sends vote requests and grants right after it.
- ``add`` only buffers: entries go to the engine in one batch, without
  waiting, at the end of the PySyncObj tick that added them (``install``
  wraps ``SyncObj._checkCommandsToApply``, the tick's last step before its
  thread sleeps), or earlier at an acknowledgement or commit.  The writes of
  the groups whose ticks end together share one ``fdatasync``, and a
  leader's entries are on their way to disk while they travel to the
  followers (visible to reads as soon as they are written).
- A follower acknowledges entries (and an installed snapshot) in
  ``SyncObj.__sendNextNodeIdx``; ``install`` wraps that method so it calls
  :meth:`PyraftlogJournal.flush` first (write + wait), so nothing is
  acknowledged before it is on disk.
- The leader counts itself in the commit quorum without asking its journal;
  :meth:`PyraftlogJournal.setRaftCommitIndex` therefore waits until every entry
  up to the new commit index is durable before PySyncObj applies the entries,
  answers clients or tells followers the new commit index.
- The commit index itself is only a hint (as in PySyncObj's ``FileJournal``):
  it is stored with the next write or by ``onOneSecondTimer``; a write that
  carries nothing else is not waited for (etcd's ``MustSync``).
- With ``durable_dumps=True`` (the default) ``install`` also makes PySyncObj's
  full-dump file (``fullDumpFile``, its snapshot) durable (``fsync`` of the
  file and of its directory) before PySyncObj reports the dump done and
  compacts the log, and before a follower acknowledges a received snapshot.

Set ``fullDumpFile`` whenever PySyncObj may compact its log: without it,
PySyncObj keeps its snapshot in memory only, and a restarted node whose log
was compacted cannot rebuild its state (this is so with PySyncObj's own
``FileJournal`` too).
"""

from .dump_file import durable_replace
from .installation import GroupIdFunc as GroupIdFunc
from .installation import Installation, install, uninstall
from .journal import KEY_NAME as KEY_NAME
from .journal import MAX_BUFFERED_BYTES, PyraftlogJournal, group_id_for
from .journal import TAIL_ENTRIES as TAIL_ENTRIES
from .journal import JournalEntry as JournalEntry
from .vote import KEY_VOTE as KEY_VOTE

# The modules: journal (PyraftlogJournal, group ids), vote (how the vote is
# stored), dump_file (durable dumps), installation (what install() patches).
# Importable here as before they were split (`X as X`), not in __all__: the
# group's kv keys, the tail size, the entry type and the group_id callable type.
__all__ = [
    "MAX_BUFFERED_BYTES",
    "Installation",
    "PyraftlogJournal",
    "durable_replace",
    "group_id_for",
    "install",
    "uninstall",
]
