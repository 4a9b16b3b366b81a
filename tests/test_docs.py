"""The README's Python examples run as written (those that need a network
and command-line arguments — the PySyncObj cluster — are covered by
tests/test_pysyncobj.py instead)."""
import os
import re

import pytest

import pyraftlog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKS = re.findall(r"```python\n(.*?)```", open(os.path.join(ROOT, "README.md")).read(), re.S)
RUNNABLE = [b for b in BLOCKS if "sys.argv" not in b]


def test_readme_has_examples():
    assert len(RUNNABLE) >= 3


@pytest.mark.parametrize("code", RUNNABLE, ids=[f"block{i}" for i in range(len(RUNNABLE))])
def test_readme_example_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    exec(compile(code, "README.md", "exec"), {"pyraftlog": pyraftlog, "__name__": "readme"})
