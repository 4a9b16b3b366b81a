"""etcd-raft ``MemoryStorage`` conformance, ported from etcd ``raft/storage_test.go``.

Mapping of etcd's initial state
-------------------------------
etcd builds ``MemoryStorage{ents: [{Index: 3, Term: 3}, {Index: 4, Term: 4}, ...]}``:
``ents[0]`` is a *dummy* entry standing for the snapshot/compaction point, so
``FirstIndex() == 4``, ``Term(3) == 3`` and ``Entries(3, ..)`` is compacted.
We reach the same state through the public API in two ways (every test runs
with both, see the ``init`` fixture):

* ``"snapshot"``: ``apply_snapshot(Snapshot(SnapshotMeta(3, 3)))`` then
  ``append([Entry(4, 4), Entry(5, 5), ...])``;
* ``"compact"``: ``append([Entry(1, 1), ..., Entry(5, 5)])`` then ``compact(3)``.

Entries always have ``term == index`` as in etcd's tables.  The group under
test is ``G``; a neighbour group ``N`` is written alongside and must never be
affected.  Every case is checked on the live engine and again after close +
reopen of the same directory.

Deliberate adaptations (etcd API -> pyraftlog API):

* ``Entries(lo, hi, maxSize)`` uses the protobuf size of an entry; docs/API.md
  counts ``len(entry.data)``, so the entries of TestStorageEntries carry data of
  40, 50 and 60 bytes and the limits are computed from those.
* ``Compact`` panics past the last index in etcd; docs/API.md raises ``ValueError``.
* ``CreateSnapshot(i, cs, data)`` does not exist; its closest equivalent is
  ``apply_snapshot(Snapshot(SnapshotMeta(i, term(i), cs), data))``, which (unlike
  CreateSnapshot) also discards the entries after ``i``.
* ``Term(i)`` past the last index returns ``ErrUnavailable`` (current etcd).
"""

import time

import pytest

from pyraftlog import (
    CompactedError,
    ConfState,
    Entry,
    HardState,
    Snapshot,
    SnapshotMeta,
    SnapshotOutOfDateError,
    UnavailableError,
)

G = 7                      # the group under test
N = 2**64 - 1              # a neighbour group that must never change
N_ENTRIES = [Entry(i, 9, b"neighbour-%d" % i) for i in range(1, 4)]
CS = ConfState(voters=(1, 2, 3))
DATA = b"data"


def write(log, *ops):
    """Write one batch made of ``(method, *args)`` ops and wait for it."""
    b = log.batch()
    for name, *args in ops:
        getattr(b, name)(*args)
    log.write(b).wait()


def ents(lo, hi, data=lambda i: b""):
    """Entries ``lo..hi-1`` with ``term == index`` (etcd's tables)."""
    return [Entry(i, i, data(i)) for i in range(lo, hi)]


@pytest.fixture(params=["snapshot", "compact"])
def init(request):
    """``init(log, last, data)``: etcd's dummy-at-3 storage with entries 4..last."""
    how = request.param

    def _init(log, last=5, data=lambda i: b""):
        write(log, ("append", N, N_ENTRIES))
        if how == "snapshot":
            write(log, ("apply_snapshot", G, Snapshot(SnapshotMeta(3, 3))))
            write(log, ("append", G, ents(4, last + 1, data)))
        else:
            write(log, ("append", G, ents(1, last + 1, data)))
            write(log, ("compact", G, 3))
        assert log.first_index(G) == 4
        assert log.last_index(G) == last
        assert log.term(G, 3) == 3
    return _init


def live_and_reopened(open_log, setup, check, **opts):
    """Run ``setup(log)``, then ``check(log)`` live and after close + reopen."""
    log = open_log(**opts)
    setup(log)
    check(log)
    _check_neighbour(log)
    log.close()
    log = open_log(**opts)
    check(log)
    _check_neighbour(log)
    log.close()


def _check_neighbour(log):
    assert log.first_index(N) == 1
    assert log.last_index(N) == 3
    assert log.entries(N, 1, 4) == N_ENTRIES


def expect(fn, *args, err=None, want=None, **kwargs):
    if err is not None:
        with pytest.raises(err):
            fn(*args, **kwargs)
    else:
        assert fn(*args, **kwargs) == want


# ------------------------------------------------------------ TestStorageTerm

