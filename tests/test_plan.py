"""Plan (pyraftlog/plan.py) on its own: the records a purge rewrite hands
the C writer.  Its size is the bytes the batch takes in the log, its copies
are verbatim (retyped) copies of existing records, and its ops, applied once
the batch is written, make the index point at the copies."""
import numpy as np
import pytest

from pyraftlog import Entry, HardState, WriteBatch
from pyraftlog import ops as O
from pyraftlog import record as R
from pyraftlog.plan import Plan


def written_bytes(log):
    return log.stats()["bytes_written"]


def write_plan(log, plan):
    store = log._store
    with store.lock:
        return store.write_plan_locked(plan)


def test_size_is_the_bytes_of_the_batch(open_log):
    log = open_log()
    plan = Plan()
    assert plan.size == R.BATCH_HEADER_SIZE
    plan.add_op(O.SetHardState(1, HardState(2, 1, 0)))
    plan.add_op(O.Put(1, b"key", b"a value of 17 b.."))
    plan.add_op(O.Remove(2))
    assert plan.size == R.BATCH_HEADER_SIZE + R.record_size(8) + R.record_size(4 + 3 + 17) + \
        R.record_size(0)
    before = written_bytes(log)
    write_plan(log, plan)
    assert written_bytes(log) - before == plan.size
    assert log.initial_state(1)[0] == HardState(2, 1, 0) and log.get(1, b"key") == b"a value of 17 b.."


def test_ops_get_their_record_numbers(open_log):
    plan = Plan()
    ops = [O.Remove(5), O.Compact(5, 3, 1), O.SetHardState(5, HardState(1, 0, 0))]
    for op in ops:
        plan.add_op(op)
    assert [op.k for op in ops] == [0, 1, 2] and plan.ops == ops
    types, auxs, groups, indexes, terms, lens = plan.arrays()
    assert list(types) == [R.REMOVE_GROUP, R.COMPACT, R.HARD_STATE]
    assert list(groups) == [5, 5, 5] and list(indexes) == [0, 3, 0] and list(lens) == [0, 0, 8]
    assert plan.copies() is None


@pytest.mark.parametrize("op_class", [O.Append, O.Stage])
def test_copies_are_verbatim_and_retyped(open_log, op_class):
    log = open_log()
    data = [b"x" * n for n in (0, 1, 7, 8, 9, 300)]
    log.write(WriteBatch().append(1, [Entry(i + 1, 2, d, i % 3) for i, d in enumerate(data)]))
    st = log._store.index.get(1)
    lens = np.array([len(d) for d in data], np.uint32)
    plan = Plan()
    plan.add_op(O.Remove(9))
    plan.add_copies(op_class(9, 1, st.term_array(1, 7)), st.positions, lens)
    assert plan.copies() is not None and list(plan.copies()[:1]) == [0]
    assert list(plan.copies()[1:]) == list(st.positions)
    assert plan.ops[-1].k == 1 and plan.ops[-1].hi == 7
    before = written_bytes(log)
    write_plan(log, plan)
    assert written_bytes(log) - before == plan.size
    if op_class is O.Append:  # group 9 now holds copies of group 1's entries
        assert [(e.index, e.term, e.data, e.type) for e in log.entries(9, 1, 7)] == \
            [(i + 1, 2, d, i % 3) for i, d in enumerate(data)]
    else:  # staged: not entries of group 9 until an Adopt names them
        assert log.last_index(9) == 0 and len(log._store.index.staged[9][0][1]) == 6
