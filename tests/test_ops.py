"""The table of record types (pyraftlog/ops.py) on its own: one Op class per
type of csrc/format.h; each op's record decodes back to the same op; a
malformed payload is described, never raised; and an op applied whole
(`apply`, as purge plans and replay do) leaves the same state as C's apply of
the same record plus the op's Python half (`keep`, as a WriteBatch does)."""
import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from pyraftlog import ConfState, Entry, HardState, Snapshot, SnapshotMeta, WriteBatch
from pyraftlog import ops as O
from pyraftlog import record as R
from pyraftlog.plan import Plan

u64 = st.integers(0, (1 << 64) - 1)
ids = st.lists(u64, max_size=4).map(tuple)
conf_states = st.builds(ConfState, ids, ids, ids, ids, st.booleans())
refs = st.none() | st.tuples(st.integers(1, (1 << 64) - 1), u64, st.integers(0, (1 << 32) - 1))
small = st.binary(max_size=40)

OPS = st.one_of(
    st.builds(O.SetHardState, u64, st.builds(HardState, u64, u64, u64)),
    st.builds(O.SetSnapshot, u64, st.builds(SnapshotMeta, u64, u64, conf_states), refs),
    st.builds(O.Compact, u64, u64, u64),
    st.builds(O.Truncate, u64, u64),
    st.builds(O.Put, u64, small, small),
    st.builds(O.Delete, u64, small),
    st.builds(O.Remove, u64),
    st.builds(O.Adopt, u64, u64, u64, u64),
)


def state(op):
    """An op's fields, without the record number."""
    return type(op), {k: getattr(op, k) for c in type(op).__mro__
                      for k in getattr(c, "__slots__", ()) if k != "k"}


def test_every_record_type_of_the_format_has_one_op_class():
    # (tests/test_format.py checks record.py's type codes against csrc/format.h)
    assert sorted(O.RECORDS) == sorted(R.NAMES) == list(range(1, len(R.NAMES) + 1))
    for t, cls in O.RECORDS.items():
        assert cls.TYPE == t


@settings(max_examples=300, deadline=None)
@given(OPS, st.integers(0, 100))
def test_a_record_decodes_back_to_its_op(op, k):
    index, term, payload = op.record()
    back = O.decode(op.TYPE, op.group, index, term, payload, k)
    assert state(back) == state(op) and back.k == k
    fields, text = O.describe(op.TYPE, 0, index, term, payload, -1, len(payload))
    assert "payload_error" not in fields and isinstance(text, str)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 20), st.binary(max_size=64), u64, u64)
def test_any_payload_is_described_or_refused_with_a_reason(t, payload, index, term):
    fields, text = O.describe(t, 0, index, term, payload, 8, len(payload))
    assert isinstance(text, str)
    if "payload_error" in fields:
        assert text.startswith("<")
    if t in O.RECORDS and t not in (R.ENTRY, R.STAGE, R.KV_DELETE):
        try:
            O.decode(t, 1, index, term, payload, 0)
        except ValueError:
            assert "payload_error" in fields or O.RECORDS[t].EMPTY


@pytest.mark.parametrize("t", [R.COMPACT, R.TRUNCATE, R.REMOVE_GROUP])
def test_a_payload_where_none_belongs_is_described_as_invalid(t):
    fields, text = O.describe(t, 0, 1, 1, b"x", -1, 1)
    assert fields == {"payload_error": "unexpected 1-byte payload"}
    assert O.describe(t, 0, 1, 1, b"", -1, 0) == ({}, "")


def test_an_unknown_record_type_is_described_and_refused():
    assert "payload_error" in O.describe(99, 0, 0, 0, b"", -1, 0)[0]
    with pytest.raises(ValueError, match="unknown record type 99"):
        O.decode(99, 1, 0, 0, b"", 0)


def test_entry_data_is_described_cut_to_the_limit():
    fields, text = O.describe(R.ENTRY, 3, 5, 2, b"abcd", 4, 10)
    assert fields == {"entry_type": 3, "data_hex": "61626364", "data_truncated": True}
    assert text == "type=3 data=b'abcd'...(+6)"


def view(log, g):
    """What a group's readers see."""
    first, last = log.first_index(g), log.last_index(g)
    return (first, last, [log.term(g, i) for i in range(first - 1, last + 1)],
            log.entries(g, first, last + 1) if last >= first else [], log.initial_state(g),
            log.snapshot(g).meta, log.get(g, b"k"), log.get(g, b"j"))


# each: the WriteBatch call, and the op a purge plan would write for it
STEPS = [
    ("set_hard_state", (HardState(3, 2, 4),), lambda g: O.SetHardState(g, HardState(3, 2, 4))),
    ("compact", (4,), lambda g: O.Compact(g, 4, 2)),
    ("truncate", (6,), lambda g: O.Truncate(g, 6)),
    ("put", (b"k", b"v"), lambda g: O.Put(g, b"k", b"v")),
    ("put", (b"j", b"w"), lambda g: O.Put(g, b"j", b"w")),
    ("delete", (b"k",), lambda g: O.Delete(g, b"k")),
    ("apply_snapshot", (Snapshot(SnapshotMeta(9, 3, ConfState((1, 2)))),),
     lambda g: O.SetSnapshot(g, SnapshotMeta(9, 3, ConfState((1, 2))), None)),
    ("remove_group", (), lambda g: O.Remove(g)),
]


@pytest.mark.parametrize("upto", range(1, len(STEPS) + 1))
def test_apply_is_c_apply_plus_keep(open_log, tmp_path, upto):
    """The same records through a WriteBatch (C's apply + Op.keep) and through
    a Plan (Op.apply) leave the same state, also after reopening."""
    g = 7
    logs = [open_log(tmp_path / "batch"), open_log(tmp_path / "plan")]
    for log in logs:
        b = WriteBatch().append(g, [Entry(i, 1 + i // 3, b"e%d" % i) for i in range(1, 9)])
        log.write(b)
    for name, args, make in STEPS[:upto]:
        logs[0].write(getattr(WriteBatch(), name)(g, *args))
        plan = Plan()
        plan.add_op(make(g))
        store = logs[1]._store
        with store.lock:
            store.write_plan_locked(plan)
    assert view(logs[0], g) == view(logs[1], g)
    for k, log in enumerate(logs):
        log.close()
        logs[k] = open_log(tmp_path / ("batch", "plan")[k])
    assert view(logs[0], g) == view(logs[1], g)
