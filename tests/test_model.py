"""Stateful property test: the engine against the in-memory model (tests/model.py).

Random batches of 1-4 operations over a few groups, including overlapping and
conflicting re-appends, appends into the compacted prefix, gaps and
non-consecutive lists (which must fail), truncations, compactions and
snapshots on both sides of the valid range, hard states, key-value writes and
group removal, interleaved with bulk appends (so that 64 KiB segments rotate,
are recycled and purged) and close + reopen of the same directory.  After
every step every read of every group is compared with the model; an invalid
batch must raise the same error class in both and change nothing.

Scale the run with ``PYRAFTLOG_HYPOTHESIS_EXAMPLES`` (default 60 examples of
up to ``PYRAFTLOG_HYPOTHESIS_STEPS`` = 25 steps).  A failure is shrunk, which
can take Hypothesis up to five minutes; the shrunk case is then replayed first
from the example database on the next run.
"""

import os
import shutil
import tempfile
import time

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import pyraftlog
from pyraftlog import ConfState, Entry, HardState, Snapshot, SnapshotMeta

from tests.model import Model, error_name, observe, replay, static_error

GROUPS = (0, 1, 7, 2**64 - 1)
KEYS = (b"a", b"b", b"applied")
SEGMENT_SIZE = 64 * 1024          # small, so that segments rotate and get recycled
PURGE_THRESHOLD = 3 * SEGMENT_SIZE   # small, so that lagging groups get rewritten
DATA_SIZES = (0, 0, 1, 10, 100, 500, 1200)   # a batch stays below ~40 KB
MAX_SIZES = (0, 50, 2500)
EXAMPLES = int(os.environ.get("PYRAFTLOG_HYPOTHESIS_EXAMPLES", "60"))
STEPS = int(os.environ.get("PYRAFTLOG_HYPOTHESIS_STEPS", "25"))

# Operations are drawn as state-independent *specs* (tuples such as
# ("append", group, "next", [(term, size, type), ...]) or ("compact", group, r))
# and resolved against the state when the batch is built, so a spec keeps its
# meaning while Hypothesis shrinks the steps before it.
groups_st = st.sampled_from(GROUPS)
position = st.integers(0, 1000)       # see resolve(): small values are valid indexes
choice = st.integers(0, 2)
entry_specs = st.lists(st.tuples(st.integers(1, 8), st.sampled_from(DATA_SIZES),
                                 st.sampled_from((0, 0, 0, 1, 2, 255))), min_size=1, max_size=8)
APPEND = st.tuples(st.just("append"), groups_st,
                   st.sampled_from(["next", "next", "overlap", "overlap", "from_first", "compacted",
                                    "gap", "non_consecutive", "empty"]),
                   st.integers(0, 8), entry_specs)
SPECS = {
    "append": APPEND,
    "truncate": st.tuples(st.just("truncate"), groups_st, position),
    "compact": st.tuples(st.just("compact"), groups_st, position),
    "apply_snapshot": st.tuples(st.just("apply_snapshot"), groups_st, position, st.integers(0, 9),
                                st.sets(st.integers(1, 5), max_size=3),
                                st.sets(st.integers(6, 9), max_size=2), st.booleans(), choice),
    "bootstrap": st.tuples(st.just("bootstrap"), groups_st),
    "set_hard_state": st.tuples(st.just("set_hard_state"), groups_st,
                                st.tuples(*[st.integers(0, 10)] * 3)),
    "put": st.tuples(st.just("put"), groups_st, st.sampled_from(KEYS), choice),
    "delete": st.tuples(st.just("delete"), groups_st, st.sampled_from(KEYS)),
    "remove_group": st.tuples(st.just("remove_group"), groups_st),
}
WEIGHTS = {"append": 8, "truncate": 2, "compact": 2, "apply_snapshot": 1, "bootstrap": 1,
           "set_hard_state": 1, "put": 2, "delete": 1, "remove_group": 1}
KIND_TABLE = [k for k, w in WEIGHTS.items() for _ in range(w)]
op_spec = st.integers(0, len(KIND_TABLE) - 1).flatmap(lambda n: SPECS[KIND_TABLE[n]])