@pytest.mark.parametrize("i, err, want", [
    (2, CompactedError, None),
    (3, None, 3),
    (4, None, 4),
    (5, None, 5),
    (6, UnavailableError, None),
])
def test_storage_term(open_log, init, i, err, want):
    live_and_reopened(open_log, init, lambda log: expect(log.term, G, i, err=err, want=want))


# --------------------------------------------------------- TestStorageEntries

def _sized(i):
    return bytes([i]) * (10 * i)     # entries 4, 5, 6 carry 40, 50, 60 bytes


E4, E5, E6 = (Entry(i, i, _sized(i)) for i in (4, 5, 6))
S4, S5, S6 = 40, 50, 60
NOLIMIT = 2**64 - 1


@pytest.mark.parametrize("lo, hi, max_size, err, want", [
    (2, 6, NOLIMIT, CompactedError, None),
    (3, 4, NOLIMIT, CompactedError, None),
    (4, 5, NOLIMIT, None, [E4]),
    (4, 6, NOLIMIT, None, [E4, E5]),
    (4, 7, NOLIMIT, None, [E4, E5, E6]),
    (4, 7, None, None, [E4, E5, E6]),
    # even if max_size is zero, the first entry is returned
    (4, 7, 0, None, [E4]),
    (4, 7, S4 - 1, None, [E4]),
    (4, 7, S4, None, [E4]),
    # limit to 2
    (4, 7, S4 + S5, None, [E4, E5]),
    (4, 7, S4 + S5 + S6 // 2, None, [E4, E5]),
    (4, 7, S4 + S5 + S6 - 1, None, [E4, E5]),
    # all
    (4, 7, S4 + S5 + S6, None, [E4, E5, E6]),
    (5, 7, S5, None, [E5]),
    # docs/API.md's check order: lo > hi, then compacted, then unavailable, then lo == hi
    (5, 4, None, ValueError, None),
    (2, 1, None, ValueError, None),
    (8, 7, None, ValueError, None),
    (2, 8, None, CompactedError, None),
    (3, 3, None, CompactedError, None),
    (4, 8, None, UnavailableError, None),
    (8, 8, None, UnavailableError, None),
    (7, 7, None, None, []),
    (4, 4, None, None, []),
    (6, 6, 0, None, []),
])
def test_storage_entries(open_log, init, lo, hi, max_size, err, want):
    def check(log):
        if max_size is None:
            expect(log.entries, G, lo, hi, err=err, want=want)
        else:
            expect(log.entries, G, lo, hi, max_size=max_size, err=err, want=want)
        if err is None:
            for e in log.entries(G, lo, hi):
                assert type(e.data) is bytes
    live_and_reopened(open_log, lambda log: init(log, last=6, data=_sized), check)


# ------------------------------------------------- TestStorageLastIndex/First

def test_storage_last_index(open_log, init):
    def setup(log):
        init(log)
        assert log.last_index(G) == 5
        write(log, ("append", G, [Entry(6, 5)]))

    def check(log):
        assert log.last_index(G) == 6
        assert log.term(G, 6) == 5
    live_and_reopened(open_log, setup, check)


def test_storage_first_index(open_log, init):
    def setup(log):
        init(log)
        assert log.first_index(G) == 4
        write(log, ("compact", G, 4))

    def check(log):
        assert log.first_index(G) == 5
        assert log.term(G, 4) == 4
    live_and_reopened(open_log, setup, check)


# --------------------------------------------------------- TestStorageCompact

@pytest.mark.parametrize("i, err, windex, wterm, wlen", [
    (2, CompactedError, 3, 3, 3),
    (3, CompactedError, 3, 3, 3),
    (4, None, 4, 4, 2),
    (5, None, 5, 5, 1),
    # etcd panics here; docs/API.md: i > last_index() raises ValueError
    (6, ValueError, 3, 3, 3),
])
def test_storage_compact(open_log, init, i, err, windex, wterm, wlen):
    # etcd checks ents[0] (the dummy: index/term of the compaction point) and
    # len(ents) (dummy included); we check first_index()-1, its term, and the
    # entries left.
    def setup(log):
        init(log)
        if err is None:
            write(log, ("compact", G, i))
        else:
            with pytest.raises(err):
                write(log, ("compact", G, i))

    def check(log):
        assert log.first_index(G) - 1 == windex
        assert log.term(G, windex) == wterm
        assert log.last_index(G) == 5
        assert log.entries(G, windex + 1, 6) == ents(windex + 1, 6)
        assert len(log.entries(G, windex + 1, 6)) + 1 == wlen
        with pytest.raises(CompactedError):
            log.term(G, windex - 1)
        with pytest.raises(CompactedError):
            log.entries(G, windex, 6)
    live_and_reopened(open_log, setup, check)


# -------------------------------------------------- TestStorageCreateSnapshot

@pytest.mark.parametrize("i", [4, 5])
def test_storage_create_snapshot(open_log, init, i):
    want = Snapshot(SnapshotMeta(i, i, CS), DATA)

    def setup(log):
        init(log)
        write(log, ("apply_snapshot", G, Snapshot(SnapshotMeta(i, log.term(G, i), CS), DATA)))

    def check(log):
        assert log.snapshot(G) == want
        assert log.initial_state(G) == (HardState(), CS)
        assert log.first_index(G) == i + 1
        assert log.last_index(G) == i          # every entry discarded
        assert log.term(G, i) == i
        assert log.entries(G, i + 1, i + 1) == []
        with pytest.raises(UnavailableError):
            log.term(G, i + 1)
    live_and_reopened(open_log, setup, check)


# --------------------------------------------------- TestStorageApplySnapshot

def test_storage_apply_snapshot(open_log):
    s4 = Snapshot(SnapshotMeta(4, 4, CS), DATA)
    s3 = Snapshot(SnapshotMeta(3, 3, CS), DATA)

    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        write(log, ("apply_snapshot", G, s4))       # apply snapshot successful
        for stale in (s3, s4, Snapshot(SnapshotMeta(4, 5, CS)), Snapshot(SnapshotMeta(0, 0))):
            with pytest.raises(SnapshotOutOfDateError):  # ErrSnapOutOfDate
                write(log, ("apply_snapshot", G, stale))

    def check(log):
        assert log.snapshot(G) == s4
        assert log.first_index(G) == 5
        assert log.last_index(G) == 4
        assert log.term(G, 4) == 4
        assert log.initial_state(G) == (HardState(), CS)
    live_and_reopened(open_log, setup, check)


def test_apply_snapshot_after_compaction_point_is_out_of_date(open_log, init):
    # docs/API.md: "A snapshot whose index is not above first_index() - 1 (the
    # current snapshot or compaction point) raises SnapshotOutOfDateError".
    def setup(log):
        init(log)
        write(log, ("compact", G, 4))
        for idx in (3, 4):
            with pytest.raises(SnapshotOutOfDateError):
                write(log, ("apply_snapshot", G, Snapshot(SnapshotMeta(idx, idx, CS), DATA)))

    def check(log):
        assert log.first_index(G) == 5
        assert log.last_index(G) == 5
        assert log.term(G, 4) == 4
        assert log.entries(G, 5, 6) == [Entry(5, 5)]
    live_and_reopened(open_log, setup, check)


@pytest.mark.parametrize("idx", [4, 5, 6, 100])
def test_apply_snapshot_discards_all_entries(open_log, init, idx):
    snap = Snapshot(SnapshotMeta(idx, 42, CS), b"")

    def setup(log):
        init(log)
        write(log, ("set_hard_state", G, HardState(5, 2, 4)), ("put", G, b"k", b"v"))
        write(log, ("apply_snapshot", G, snap))

    def check(log):
        assert log.first_index(G) == idx + 1
        assert log.last_index(G) == idx
        assert log.term(G, idx) == 42
        assert log.snapshot(G) == snap
        # hard state and kv are not part of the snapshot
        assert log.initial_state(G) == (HardState(5, 2, 4), CS)
        assert log.get(G, b"k") == b"v"
        with pytest.raises(CompactedError):
            log.term(G, idx - 1)
    live_and_reopened(open_log, setup, check)


def test_snapshot_is_not_changed_by_compact(open_log):
    # etcd: Compact does not touch the stored snapshot; snapshot() is the
    # latest one *applied*.
    snap = Snapshot(SnapshotMeta(3, 3, CS), DATA)

    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        write(log, ("apply_snapshot", G, snap), ("append", G, ents(4, 8)))
        write(log, ("compact", G, 6))

    def check(log):
        assert log.snapshot(G) == snap
        assert log.first_index(G) == 7
        assert log.term(G, 6) == 6
        assert log.initial_state(G) == (HardState(), CS)
    live_and_reopened(open_log, setup, check)


# ---------------------------------------------------------- TestStorageAppend

@pytest.mark.parametrize("entries, want", [
    (ents(1, 3), ents(4, 6)),
    (ents(3, 6), ents(4, 6)),
    ([Entry(3, 3), Entry(4, 6), Entry(5, 6)], [Entry(4, 6), Entry(5, 6)]),
    (ents(3, 6) + [Entry(6, 5)], ents(4, 6) + [Entry(6, 5)]),
    # truncate incoming entries, truncate the existing entries and append
    ([Entry(2, 3), Entry(3, 3), Entry(4, 5)], [Entry(4, 5)]),
    # truncate the existing entries and append
    ([Entry(4, 5)], [Entry(4, 5)]),
    # direct append
    ([Entry(6, 5)], ents(4, 6) + [Entry(6, 5)]),
    # pyraftlog additions: replace only the last entry; empty input is a no-op
    ([Entry(5, 7, b"new")], [Entry(4, 4), Entry(5, 7, b"new")]),
    ([], ents(4, 6)),
    # an entry replaces the existing one even with an equal term, and the
    # suffix after it goes too
    ([Entry(4, 4, b"x")], [Entry(4, 4, b"x")]),
])
def test_storage_append(open_log, init, entries, want):
    def setup(log):
        init(log)
        write(log, ("append", G, entries))

    def check(log):
        # etcd compares s.ents (dummy first); we compare the dummy's term and
        # the entries after it.
        assert log.first_index(G) == 4
        assert log.term(G, 3) == 3
        assert log.last_index(G) == want[-1].index
        assert log.entries(G, 4, log.last_index(G) + 1) == want
        assert [log.term(G, e.index) for e in want] == [e.term for e in want]
    live_and_reopened(open_log, setup, check)


@pytest.mark.parametrize("entries", [
    [Entry(7, 5)],                       # gap after last_index()+1 == 6
    [Entry(7, 5), Entry(8, 5)],
    [Entry(100, 1)],
])
def test_storage_append_gap_raises(open_log, init, entries):
    def setup(log):
        init(log)
        with pytest.raises(ValueError):
            write(log, ("append", G, entries))

    def check(log):
        assert log.last_index(G) == 5
        assert log.entries(G, 4, 6) == ents(4, 6)
    live_and_reopened(open_log, setup, check)


# ---------------------------------------------- further docs/API.md per-group rules

def test_fresh_group(open_log):
    def check(log):
        for g in (0, G, 12345, 2**64 - 1 - 1):
            assert log.first_index(g) == 1
            assert log.last_index(g) == 0
            assert log.term(g, 0) == 0
            with pytest.raises(UnavailableError):
                log.term(g, 1)
            assert log.entries(g, 1, 1) == []
            with pytest.raises(UnavailableError):
                log.entries(g, 1, 2)
            with pytest.raises(CompactedError):
                log.entries(g, 0, 1)
            assert log.initial_state(g) == (HardState(), ConfState())
            assert log.snapshot(g).meta.index == 0
            assert log.snapshot(g) == Snapshot(SnapshotMeta(0, 0, ConfState()), b"")
            assert log.get(g, b"k") is None
        assert log.groups() == [N]
    live_and_reopened(open_log, lambda log: write(log, ("append", N, N_ENTRIES)), check)


@pytest.mark.parametrize("i, err, last", [
    (2, CompactedError, 5),
    (3, CompactedError, 5),
    (4, None, 3),
    (5, None, 4),
    (6, None, 5),        # i > last_index(): no-op
    (1000, None, 5),
])
def test_truncate(open_log, init, i, err, last):
    def setup(log):
        init(log)
        if err is None:
            write(log, ("truncate", G, i))
        else:
            with pytest.raises(err):
                write(log, ("truncate", G, i))

    def check(log):
        assert log.first_index(G) == 4
        assert log.last_index(G) == last
        assert log.term(G, 3) == 3
        assert log.entries(G, 4, last + 1) == ents(4, last + 1)
        with pytest.raises(UnavailableError):
            log.term(G, last + 1)
    live_and_reopened(open_log, setup, check)


def test_truncate_then_reappend(open_log, init):
    def setup(log):
        init(log)
        write(log, ("truncate", G, 4), ("append", G, [Entry(4, 8, b"a"), Entry(5, 8, b"b")]))
        write(log, ("truncate", G, 5))

    def check(log):
        assert log.last_index(G) == 4
        assert log.entries(G, 4, 5) == [Entry(4, 8, b"a")]
    live_and_reopened(open_log, setup, check)


def test_fresh_group_compact_and_truncate(open_log):
    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        with pytest.raises(CompactedError):
            write(log, ("compact", G, 0))
        with pytest.raises(ValueError):
            write(log, ("compact", G, 1))
        with pytest.raises(CompactedError):
            write(log, ("truncate", G, 0))
        write(log, ("truncate", G, 1))          # 1 > last_index() == 0: no-op
        write(log, ("append", G, [Entry(1, 1)]))
        write(log, ("compact", G, 1))

    def check(log):
        assert log.first_index(G) == 2
        assert log.last_index(G) == 1
        assert log.term(G, 1) == 1
    live_and_reopened(open_log, setup, check)


def test_append_wholly_compacted_is_noop(open_log):
    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        write(log, ("apply_snapshot", G, Snapshot(SnapshotMeta(10, 2))))
        write(log, ("append", G, [Entry(i, 1) for i in range(3, 11)]))   # all <= 10
        write(log, ("append", G, [Entry(i, 7) for i in range(5, 13)]))   # keeps 11, 12

    def check(log):
        assert log.first_index(G) == 11
        assert log.term(G, 10) == 2
        assert log.entries(G, 11, 13) == [Entry(11, 7), Entry(12, 7)]
    live_and_reopened(open_log, setup, check)


def test_bootstrap_snapshot_at_index_zero(open_log):
    # docs/API.md: index 0 carrying only a ConfState on a group with no entries and
    # no snapshot is accepted (bootstrap).
    snap = Snapshot(SnapshotMeta(0, 0, CS))

    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        write(log, ("set_hard_state", G, HardState(1, 1, 0)), ("apply_snapshot", G, snap))
        write(log, ("append", G, [Entry(1, 1, b"first")]))

    def check(log):
        assert log.initial_state(G) == (HardState(1, 1, 0), CS)
        assert log.snapshot(G) == snap
        assert log.first_index(G) == 1
        assert log.last_index(G) == 1
        assert log.term(G, 0) == 0
        assert log.entries(G, 1, 2) == [Entry(1, 1, b"first")]
    live_and_reopened(open_log, setup, check)


@pytest.mark.parametrize("same_batch", [False, True])
def test_bootstrap_after_truncating_every_entry(open_log, same_batch):
    # "a group with no entries and no snapshot": truncate(1) leaves no entries,
    # whether it ran in an earlier batch or earlier in the same batch (ops of
    # one batch apply, and are validated, in order).
    snap = Snapshot(SnapshotMeta(0, 0, CS))
    ops = [("truncate", G, 1), ("apply_snapshot", G, snap)]

    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        write(log, ("append", G, ents(1, 4)))
        if same_batch:
            write(log, *ops)
        else:
            write(log, ops[0])
            write(log, ops[1])

    def check(log):
        assert log.first_index(G) == 1
        assert log.last_index(G) == 0
        assert log.initial_state(G) == (HardState(), CS)
        assert log.snapshot(G) == snap
    live_and_reopened(open_log, setup, check)


@pytest.mark.parametrize("prep, snap", [
    ([("append", G, [Entry(1, 1)])], Snapshot(SnapshotMeta(0, 0, CS))),          # has entries
    ([("apply_snapshot", G, Snapshot(SnapshotMeta(2, 2)))], Snapshot(SnapshotMeta(0, 0, CS))),
    ([], Snapshot(SnapshotMeta(0, 1, CS))),                                       # carries a term
    ([], Snapshot(SnapshotMeta(0, 0, CS), b"data")),                              # carries data
])
def test_bootstrap_snapshot_rejected(open_log, prep, snap):
    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        if prep:
            write(log, *prep)
        with pytest.raises(SnapshotOutOfDateError):
            write(log, ("apply_snapshot", G, snap))

    def check(log):
        if not prep:
            assert log.initial_state(G) == (HardState(), ConfState())
            assert log.snapshot(G).meta.index == 0
            assert log.last_index(G) == 0
        elif prep[0][0] == "append":
            assert log.initial_state(G) == (HardState(), ConfState())
            assert log.entries(G, 1, 2) == [Entry(1, 1)]
        else:
            assert log.snapshot(G) == Snapshot(SnapshotMeta(2, 2))
    live_and_reopened(open_log, setup, check)


def test_hard_state_latest_wins(open_log):
    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        write(log, ("set_hard_state", G, HardState(1, 2, 3)))
        write(log, ("set_hard_state", G, HardState(4, 5, 6)),
              ("set_hard_state", G, HardState(7, 8, 9)))
        write(log, ("set_hard_state", 0, HardState(2**64 - 1, 2**64 - 1, 2**64 - 1)))

    def check(log):
        assert log.initial_state(G) == (HardState(7, 8, 9), ConfState())
        assert log.initial_state(0)[0] == HardState(2**64 - 1, 2**64 - 1, 2**64 - 1)
        assert log.initial_state(1) == (HardState(), ConfState())
    live_and_reopened(open_log, setup, check)


def test_kv(open_log):
    big = bytes(range(256)) * 40

    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        write(log, ("put", G, b"applied", b"1"), ("put", G, b"gone", b"x"),
              ("put", 0, b"applied", b"other"))
        write(log, ("put", G, b"applied", b"2"), ("delete", G, b"gone"), ("delete", G, b"never"))
        write(log, ("put", G, b"empty", b""), ("put", G, b"big", big),
              ("put", G, bytearray(b"ba"), memoryview(b"mv")))

    def check(log):
        assert log.get(G, b"applied") == b"2"
        assert log.get(G, b"gone") is None
        assert log.get(G, b"never") is None
        assert log.get(G, b"empty") == b""
        assert log.get(G, b"big") == big
        assert log.get(G, b"ba") == b"mv"
        assert type(log.get(G, b"ba")) is bytes
        assert log.get(0, b"applied") == b"other"
        assert log.get(1, b"applied") is None
        assert log.groups() == sorted([0, G, N])
        ids = log.group_ids()
        assert ids.dtype == "uint64" and ids.tolist() == sorted([0, G, N])
    live_and_reopened(open_log, setup, check)


def test_remove_group(open_log):
    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        write(log, ("apply_snapshot", G, Snapshot(SnapshotMeta(3, 3, CS), DATA)),
              ("append", G, ents(4, 9)), ("compact", G, 5),
              ("set_hard_state", G, HardState(8, 1, 7)), ("put", G, b"k", b"v"))
        assert log.groups() == [G, N]
        write(log, ("remove_group", G))

    def check(log):
        assert log.groups() == [N]
        assert log.first_index(G) == 1
        assert log.last_index(G) == 0
        assert log.term(G, 0) == 0
        assert log.initial_state(G) == (HardState(), ConfState())
        assert log.snapshot(G) == Snapshot(SnapshotMeta(0, 0))
        assert log.get(G, b"k") is None
    live_and_reopened(open_log, setup, check)


def test_remove_group_then_reuse_in_same_batch(open_log):
    # Operations of one batch apply in the order they were added.
    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        write(log, ("append", G, ents(1, 6)), ("put", G, b"k", b"old"),
              ("apply_snapshot", 0, Snapshot(SnapshotMeta(9, 9), b"snap0")))
        write(log, ("remove_group", G), ("append", G, [Entry(1, 2, b"again")]),
              ("remove_group", 0))

    def check(log):
        assert log.groups() == [G, N]
        assert log.entries(G, 1, 2) == [Entry(1, 2, b"again")]
        assert log.last_index(G) == 1
        assert log.get(G, b"k") is None
        assert log.snapshot(0) == Snapshot(SnapshotMeta(0, 0))
        assert log.first_index(0) == 1
    live_and_reopened(open_log, setup, check)


def test_snapshot_after_remove_group_has_no_data(open_log):
    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        write(log, ("apply_snapshot", G, Snapshot(SnapshotMeta(5, 5), b"x" * 5000)))
        write(log, ("remove_group", G))
        write(log, ("apply_snapshot", G, Snapshot(SnapshotMeta(2, 1))))

    def check(log):
        assert log.snapshot(G) == Snapshot(SnapshotMeta(2, 1), b"")
    live_and_reopened(open_log, setup, check)


CS_ALL = ConfState((4,), (5,), (1, 2), (6,), True)


def test_snapshot_data_replaced(open_log):
    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        write(log, ("apply_snapshot", G, Snapshot(SnapshotMeta(5, 5, CS), b"one" * 1000)))
        write(log, ("apply_snapshot", G, Snapshot(SnapshotMeta(6, 5, CS), bytearray(b"two"))))
        three = Snapshot(SnapshotMeta(8, 6, CS_ALL), memoryview(b"three"))
        write(log, ("apply_snapshot", G, three))

    def check(log):
        snap = log.snapshot(G)
        assert snap == Snapshot(SnapshotMeta(8, 6, CS_ALL), b"three")
        assert type(snap.data) is bytes
        assert log.initial_state(G)[1] == CS_ALL
    live_and_reopened(open_log, setup, check)


def test_batch_ops_apply_in_order(open_log):
    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        write(log,
              ("append", G, ents(1, 11)),
              ("compact", G, 4),
              ("truncate", G, 9),
              ("append", G, [Entry(7, 20), Entry(8, 20)]),
              ("set_hard_state", G, HardState(20, 1, 6)),
              ("put", G, b"a", b"1"), ("delete", G, b"a"), ("put", G, b"a", b"2"))

    def check(log):
        assert log.first_index(G) == 5
        assert log.term(G, 4) == 4
        assert log.last_index(G) == 8
        assert log.entries(G, 5, 9) == ents(5, 7) + [Entry(7, 20), Entry(8, 20)]
        assert log.initial_state(G) == (HardState(20, 1, 6), ConfState())
        assert log.get(G, b"a") == b"2"
    live_and_reopened(open_log, setup, check)


def test_groups_are_independent_and_sorted(open_log):
    groups = [2**64 - 2, 0, 5, 2**32, 3]

    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        for n, g in enumerate(groups):
            write(log, ("append", g, [Entry(i, n + 1, b"%d-%d" % (g, i)) for i in range(1, n + 3)]))
        write(log, ("compact", 5, 2))

    def check(log):
        assert log.groups() == sorted(groups + [N])
        for n, g in enumerate(groups):
            assert log.last_index(g) == n + 2
            lo = log.first_index(g)
            want = [Entry(i, n + 1, b"%d-%d" % (g, i)) for i in range(lo, n + 3)]
            assert log.entries(g, lo, n + 3) == want
        assert log.first_index(5) == 3
    live_and_reopened(open_log, setup, check)


def test_group_view(open_log, init):
    def check(log):
        v = log.group(G)
        assert v.first_index() == log.first_index(G) == 4
        assert v.last_index() == 6
        assert v.term(3) == 3
        assert v.entries(4, 7) == [E4, E5, E6]
        assert v.entries(4, 7, max_size=0) == [E4]
        assert v.entries(4, 7, max_size=S4 + S5) == [E4, E5]
        with pytest.raises(CompactedError):
            v.entries(3, 6)
        with pytest.raises(UnavailableError):
            v.term(7)
        assert v.initial_state() == log.initial_state(G)
        assert v.snapshot() == log.snapshot(G)
        assert v.get(b"k") == b"v"
        assert v.get(b"nope") is None

    def setup(log):
        init(log, last=6, data=_sized)
        write(log, ("put", G, b"k", b"v"))
    live_and_reopened(open_log, setup, check)


def test_max_size_counts_data_only(open_log):
    # docs/API.md: the limit is on the sum of len(entry.data); entries without data
    # cost nothing, so max_size=0 returns all of them.
    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        write(log, ("append", G, ents(1, 5) + [Entry(5, 5, b"xx"), Entry(6, 6)]))

    def check(log):
        assert log.entries(G, 1, 7, max_size=0) == ents(1, 5)
        assert log.entries(G, 1, 7, max_size=1) == ents(1, 5)
        assert log.entries(G, 1, 7, max_size=2) == ents(1, 5) + [Entry(5, 5, b"xx"), Entry(6, 6)]
        assert log.entries(G, 5, 7, max_size=0) == [Entry(5, 5, b"xx")]
    live_and_reopened(open_log, setup, check)


def test_large_indexes_and_terms(open_log):
    base = 2**64 - 10
    top = 2**64 - 1

    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        write(log, ("apply_snapshot", G, Snapshot(SnapshotMeta(base, top))))
        write(log, ("append", G, [Entry(i, top, b"") for i in range(base + 1, base + 5)]))

    def check(log):
        assert log.first_index(G) == base + 1
        assert log.last_index(G) == base + 4
        assert log.term(G, base) == top
        want = [Entry(i, top) for i in range(base + 1, base + 5)]
        assert log.entries(G, base + 1, base + 5) == want
    live_and_reopened(open_log, setup, check)


def test_entry_types_and_data_roundtrip(open_log):
    payloads = [b"", b"\x00", bytes(range(256)), b"z" * 10000]

    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        es = [Entry(i + 1, 1, p, t) for i, (p, t) in enumerate(zip(payloads, (0, 1, 2, 255)))]
        es.append(Entry(5, 2, bytearray(b"ba"), 7))
        es.append(Entry(6, 2, memoryview(b"mv"), 0))
        write(log, ("append", G, es))

    def check(log):
        got = log.entries(G, 1, 7)
        want = [Entry(i + 1, 1, p, t) for i, (p, t) in enumerate(zip(payloads, (0, 1, 2, 255)))]
        want += [Entry(5, 2, b"ba", 7), Entry(6, 2, b"mv", 0)]
        assert got == want
        assert all(type(e) is Entry and type(e.data) is bytes for e in got)
    live_and_reopened(open_log, setup, check)


def _let_segments_recycle(log):
    # An engine may recycle a segment without live records only once the batch
    # that emptied it is durable, and on a background thread: give it the chance
    # before close, so that the reopen really replays a log without that segment.
    log.sync()
    time.sleep(0.3)


def _fill_first_segment(log):
    for lo, hi in [(1, 18), (18, 31), (31, 49), (49, 72)]:     # ~63 KB: the log needs a 2nd segment
        write(log, ("append", G, [Entry(i, 5, b"x" * 900) for i in range(lo, hi)]))


@pytest.mark.parametrize("how", ["compact", "snapshot"])
def test_compaction_point_term_survives_segment_recycling(open_log, how):
    # docs/API.md: after compact(i) "term(i) still answers" (after apply_snapshot,
    # term(snap.meta.index) == snap.meta.term), durably: also once the
    # segment that held entry i has no live record left and is recycled.
    def setup(log):
        _fill_first_segment(log)          # the neighbour is written last: nothing else keeps
        if how == "compact":              # the first segment alive
            write(log, ("compact", G, 1))
        else:
            write(log, ("apply_snapshot", G, Snapshot(SnapshotMeta(1, 5))),
                  ("append", G, [Entry(i, 5) for i in range(2, 30)]))
        write(log, ("append", G, [Entry(2, 6)]))                    # discards 3..
        write(log, ("append", N, N_ENTRIES))
        _let_segments_recycle(log)

    def check(log):
        assert log.first_index(G) == 2
        assert log.term(G, 1) == 5
        assert log.last_index(G) == 2
        assert log.entries(G, 2, 3) == [Entry(2, 6)]
    live_and_reopened(open_log, setup, check, segment_size=64 * 1024)


def test_compaction_point_term_survives_long_run(open_log):
    def setup(log):
        _fill_first_segment(log)
        for lo in range(72, 400, 40):                               # many segments, compacting
            write(log, ("append", G, [Entry(i, 6 + lo // 100, b"y" * 900)
                                      for i in range(lo, lo + 40)]))
            write(log, ("compact", G, lo - 1))
        write(log, ("append", N, N_ENTRIES))
        _let_segments_recycle(log)

    def check(log):
        assert log.first_index(G) == 392
        assert log.term(G, 391) == 6 + 352 // 100
        assert log.last_index(G) == 431
        assert log.entries(G, 392, 432) == [Entry(i, 9, b"y" * 900) for i in range(392, 432)]
    live_and_reopened(open_log, setup, check, segment_size=64 * 1024)


def test_many_entries_across_segments(open_log, log_dir):
    # Small segments so the log rotates; every entry reads back after reopen.
    def setup(log):
        write(log, ("append", N, N_ENTRIES))
        for start in range(1, 2001, 50):     # at most ~35 KB per batch
            write(log, ("append", G, [Entry(i, 1 + i // 500, bytes([i % 251]) * (i % 700))
                                      for i in range(start, start + 50)]))
        write(log, ("compact", G, 1000), ("truncate", G, 1901))

    def check(log):
        assert log.first_index(G) == 1001
        assert log.last_index(G) == 1900
        assert log.term(G, 1000) == 3
        assert log.entries(G, 1001, 1901) == [Entry(i, 1 + i // 500, bytes([i % 251]) * (i % 700))
                                              for i in range(1001, 1901)]

    log = open_log(segment_size=64 * 1024)
    setup(log)
    check(log)
    log.close()
    log = open_log(segment_size=64 * 1024)
    check(log)
    _check_neighbour(log)
