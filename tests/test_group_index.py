"""The C group index (csrc/group_index.c) against the Python index it
replaced (tests/index_model.py), operation by operation.

Random sequences of the changes writes and replay make — appends anywhere
(after the last entry, overlapping, below the base, past a gap: what replay
of a recycled log produces), truncations, compactions, snapshots, hard
states, removals — are applied to both; after every step each group's
readable state and the records each side released must agree."""
from array import array

import hypothesis.strategies as st
from hypothesis import given, settings

from pyraftlog import HardState, SnapshotMeta
from pyraftlog._native import ffi, lib
from pyraftlog.group_index import GUESSED, GroupIndex

from tests import index_model as M

GROUPS = (0, 5, 2**64 - 1)

op = st.one_of(
    st.tuples(st.just("append"), st.sampled_from(GROUPS), st.integers(1, 40),
              st.lists(st.integers(1, 4), min_size=1, max_size=12)),
    st.tuples(st.just("truncate"), st.sampled_from(GROUPS), st.integers(1, 45)),
    st.tuples(st.just("compact"), st.sampled_from(GROUPS), st.integers(0, 45), st.integers(0, 4)),
    st.tuples(st.just("snapshot"), st.sampled_from(GROUPS), st.integers(0, 45), st.integers(0, 4)),
    st.tuples(st.just("hard_state"), st.sampled_from(GROUPS), st.integers(0, 9)),
    st.tuples(st.just("remove"), st.sampled_from(GROUPS)),
)


def c_released(ix):
    lst = ffi.new("const uint64_t **")
    n = ffi.new("uint64_t *")
    lib.prl_index_release_list(ix.h, lst, n)
    out = sorted(lst[0][k] for k in range(n[0]))
    lib.prl_index_release_clear(ix.h)
    return out


def observe_model(m, g):
    st_ = m.get(g)
    if st_ is None:
        return None
    last = st_.last_index
    return (st_.base_index, st_.base_term, st_.base_pos, last,
            [st_.term(i) for i in range(st_.base_index + 1, last + 1)], list(st_.positions),
            st_.hard_state, st_.hs_pos, st_.snap_pos)


def observe_c(ix, g):
    st_ = ix.get(g)
    if st_ is None:
        return None
    last = st_.last_index
    return (st_.base_index, st_.base_term, st_.base_pos, last,
            st_.term_array(st_.base_index + 1, last + 1).tolist(), list(st_.positions),
            st_.hard_state, st_.hs_pos, st_.snap_pos)


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=40))
def test_c_index_matches_the_python_index(ops):
    model, ix = M.GroupIndex(), GroupIndex()
    pos = [1 << 32]

    def next_pos(n=1):
        out = [pos[0] + 8 * k for k in range(n)]
        pos[0] += 8 * n
        return out

    for o in ops:
        rel = array("Q")
        kind, g = o[0], o[1]
        if kind == "append":
            start, terms = o[2], o[3]
            p = next_pos(len(terms))
            model.get_or_create(g).append(start, terms, array("Q", p), rel)
            ix.append(g, start, terms, p)
        elif kind == "truncate":
            s = model.get(g)
            if s is not None:
                s.truncate(o[2], rel)
            ix.truncate(g, o[2])
        elif kind == "compact":
            s = model.get_or_create(g)
            # a compaction names a term the group could have at that index
            (p,) = next_pos()
            s.compact(o[2], o[3], p, rel)
            ix.compact(g, o[2], o[3], p)
        elif kind == "snapshot":
            (p,) = next_pos()
            meta = SnapshotMeta(o[2], o[3])
            model.get_or_create(g).apply_snapshot(meta, None, p, rel)
            ix.apply_snapshot(g, meta, None, p)
        elif kind == "hard_state":
            (p,) = next_pos()
            hs = HardState(o[2], 1, 0)
            model.get_or_create(g).set_hard_state(hs, p, rel)
            ix.set_hard_state(g, hs, p)
        elif kind == "remove":
            model.remove(g, rel)
            ix.remove(g, rel)
        assert sorted(rel) == c_released(ix), o
        for h in GROUPS:
            assert observe_model(model, h) == observe_c(ix, h), (o, h)
    assert sorted(model.groups) == sorted(ix.groups)
    assert ix.entry_count() == model.entry_count()
    assert GUESSED == M.GUESSED


def test_index_memory_per_group_with_one_entry_and_a_hard_state():
    """The many-groups case: a group with one live entry and a hard state
    costs its struct and hash slots, no allocation (target <= 150 B)."""
    ix = GroupIndex()
    n = 20_000
    for g in range(n):
        ix.append(g, 1, [1], [(1 << 32) + 8 * g])
        ix.set_hard_state(g, HardState(1, 0, 1), (2 << 32) + 8 * g)
    per_group = ix.nbytes() / n
    assert per_group <= 150, per_group
    assert ix.entry_count() == n and len(ix.groups) == n