def resolve(spec, model, tag):
    """Turn a spec into a concrete operation aimed near ``model``'s valid range."""
    kind, g, *args = spec
    first, last = model.first_index(g), model.last_index(g)

    def near(r, extra=0):
        # an index in [first-2, last+2+extra]; small r picks from the valid middle
        candidates = list(range(first, last + 1)) * 2 + [first - 1, last + 1, first - 2, last + 2]
        candidates += [last + 2 + n for n in range(1, extra + 1)]
        return max(0, candidates[r % len(candidates)])

    if kind == "append":
        mode, back, especs = args
        start = {"overlap": max(first, last - back),
                 "from_first": first,          # replaces every entry after the compaction point
                 "compacted": max(1, first - 1 - back % 4),
                 "gap": last + 2 + back % 3}.get(mode, last + 1)
        indexes = list(range(start, start + len(especs)))
        if mode == "non_consecutive":
            indexes = [start, start + (0, 2, 3)[back % 3]]
        elif mode == "empty":
            indexes = []
        terms = sorted(t for t, _, _ in especs)
        entries = []
        for i, t, (_, size, etype) in zip(indexes, terms, especs):
            data = (b"%d:%d:%d|" % (tag, i, t) + bytes([i % 256]) * size)[:size]
            entries.append(Entry(i, t, data, etype))
        return ("append", g, entries)
    if kind in ("truncate", "compact"):
        return (kind, g, near(args[0]))
    if kind == "bootstrap":             # index 0 carrying only a ConfState
        return ("apply_snapshot", g, Snapshot(SnapshotMeta(0, 0, ConfState(voters=(1, 2, 3)))))
    if kind == "apply_snapshot":
        r, term, voters, learners, auto_leave, which = args
        cs = ConfState(voters=tuple(sorted(voters)), learners=tuple(sorted(learners)),
                       auto_leave=auto_leave)
        data = [b"", b"snap-%d" % tag, b"S%d" % tag * 1500][which]
        return ("apply_snapshot", g, Snapshot(SnapshotMeta(near(r, 1), term, cs), data))
    if kind == "set_hard_state":
        return ("set_hard_state", g, HardState(*args[0]))
    if kind == "put":
        key, which = args
        return ("put", g, key, [b"", b"v%d" % tag, b"V%d" % tag * 300][which])
    if kind == "delete":
        return ("delete", g, args[0])
    return ("remove_group", g)


def short(obj):
    """repr with long bytes abbreviated, for readable failure messages."""
    if isinstance(obj, (bytes, bytearray)):
        return repr(bytes(obj)) if len(obj) <= 24 else f"<{len(obj)} bytes {bytes(obj[:12])!r}...>"
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return f"{type(obj).__name__}({', '.join(short(v) for v in obj)})"
    if isinstance(obj, (list, tuple)):
        inner = ", ".join(short(v) for v in obj)
        return f"[{inner}]" if isinstance(obj, list) else f"({inner})"
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{short(k)}: {short(v)}" for k, v in obj.items()) + "}"
    return repr(obj)


class LogMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="pyraftlog-model-")
        self.model = Model()
        self.log = self._open()
        self.tag = 0

    def _open(self):
        return pyraftlog.open(self.dir, segment_size=SEGMENT_SIZE, sync=False,
                              purge_threshold=PURGE_THRESHOLD)

    def teardown(self):
        try:
            self.log.close()
        except pyraftlog.ClosedError:
            pass
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    @rule(specs=st.lists(op_spec, min_size=1, max_size=4))
    def write_batch(self, specs):
        self.tag += 1
        scratch = self.model.copy()        # aim later ops at the state earlier ops leave
        ops = []
        for spec in specs:
            op = resolve(spec, scratch, self.tag)
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
        if want is None:
            assert got is None, f"batch {short(ops)}: engine raised {got}, the model accepts it"
        else:
            allowed = {want} | {static_error(op) for op in ops} - {None}
            assert got in allowed, f"batch {short(ops)}: engine raised {got}, model {want}"

    @rule(g=groups_st, count=st.integers(5, 25))
    def bulk_append(self, g, count):
        """Volume (up to ~28 KB a batch): segments fill, rotate, get recycled and purged."""
        self.tag += 1
        start = self.model.last_index(g) + 1
        term = max(self.model.term(g, start - 1), 1)
        ops = [("append", g, [Entry(i, term, b"bulk-%d-%d|" % (self.tag, i) * 90)
                              for i in range(start, start + count)])]
        self.model.write(ops)
        self.log.write(replay(ops, self.log.batch())).wait()

    @rule(settle=st.booleans())
    def reopen(self, settle):
        if settle:
            # let background work (recycling the segments emptied by durable
            # batches, purging) happen before close, so reopen replays it
            self.log.sync()
            time.sleep(0.02)
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
    return short({k: {"engine": got.get(k), "model": want.get(k)}
                  for k in keys if got.get(k) != want.get(k)})


LogMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large],
    report_multiple_bugs=False,
)
# longer than the suite's default timeout when scaled up (make fuzz)
TestLogMachine = pytest.mark.timeout(max(300, 6 * EXAMPLES))(LogMachine.TestCase)
