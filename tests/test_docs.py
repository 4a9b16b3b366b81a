"""The README's Python examples run as written (those that need a network
and command-line arguments — the PySyncObj cluster — are covered by
tests/test_pysyncobj.py instead)."""
import os
import re

import pytest

import pyraftlog

from tests.common import ROOT

BLOCKS = re.findall(r"```python\n(.*?)```", open(os.path.join(ROOT, "README.md")).read(), re.S)
RUNNABLE = [b for b in BLOCKS if "sys.argv" not in b]


def test_readme_has_examples():
    assert len(RUNNABLE) >= 3


@pytest.mark.parametrize("code", RUNNABLE, ids=[f"block{i}" for i in range(len(RUNNABLE))])
def test_readme_example_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    exec(compile(code, "README.md", "exec"), {"pyraftlog": pyraftlog, "__name__": "readme"})


PERSIST = [b for b in RUNNABLE if "def persist(" in b]


class Ready:
    """What a Raft library's Ready holds for one group (the names the
    README's persist() reads)."""

    def __init__(self, snapshot=None, entries=(), hard_state=None):
        self.snapshot, self.entries, self.hard_state = snapshot, list(entries), hard_state


def test_readme_persist_recipe_persists_a_ready(tmp_path):
    """The README's persist() is called, not only defined: snapshot, entries
    and hard state of many groups in one batch, in the order the README gives
    (a snapshot first, so entries after it do not leave a gap), and a
    conflicting suffix replaced."""
    from pyraftlog import ConfState, Entry, HardState, Snapshot, SnapshotMeta
    assert len(PERSIST) == 1
    ns = {"pyraftlog": pyraftlog, "__name__": "readme"}
    exec(compile(PERSIST[0], "README.md", "exec"), ns)
    persist = ns["persist"]
    snap = Snapshot(SnapshotMeta(10, 2, ConfState(voters=(1, 2))), b"state")
    with pyraftlog.open(str(tmp_path / "log"), segment_size=1 << 20) as log:
        t = persist(log, {
            1: Ready(entries=[Entry(1, 1, b"a"), Entry(2, 1, b"b"), Entry(3, 1, b"c")],
                     hard_state=HardState(1, 1, 0)),
            2: Ready(snapshot=snap, entries=[Entry(11, 2, b"x"), Entry(12, 2, b"y")],
                     hard_state=HardState(2, 1, 10)),
            3: Ready(hard_state=HardState(5, 0, 0)),
        })
        t.wait(timeout=60)
        assert t.done()
        # a later Ready: a follower's conflicting suffix from index 2 on
        persist(log, {1: Ready(entries=[Entry(2, 3, b"B")], hard_state=HardState(3, 2, 1))}
                ).wait(timeout=60)
    with pyraftlog.open(str(tmp_path / "log"), segment_size=1 << 20) as log:
        assert [(e.index, e.term, e.data) for e in log.entries(1, 1, 3)] == [
            (1, 1, b"a"), (2, 3, b"B")]
        assert log.last_index(1) == 2
        assert log.initial_state(1) == (HardState(3, 2, 1), ConfState())
        assert log.snapshot(2) == snap and log.first_index(2) == 11
        assert [e.data for e in log.entries(2, 11, 13)] == [b"x", b"y"]
        assert log.initial_state(2) == (HardState(2, 1, 10), ConfState(voters=(1, 2)))
        assert log.initial_state(3)[0] == HardState(5, 0, 0)
        assert log.groups() == [1, 2, 3]
