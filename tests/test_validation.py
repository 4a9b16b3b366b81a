"""Invalid input is rejected with the documented error and changes nothing.

docs/API.md: "Group ids, indexes and terms are unsigned 64-bit integers; anything
else (negative, too large, wrong type) raises TypeError/ValueError before
anything is written", and "an invalid batch ... raises that error from write
and changes nothing, in memory or on disk".  The error may surface from the
``WriteBatch`` method or from ``write``; the tests accept either and compare
every read before and after, live and after reopen.

Also: ClosedError, LockedError, the context manager and the data types.
"""

import os
import pathlib
import subprocess
import textwrap

import pytest

import pyraftlog
from pyraftlog import (
    ClosedError,
    CompactedError,
    ConfState,
    Entry,
    HardState,
    LockedError,
    Snapshot,
    SnapshotMeta,
    SnapshotOutOfDateError,
    UnavailableError,
)

from tests.common import PYTHON, child_env, run_child
from tests.model import observe

G = 7               # compacted group with a snapshot, entries 6..10
A = 0               # plain group, entries 1..5
B = 2**64 - 1       # bootstrapped group: index-0 snapshot, no entries
X = 99              # never written
GROUPS = (A, G, B, X)
KEYS = (b"k", b"applied", b"x")
CS = ConfState(voters=(1, 2, 3), learners=(4,))
TYPE_OR_VALUE = (TypeError, ValueError)
U64 = 2**64


