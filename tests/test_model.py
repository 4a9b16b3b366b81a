"""Stateful property test: the engine against the in-memory model (tests/model.py).

Random batches of 1-4 operations over a few groups, including overlapping and
conflicting re-appends, appends into the compacted prefix, gaps and
non-consecutive lists (which must fail), truncations, compactions and
snapshots on both sides of the valid range, hard states, key-value writes and
group removal, interleaved with close + reopen of the same directory.  After
every step every read of every group is compared with the model; an invalid
batch must raise the same error class in both and change nothing.

Scale the run with ``PYRAFTLOG_HYPOTHESIS_EXAMPLES`` (default 60 examples of
up to 25 steps) and ``PYRAFTLOG_HYPOTHESIS_STEPS``.
"""

import os
import shutil
import tempfile

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import pyraftlog
from pyraftlog import ConfState, Entry, HardState, Snapshot, SnapshotMeta

from model import Model, error_name, observe, replay

GROUPS = (0, 1, 7, 2**64 - 1)
KEYS = (b"a", b"b", b"applied")
SEGMENT_SIZE = 64 * 1024          # small, so that segments rotate
DATA_SIZES = (0, 0, 1, 10, 100, 500, 1200)   # a batch stays below ~40 KB
MAX_SIZES = (0, 50, 2500)
EXAMPLES = int(os.environ.get("PYRAFTLOG_HYPOTHESIS_EXAMPLES", "60"))
STEPS = int(os.environ.get("PYRAFTLOG_HYPOTHESIS_STEPS", "25"))

OP_KINDS = (["append"] * 20 + ["truncate"] * 3 + ["compact"] * 5 + ["apply_snapshot"] * 2
            + ["set_hard_state"] * 2 + ["put"] * 3 + ["delete"] * 2 + ["remove_group"])
APPEND_MODES = ["next"] * 6 + ["overlap"] * 4 + ["compacted", "gap", "non_consecutive", "empty"]


@st.composite
def operation(draw, model, tag):
    """One operation, aimed near the valid range of ``model`` (some invalid)."""
    kind = draw(st.sampled_from(OP_KINDS))
    g = draw(st.sampled_from(GROUPS))
    first, last = model.first_index(g), model.last_index(g)
    near = st.integers(max(0, first - 2), last + 2)

    if kind == "append":
        mode = draw(st.sampled_from(APPEND_MODES))
        count = draw(st.integers(1, 8))
        if mode == "next":
            start = last + 1
        elif mode == "overlap":
            start = draw(st.integers(first, max(first, last)))
        elif mode == "compacted":
            start = draw(st.integers(max(1, first - 4), first))
        elif mode == "gap":
            start = last + draw(st.integers(2, 4))
        else:
            start = last + 1
        indexes = list(range(start, start + count))
        if mode == "non_consecutive":
            indexes = [start, start + draw(st.sampled_from([0, 2, 3]))]
        if mode == "empty":
            indexes = []
        terms = sorted(draw(st.lists(st.integers(1, 8), min_size=len(indexes), max_size=len(indexes))))
        entries = []
        for i, t in zip(indexes, terms):
            size = draw(st.sampled_from(DATA_SIZES))
            etype = draw(st.sampled_from((0, 0, 0, 1, 2, 255)))
            data = (b"%d:%d:%d|" % (tag, i, t) + bytes([i % 256]) * size)[:size] if size else b""
            entries.append(Entry(i, t, data, etype))
        return ("append", g, entries)
    if kind == "truncate":
        return ("truncate", g, draw(near))
    if kind == "compact":
        return ("compact", g, draw(st.one_of(near, st.integers(first, max(first, last)))))
    if kind == "apply_snapshot":
        if draw(st.integers(0, 5)) == 0:          # bootstrap form: index 0, ConfState only
            meta = SnapshotMeta(0, 0, ConfState(voters=(1, 2, 3)))
            return ("apply_snapshot", g, Snapshot(meta))
        index = draw(st.integers(max(0, first - 2), last + 3))
        term = draw(st.integers(0, 9))
        cs = ConfState(voters=tuple(sorted(draw(st.sets(st.integers(1, 5), max_size=3)))),
                       learners=tuple(sorted(draw(st.sets(st.integers(6, 9), max_size=2)))),
                       auto_leave=draw(st.booleans()))
        data = draw(st.sampled_from([b"", b"snap-%d" % tag, b"S%d" % tag * 1500]))
        return ("apply_snapshot", g, Snapshot(SnapshotMeta(index, term, cs), data))
    if kind == "set_hard_state":
        hs = HardState(*(draw(st.integers(0, 10)) for _ in range(3)))
        return ("set_hard_state", g, hs)
    if kind == "put":
        value = draw(st.sampled_from([b"", b"v%d" % tag, b"V%d" % tag * 300]))
        return ("put", g, draw(st.sampled_from(KEYS)), value)
    if kind == "delete":
        return ("delete", g, draw(st.sampled_from(KEYS)))
    return ("remove_group", g)


class LogMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="pyraftlog-model-")
        self.model = Model()
        self.log = self._open()
        self.tag = 0

    def _open(self):
        return pyraftlog.open(self.dir, segment_size=SEGMENT_SIZE, sync=False)

    def teardown(self):
        try:
            self.log.close()
        except pyraftlog.ClosedError:
            pass
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    @rule(data=st.data())
    def write_batch(self, data):
        self.tag += 1
        scratch = self.model.copy()        # aim later ops at the state earlier ops leave
        ops = []
        for _ in range(data.draw(st.integers(1, 4), label="ops")):
            op = data.draw(operation(scratch, self.tag), label="op")
            ops.append(op)
            try:
                scratch.write([op])
            except Exception:  # noqa: BLE001 - this batch will be invalid anyway
                pass

        try:
            self.model.write(ops)
            want = None
        except Exception as exc:  # noqa: BLE001
            want = error_name(exc)
        try:
            self.log.write(replay(ops, self.log.batch())).wait()
            got = None
        except Exception as exc:  # noqa: BLE001
            got = error_name(exc)
        assert got == want, f"batch {ops!r}: engine raised {got}, model {want}"

    @rule()
    def reopen(self):
        self.log.close()
        self.log = self._open()

    @rule()
    def sync(self):
        self.log.sync()

    @invariant()
    def matches_model(self):
        for g in GROUPS:
            want = observe(self.model, g, keys=KEYS, max_sizes=MAX_SIZES)
            got = observe(self.log, g, keys=KEYS, max_sizes=MAX_SIZES)
            assert got == want, f"group {g}: {_diff(got, want)}"
            view = observe(self.log.group(g), None, keys=KEYS, max_sizes=MAX_SIZES)
            assert view == want, f"group({g}) view: {_diff(view, want)}"
        groups = self.log.groups()
        assert isinstance(groups, list) and groups == sorted(groups)
        # groups() lists every group with state, and none removed or never written.
        assert set(self.model.groups()) <= set(groups) <= set(self.model.groups_upper_bound()), \
            (groups, self.model.groups(), self.model.groups_upper_bound())


def _diff(got, want):
    keys = sorted(set(got) | set(want), key=repr)
    return {k: (got.get(k), want.get(k)) for k in keys if got.get(k) != want.get(k)}


LogMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large],
)
TestLogMachine = LogMachine.TestCase