def test_removal_keeps_every_other_group_findable():
    """Backward-shift deletion from the open-addressing table: removing
    groups in any order leaves every other one where lookups find it."""
    ix = GroupIndex()
    ids = [(k * 0x9E3779B97F4A7C15) % 2**64 for k in range(3000)]
    for g in ids:
        ix.create(g)
    rel = array("Q")
    for g in ids[::3]:
        ix.remove(g, rel)
    left = set(ids) - set(ids[::3])
    assert set(ix.groups) == left
    assert all(ix.get(g) is not None for g in left)
    assert all(ix.get(g) is None for g in ids[::3])


record = st.one_of(
    # an entry record: (type, group, index, term); runs of one group's
    # consecutive indexes, overlaps, gaps and indexes below a base all occur
    st.tuples(st.just(1), st.sampled_from(GROUPS), st.integers(1, 12), st.integers(1, 3)),
    st.tuples(st.just(2), st.sampled_from(GROUPS), st.integers(0, 9), st.integers(0, 5)),
)


def _replay_one_by_one(ix, recs, pos, votes):
    for (t, g, i, term), p, v in zip(recs, pos, votes):
        if t == 1:
            ix.append_one(g, i, term, p)
        else:
            ix.set_hard_state(g, HardState(term, v, i), p)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(GROUPS), st.integers(0, 6), st.integers(0, 3)),
                max_size=4),
       st.lists(record, max_size=60), st.integers(0, 60))
def test_replay_of_a_span_is_the_records_one_by_one(before, recs, cut):
    """prl_index_replay (recovery's spans of entry and hard-state records)
    leaves every group as applying the records one at a time in log order
    does, including a group that overwrites itself within the span, and
    groups whose base is already known (compactions before the span)."""
    import numpy as np

    one, bulk = GroupIndex(), GroupIndex()
    for ix in (one, bulk):
        for k, (g, i, term) in enumerate(before):
            ix.compact(g, i, term, (3 << 32) + 8 * k)
        lib.prl_index_release_clear(ix.h)
    pos = [(1 << 32) + 8 * k for k in range(len(recs))]
    votes = [7 + k for k in range(len(recs))]
    _replay_one_by_one(one, recs, pos, votes)
    cols = [np.array([r[c] for r in recs], dtype) for c, dtype in
            ((0, np.uint8), (1, np.uint64), (2, np.uint64), (3, np.uint64))]
    p, v = np.array(pos, np.uint64), np.array(votes, np.uint64)
    fb = ffi.from_buffer
    cut = min(cut, len(recs))
    for s, e in ((0, cut), (cut, len(recs))):  # two spans: a replay call need not start a group
        assert lib.prl_index_replay(bulk.h, e - s, fb("uint8_t[]", cols[0][s:e]),
                                    fb("uint64_t[]", cols[1][s:e]), fb("uint64_t[]", cols[2][s:e]),
                                    fb("uint64_t[]", cols[3][s:e]), fb("uint64_t[]", p[s:e]),
                                    fb("uint64_t[]", v[s:e])) == 0
    assert c_released(one) == c_released(bulk)
    for h in GROUPS:
        assert observe_c(one, h) == observe_c(bulk, h), h
    assert bulk.entry_count() == one.entry_count()


def test_replay_refuses_other_record_types():
    ix = GroupIndex()
    z = ffi.new("uint64_t[1]")
    assert lib.prl_index_replay(ix.h, 1, ffi.new("uint8_t[1]", [3]), z, z, z, z, z) == \
        lib.PRL_E_BAD_ARGUMENT


@settings(max_examples=200, deadline=None)
@given(st.lists(op, max_size=40))
def test_live_positions_are_every_groups_records(ops):
    """prl_index_live_positions (what recovery retains) is, as a multiset,
    every group's entry positions and pins, as the GroupState views list them."""
    ix = GroupIndex()
    pos = [1 << 32]

    def next_pos(n=1):
        out = [pos[0] + 8 * k for k in range(n)]
        pos[0] += 8 * n
        return out

    rel = array("Q")
    for o in ops:
        kind, g = o[0], o[1]
        if kind == "append":
            ix.append(g, o[2], o[3], next_pos(len(o[3])))
        elif kind == "truncate":
            ix.truncate(g, o[2])
        elif kind == "compact":
            ix.compact(g, o[2], o[3], next_pos()[0])
        elif kind == "snapshot":
            ix.apply_snapshot(g, SnapshotMeta(o[2], o[3]), None, next_pos()[0])
        elif kind == "hard_state":
            ix.set_hard_state(g, HardState(o[2], 1, 0), next_pos()[0])
        elif kind == "remove":
            ix.remove(g, rel)
    want = sorted(p for s in ix.groups.values() for p in list(s.positions) + s.pins())
    n = ffi.new("uint64_t *")
    assert lib.prl_index_live_count(ix.h, n) == 0
    out = ffi.new("uint64_t[]", max(1, n[0]))
    assert lib.prl_index_live_positions(ix.h, out, n[0], n) == 0
    assert sorted(out[k] for k in range(n[0])) == want
    if want:
        assert lib.prl_index_live_positions(ix.h, out, len(want) - 1, n) == lib.PRL_E_BAD_ARGUMENT