def populate(log):
    b = log.batch()
    b.append(A, [Entry(i, 1, b"a%d" % i) for i in range(1, 6)])
    b.apply_snapshot(G, Snapshot(SnapshotMeta(3, 3, CS), b"snapdata"))
    b.append(G, [Entry(i, 3 + i // 6, b"g%d" % i, i % 3) for i in range(4, 11)])
    b.compact(G, 5)
    b.set_hard_state(G, HardState(4, 1, 6))
    b.put(G, b"k", b"value")
    b.apply_snapshot(B, Snapshot(SnapshotMeta(0, 0, ConfState(voters=(1,)))))
    b.set_hard_state(B, HardState(1, 0, 0))
    b.put(B, b"applied", b"0")
    log.write(b).wait()
    assert log.first_index(G) == 6 and log.last_index(G) == 10


def observe_all(log):
    out = {"groups": log.groups()}
    for g in GROUPS:
        out[g] = observe(log, g, keys=KEYS, max_sizes=(0, 5))
    out["view"] = observe(log.group(G), None, keys=KEYS)
    return out


def write_ops(log, ops):
    b = log.batch()
    for name, *args in ops:
        getattr(b, name)(*args)
    return log.write(b).wait()


def assert_rejected(open_log, ops, err, **opts):
    """``ops`` (built and written as one batch) raise ``err``; nothing changes,
    live or after reopen, and the engine keeps working."""
    log = open_log(**opts)
    populate(log)
    before = observe_all(log)
    with pytest.raises(err):
        write_ops(log, ops)
    assert observe_all(log) == before
    log.close()
    log = open_log(**opts)
    assert observe_all(log) == before
    # still writable afterwards
    write_ops(log, [("append", X, [Entry(1, 1, b"after")])])
    assert log.entries(X, 1, 2) == [Entry(1, 1, b"after")]
    log.close()
    log = open_log(**opts)
    assert log.entries(X, 1, 2) == [Entry(1, 1, b"after")]
    assert observe_all(log)[G] == before[G]


# ------------------------------------------------------------ bad group ids

BAD_U64 = [-1, U64, 2**100, 1.0, 1.5, "1", b"1", None]
BAD_GROUPS = BAD_U64 + [True, False]


def ops_for_group(g):
    return {
        "append": ("append", g, [Entry(1, 1)]),
        "set_hard_state": ("set_hard_state", g, HardState(1, 0, 0)),
        "apply_snapshot": ("apply_snapshot", g, Snapshot(SnapshotMeta(5, 1), b"d")),
        "compact": ("compact", g, 1),
        "truncate": ("truncate", g, 1),
        "put": ("put", g, b"k", b"v"),
        "delete": ("delete", g, b"k"),
        "remove_group": ("remove_group", g),
    }


@pytest.mark.parametrize("op", list(ops_for_group(0)))
@pytest.mark.parametrize("bad", BAD_GROUPS, ids=repr)
def test_bad_group_id(open_log, op, bad):
    err = TypeError if isinstance(bad, bool) else TYPE_OR_VALUE
    assert_rejected(open_log, [ops_for_group(bad)[op]], err)


@pytest.mark.parametrize("bad", BAD_GROUPS, ids=repr)
def test_bad_group_id_in_reads(open_log, bad):
    log = open_log()
    populate(log)
    err = TypeError if isinstance(bad, bool) else TYPE_OR_VALUE
    for name, args in [("first_index", ()), ("last_index", ()), ("term", (0,)),
                       ("entries", (1, 1)), ("initial_state", ()), ("snapshot", ()),
                       ("get", (b"k",))]:
        with pytest.raises(err):
            getattr(log, name)(bad, *args)
    with pytest.raises(err):
        log.group(bad).first_index()


def test_extreme_valid_group_ids(open_log):
    log = open_log()
    write_ops(log, [("append", 0, [Entry(1, 1)]), ("append", U64 - 1, [Entry(1, 2)])])
    log.close()
    log = open_log()
    assert log.groups() == [0, U64 - 1]
    assert log.term(U64 - 1, 1) == 2


@pytest.mark.parametrize("bad", BAD_U64, ids=repr)
def test_bad_index_in_reads(open_log, bad):
    log = open_log()
    populate(log)
    for call in (lambda: log.term(A, bad), lambda: log.entries(A, bad, 3),
                 lambda: log.entries(A, 1, bad)):
        with pytest.raises(TYPE_OR_VALUE):
            call()


# ------------------------------------------------------------ bad entries

@pytest.mark.parametrize("entry", [
    *[Entry(bad, 1) for bad in BAD_U64],
    *[Entry(6, bad) for bad in BAD_U64],
    *[Entry(6, 1, bad) for bad in ["str", 1, None, [1, 2], 1.5]],
    *[Entry(6, 1, b"", bad) for bad in [-1, 256, 1000, "0", None, 1.0]],
], ids=repr)
def test_bad_entry_fields(open_log, entry):
    assert_rejected(open_log, [("append", A, [entry])], TYPE_OR_VALUE)


@pytest.mark.parametrize("entries", [None, 5, [None], [1], ["x"], [Entry(6, 1), None]], ids=repr)
def test_bad_entries_argument(open_log, entries):
    assert_rejected(open_log, [("append", A, entries)], TypeError)


@pytest.mark.parametrize("group, entries", [
    (X, [Entry(1, 1), Entry(3, 1)]),
    (X, [Entry(2, 1), Entry(1, 1)]),
    (X, [Entry(1, 1), Entry(1, 1)]),
    (A, [Entry(6, 1), Entry(8, 1)]),
    (A, [Entry(3, 1), Entry(4, 1), Entry(4, 2)]),
    (G, [Entry(1, 1), Entry(3, 1)]),          # non-consecutive even though compacted
], ids=repr)
def test_non_consecutive_entries(open_log, group, entries):
    assert_rejected(open_log, [("append", group, entries)], ValueError)


@pytest.mark.parametrize("group, entries", [
    (X, [Entry(2, 1)]),                 # fresh group: next index is 1
    (A, [Entry(7, 1)]),                 # last_index 5
    (A, [Entry(7, 1), Entry(8, 1)]),
    (G, [Entry(12, 5)]),                # last_index 10
    (B, [Entry(2, 1)]),                 # bootstrapped, last_index 0
], ids=repr)
def test_gap_after_last_index(open_log, group, entries):
    assert_rejected(open_log, [("append", group, entries)], ValueError)


# ------------------------------------------------------------ bad other ops

@pytest.mark.parametrize("op", [
    *[("set_hard_state", A, hs) for hs in (HardState(-1, 0, 0), HardState(0, U64, 0),
                                           HardState(0, 0, "1"), HardState(1.0, 0, 0))],
    ("set_hard_state", A, None),
    *[("apply_snapshot", A, Snapshot(SnapshotMeta(bad, 1))) for bad in BAD_U64],
    *[("apply_snapshot", A, Snapshot(SnapshotMeta(9, bad))) for bad in BAD_U64],
    *[("apply_snapshot", A, Snapshot(SnapshotMeta(9, 1), bad)) for bad in ("str", 1, [1])],
    *[("apply_snapshot", A, Snapshot(SnapshotMeta(9, 1, cs)))
      for cs in (ConfState(voters=(-1,)), ConfState(learners=(U64,)), ConfState(voters=("a",)),
                 ConfState(voters_outgoing=(1.5,)), ConfState(learners_next=(None,)))],
    ("apply_snapshot", A, None),
    *[("compact", A, bad) for bad in BAD_U64],
    *[("truncate", A, bad) for bad in BAD_U64],
    *[("put", A, key, b"v") for key in ("str", None, 1)],
    *[("put", A, b"k", value) for value in ("str", None, 1)],
    *[("delete", A, key) for key in ("str", None, 1)],
], ids=repr)
def test_bad_values(open_log, op):
    assert_rejected(open_log, [op], TYPE_OR_VALUE)


@pytest.mark.parametrize("op, err", [
    (("compact", G, 4), CompactedError),
    (("compact", G, 5), CompactedError),         # == first_index()-1
    (("compact", G, 11), ValueError),            # > last_index()
    (("compact", A, 0), CompactedError),
    (("compact", A, 6), ValueError),
    (("compact", X, 0), CompactedError),
    (("compact", X, 1), ValueError),
    (("truncate", G, 5), CompactedError),        # < first_index()
    (("truncate", G, 0), CompactedError),
    (("truncate", A, 0), CompactedError),
    (("apply_snapshot", G, Snapshot(SnapshotMeta(5, 9, CS), b"new")), SnapshotOutOfDateError),
    (("apply_snapshot", G, Snapshot(SnapshotMeta(3, 3, CS), b"old")), SnapshotOutOfDateError),
    (("apply_snapshot", G, Snapshot(SnapshotMeta(0, 0, CS))), SnapshotOutOfDateError),
    # index 0: A has entries; a term is not "only a ConfState"
    (("apply_snapshot", A, Snapshot(SnapshotMeta(0, 0, CS))), SnapshotOutOfDateError),
    (("apply_snapshot", X, Snapshot(SnapshotMeta(0, 3, CS))), SnapshotOutOfDateError),
    (("apply_snapshot", X, Snapshot(SnapshotMeta(0, 0, CS), b"d")), SnapshotOutOfDateError),
], ids=repr)
def test_state_errors(open_log, op, err):
    assert_rejected(open_log, [op], err)


def test_errors_are_distinct_classes():
    errs = [pyraftlog.CompactedError, pyraftlog.UnavailableError, pyraftlog.SnapshotOutOfDateError,
            pyraftlog.CorruptionError, pyraftlog.LockedError, pyraftlog.ClosedError,
            pyraftlog.PoisonedError]
    for e in errs:
        assert issubclass(e, pyraftlog.RaftLogError)
        for other in errs:
            if other is not e:
                assert not issubclass(e, other), (e, other)
    assert issubclass(pyraftlog.PoisonedError, OSError)
    assert issubclass(pyraftlog.RaftLogError, Exception)


# ------------------------------------------------ invalid op at the end of a batch

VALID_PREFIX = [
    ("append", X, [Entry(1, 1, b"x1"), Entry(2, 1, b"x2"), Entry(3, 2, b"x3")]),
    ("compact", X, 1),                                   # valid only because of the op above
    ("append", A, [Entry(4, 2, b"replaced")]),
    ("set_hard_state", G, HardState(9, 9, 9)),
    ("put", G, b"k", b"changed"),
    ("delete", B, b"applied"),
    ("apply_snapshot", G, Snapshot(SnapshotMeta(20, 7, ConfState(voters=(9,))), b"new data")),
    ("remove_group", B),
]


@pytest.mark.parametrize("last, err", [
    (("append", A, [Entry(9, 1)]), ValueError),                       # gap (A now ends at 4)
    (("append", A, [Entry(5, 1), Entry(7, 1)]), ValueError),          # non-consecutive
    (("append", A, [Entry(5, -1)]), TYPE_OR_VALUE),
    (("append", A, [Entry(5, 1, "str")]), TypeError),
    (("compact", X, 1), CompactedError),                              # compacted by the prefix
    (("compact", X, 4), ValueError),
    (("truncate", X, 1), CompactedError),
    (("compact", G, 10), CompactedError),                             # snapshot at 20 in prefix
    (("apply_snapshot", G, Snapshot(SnapshotMeta(20, 7))), SnapshotOutOfDateError),
    (("compact", B, 1), ValueError),                                  # B removed by the prefix
    (("put", A, "k", b"v"), TypeError),
    (("remove_group", -1), TYPE_OR_VALUE),
    (("set_hard_state", U64, HardState()), TYPE_OR_VALUE),
], ids=repr)
def test_invalid_last_op_rejects_whole_batch(open_log, last, err):
    assert_rejected(open_log, VALID_PREFIX + [last], err)


def test_valid_prefix_alone_is_accepted(open_log):
    # Sanity check for the test above: without the bad op the batch is valid.
    log = open_log()
    populate(log)
    write_ops(log, VALID_PREFIX)
    for live in (True, False):
        if not live:
            log.close()
            log = open_log()
        assert log.first_index(X) == 2 and log.last_index(X) == 3
        assert log.entries(A, 1, 5)[-1] == Entry(4, 2, b"replaced")
        assert log.last_index(A) == 4
        assert log.snapshot(G) == Snapshot(SnapshotMeta(20, 7, ConfState(voters=(9,))), b"new data")
        assert log.initial_state(G) == (HardState(9, 9, 9), ConfState(voters=(9,)))
        assert log.get(G, b"k") == b"changed"
        assert B not in log.groups()
        assert log.initial_state(B) == (HardState(), ConfState())


def test_invalid_first_op_rejects_whole_batch(open_log):
    assert_rejected(open_log, [("compact", A, 100)] + VALID_PREFIX, ValueError)


# ------------------------------------------------------------ record size

SEG = 64 * 1024


@pytest.mark.parametrize("op", [
    ("append", A, [Entry(6, 1, b"x" * (4 * SEG))]),
    ("put", A, b"big", b"y" * (4 * SEG)),
], ids=["entry", "kv-value"])
def test_record_larger_than_segment(open_log, op):
    assert_rejected(open_log, [op], ValueError, segment_size=SEG)


def test_snapshot_data_larger_than_segment_is_fine(open_log):
    # Snapshot data is stored outside the log: only its metadata is a record.
    seg = 64 * 1024
    data = os.urandom(4 * seg)
    log = open_log(segment_size=seg)
    write_ops(log, [("apply_snapshot", A, Snapshot(SnapshotMeta(50, 2, CS), data))])
    assert log.snapshot(A) == Snapshot(SnapshotMeta(50, 2, CS), data)
    log.close()
    log = open_log(segment_size=seg)
    assert log.snapshot(A) == Snapshot(SnapshotMeta(50, 2, CS), data)


# ------------------------------------------------------------ reads

def test_entries_lo_greater_than_hi_checked_first(open_log):
    log = open_log()
    populate(log)
    with pytest.raises(ValueError):
        log.entries(G, 2, 1)          # also compacted: lo > hi wins
    with pytest.raises(ValueError):
        log.entries(G, 100, 50)       # also unavailable
    with pytest.raises(CompactedError):
        log.entries(G, 1, 100)        # compacted wins over unavailable
    with pytest.raises(UnavailableError):
        log.entries(G, 11, 12)


# ------------------------------------------------------------ closed engine

def test_closed_error_after_close(open_log):
    log = open_log()
    populate(log)
    view = log.group(G)
    tb = log.batch()
    tb.put(A, b"x", b"y")
    ticket = log.write(tb)
    b = pyraftlog.WriteBatch()
    b.append(X, [Entry(1, 1)])
    log.close()
    ticket.wait()                     # written before close: completes
    assert ticket.done()
    calls = [
        lambda: log.write(b),
        lambda: log.write(pyraftlog.WriteBatch()),
        lambda: log.batch(),
        lambda: log.sync(),
        lambda: log.first_index(G),
        lambda: log.last_index(G),
        lambda: log.term(G, 6),
        lambda: log.entries(G, 6, 7),
        lambda: log.initial_state(G),
        lambda: log.snapshot(G),
        lambda: log.get(G, b"k"),
        lambda: log.groups(),
        lambda: log.stats(),
        lambda: log.group(G).first_index(),
        lambda: view.first_index(),
        lambda: view.last_index(),
        lambda: view.term(6),
        lambda: view.entries(6, 7),
        lambda: view.initial_state(),
        lambda: view.snapshot(),
        lambda: view.get(b"k"),
    ]
    not_closed_error = []
    for i, call in enumerate(calls):
        try:
            call()
        except ClosedError:
            continue
        except Exception as exc:  # noqa: BLE001
            not_closed_error.append((i, repr(exc)))
        else:
            not_closed_error.append((i, "no error"))
    assert not_closed_error == []
    # the rejected write did not happen; the one before close did
    log = open_log()
    assert log.get(A, b"x") == b"y"
    assert X not in log.groups()
    assert log.last_index(X) == 0


# ------------------------------------------------------------ locking

def test_second_open_same_process_is_locked(open_log, log_dir):
    log = open_log()
    populate(log)
    with pytest.raises(LockedError):
        pyraftlog.open(str(log_dir), sync=False)
    with pytest.raises(LockedError):
        pyraftlog.open(pathlib.Path(log_dir), sync=False)
    # the failed open did not disturb the holder
    assert log.last_index(G) == 10
    write_ops(log, [("append", X, [Entry(1, 1)])])
    log.close()
    log = open_log()                  # released on close
    assert log.last_index(X) == 1


CHILD_TRY_OPEN = textwrap.dedent("""
    import sys, pyraftlog
    try:
        log = pyraftlog.open(sys.argv[1], sync=False)
    except pyraftlog.LockedError:
        sys.exit(3)
    log.close()
    sys.exit(0)
""")

CHILD_HOLD = textwrap.dedent("""
    import sys, pyraftlog
    log = pyraftlog.open(sys.argv[1], sync=False)
    b = log.batch()
    b.append(5, [pyraftlog.Entry(1, 1, b"child")])
    log.write(b).wait()
    print("ready", flush=True)
    sys.stdin.readline()
    log.close()
    print("closed", flush=True)
""")


def test_open_locked_by_this_process_fails_in_subprocess(open_log, log_dir):
    log = open_log()
    populate(log)
    r = run_child(CHILD_TRY_OPEN, log_dir)
    assert r.returncode == 3, r.stderr.decode()
    log.close()
    r = run_child(CHILD_TRY_OPEN, log_dir)
    assert r.returncode == 0, r.stderr.decode()


def test_open_locked_by_subprocess_fails_here(open_log, log_dir):
    child = subprocess.Popen([*PYTHON, "-c", CHILD_HOLD, str(log_dir)], env=child_env(),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"ready\n", child.stderr.read().decode()
        with pytest.raises(LockedError):
            pyraftlog.open(str(log_dir), sync=False)
        child.stdin.write(b"go\n")
        child.stdin.flush()
        assert child.stdout.readline() == b"closed\n"
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    log = open_log()
    assert log.entries(5, 1, 2) == [Entry(1, 1, b"child")]


def test_lock_released_when_holder_process_dies(open_log, log_dir):
    child = subprocess.Popen([*PYTHON, "-c", CHILD_HOLD, str(log_dir)], env=child_env(),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"ready\n", child.stderr.read().decode()
        child.kill()
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    log = open_log()                  # advisory lock died with its holder
    assert log.last_index(5) == 1


# ------------------------------------------------------------ opening, context manager

def test_context_manager(log_dir):
    with pyraftlog.open(str(log_dir), sync=False) as log:
        assert isinstance(log, pyraftlog.Engine)
        populate(log)
    with pytest.raises(ClosedError):
        log.first_index(G)
    with pyraftlog.open(str(log_dir), sync=False) as log:   # lock released
        assert log.last_index(G) == 10


def test_context_manager_closes_on_exception(log_dir):
    with pytest.raises(RuntimeError, match="boom"):
        with pyraftlog.open(str(log_dir), sync=False) as log:
            populate(log)
            raise RuntimeError("boom")
    with pytest.raises(ClosedError):
        log.groups()
    with pyraftlog.open(str(log_dir), sync=False) as log:
        assert log.last_index(G) == 10


def test_open_creates_directory_and_accepts_pathlike(tmp_path):
    path = tmp_path / "new-log"
    assert not path.exists()
    with pyraftlog.open(path, sync=False) as log:
        assert log.groups() == []
        write_ops(log, [("append", 1, [Entry(1, 1)])])
    assert path.is_dir()
    with pyraftlog.open(str(path), sync=False) as log:
        assert log.groups() == [1]


def test_batch_types(open_log):
    log = open_log()
    assert isinstance(log.batch(), pyraftlog.WriteBatch)
    b = pyraftlog.WriteBatch()
    b.append(1, [Entry(1, 1)])
    log.write(b).wait()
    assert log.last_index(1) == 1


# ------------------------------------------------------------ data types

def test_data_type_defaults():
    assert Entry(1, 2) == Entry(1, 2, b"", 0) == Entry(index=1, term=2, data=b"", type=0)
    assert HardState() == HardState(0, 0, 0) == HardState(term=0, vote=0, commit=0)
    assert ConfState() == ConfState((), (), (), (), False)
    cs = ConfState(voters=(1,), learners=(2,), voters_outgoing=(3,), learners_next=(4,),
                   auto_leave=True)
    assert (cs.voters, cs.learners, cs.voters_outgoing, cs.learners_next, cs.auto_leave) == \
        ((1,), (2,), (3,), (4,), True)
    assert SnapshotMeta(1, 2) == SnapshotMeta(1, 2, ConfState())
    assert SnapshotMeta(1, 2).conf_state == ConfState()
    assert Snapshot(SnapshotMeta(1, 2)).data == b""
    s = Snapshot(meta=SnapshotMeta(index=3, term=4, conf_state=cs), data=b"d")
    assert (s.meta.index, s.meta.term, s.meta.conf_state, s.data) == (3, 4, cs, b"d")
    e = Entry(5, 6, b"x", 2)
    assert (e.index, e.term, e.data, e.type) == (5, 6, b"x", 2)


@pytest.mark.parametrize("value, attr", [
    (Entry(1, 1), "index"), (Entry(1, 1), "data"), (HardState(), "term"),
    (ConfState(), "voters"), (SnapshotMeta(1, 1), "index"), (Snapshot(SnapshotMeta(1, 1)), "data"),
], ids=repr)
def test_data_types_immutable(value, attr):
    with pytest.raises((AttributeError, TypeError)):
        setattr(value, attr, 5)


def test_data_types_hashable_and_comparable():
    values = [Entry(1, 1), Entry(1, 1, b"x"), Entry(1, 1, b"x", 1), Entry(2, 1), HardState(1, 2, 3),
              ConfState(voters=(1, 2)), SnapshotMeta(3, 3, ConfState(voters=(1,))),
              Snapshot(SnapshotMeta(3, 3), b"d")]
    assert len(set(values)) == len(values)
    equal_pairs = [(Entry(1, 1), Entry(1, 1, b"", 0)),
                   (Entry(2, 3, b"xy"), Entry(2, 3, b"x" + b"y")),
                   (HardState(), HardState(0, 0, 0)),
                   (ConfState(voters=(1, 2)), ConfState((1, 2))),
                   (SnapshotMeta(3, 3), SnapshotMeta(3, 3, ConfState())),
                   (Snapshot(SnapshotMeta(3, 3), b"d"),
                    Snapshot(SnapshotMeta(3, 3, ConfState()), b"d"))]
    for a, b in equal_pairs:
        assert a == b and hash(a) == hash(b)
        assert a is not b
    assert {Entry(1, 1): "a"}[Entry(1, 1, b"", 0)] == "a"
    assert Entry(1, 1) != Entry(1, 2)
    assert Entry(1, 1, b"a") != Entry(1, 1, b"b")
    assert HardState(1, 2, 3) != HardState(1, 2, 4)
    assert Snapshot(SnapshotMeta(3, 3)) != Snapshot(SnapshotMeta(3, 3), b"d")
    assert sorted([Entry(3, 1), Entry(1, 1), Entry(2, 1)]) == [Entry(i, 1) for i in (1, 2, 3)]


def test_read_results_are_api_types(open_log):
    log = open_log()
    populate(log)
    hs, cs = log.initial_state(G)
    assert type(hs) is HardState and type(cs) is ConfState
    snap = log.snapshot(G)
    assert type(snap) is Snapshot and type(snap.meta) is SnapshotMeta
    assert type(snap.meta.conf_state) is ConfState
    assert type(snap.meta.conf_state.voters) is tuple
    assert type(snap.data) is bytes
    ents = log.entries(G, 6, 11)
    assert type(ents) is list
    assert all(type(e) is Entry and type(e.data) is bytes for e in ents)
    assert type(log.groups()) is list
    assert type(log.get(G, b"k")) is bytes


# ------------------------------------------------------------ open options

BAD_OPTIONS = [
    (dict(segment_size=0), ValueError),
    (dict(segment_size=2 << 30), ValueError),
    (dict(segment_size="64M"), TypeError),
    (dict(recovery_mode="paranoid"), ValueError),
    (dict(purge_threshold=-1), ValueError),
    (dict(min_sync_interval=-0.1), ValueError),
    (dict(min_sync_interval="0"), TypeError),
    (dict(sync=1), TypeError),
    (dict(prepare_ahead=0), ValueError),
    (dict(prepare_ahead=65), ValueError),
    (dict(prepare_ahead=3, max_free_segments=2), ValueError),
    (dict(purge_batch_bytes=0), ValueError),
    (dict(segment_size=1 << 16, purge_batch_bytes=(1 << 14) + 1), ValueError),
    (dict(purge_batch_bytes=1.5), TypeError),
    (dict(no_such_option=1), TypeError),
]


@pytest.mark.parametrize("opts,exc", BAD_OPTIONS, ids=[str(o) for o, _ in BAD_OPTIONS])
def test_bad_open_options_raise_before_touching_the_disk(tmp_path, opts, exc):
    path = tmp_path / "never"
    with pytest.raises(exc):
        pyraftlog.open(str(path), **opts)
    assert not path.exists()


def test_purge_batch_bytes_bounds_are_accepted(tmp_path):
    for n in (1, 1 << 14):
        with pyraftlog.open(str(tmp_path / str(n)), sync=False, segment_size=1 << 16,
                            purge_batch_bytes=n) as log:
            log.write(log.batch().append(1, [pyraftlog.Entry(1, 1, b"x")])).wait()
