"""docs/API.md is the contract: whatever the code makes public is written
there.  The names are taken from the code (exports, public methods and
attributes, exception classes, `open()`'s options, a real engine's `stats()`,
the command line's subcommands and flags), never from a list in this test, so
a name added to the code without its line in the contract fails here."""
import argparse
import inspect
import os
import re

import pytest

import pyraftlog
from pyraftlog.tools import cli
from tests.common import ROOT

DOC = open(os.path.join(ROOT, "docs", "API.md")).read()
BLOCKS = re.findall(r"```.*?```", DOC, re.S)      # code examples
PROSE = re.sub(r"```.*?```", "", DOC, flags=re.S)
CODE_NAMES = set(re.findall(r"`([^`\n]+)`", PROSE))  # everything written as code in the text
WORDS = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", " ".join(CODE_NAMES | set(BLOCKS))))


def documented(name):
    return name in WORDS


def public_members(cls):
    return sorted(n for n, _ in inspect.getmembers(cls) if not n.startswith("_"))


def test_every_export_is_in_the_contract():
    missing = [n for n in pyraftlog.__all__ if not documented(n)]
    assert not missing, f"exported but not in docs/API.md: {missing}"


@pytest.mark.parametrize("cls", [pyraftlog.Engine, pyraftlog.WriteBatch, pyraftlog.Ticket,
                                 pyraftlog.GroupView], ids=lambda c: c.__name__)
def test_every_public_method_and_attribute_is_in_the_contract(cls, tmp_path):
    names = set(public_members(cls)) | set(getattr(cls, "__slots__", ()))
    if cls is pyraftlog.Engine:  # instance attributes
        with pyraftlog.open(str(tmp_path / "log"), segment_size=1 << 20) as log:
            names |= {n for n in vars(log) if not n.startswith("_")}
    missing = sorted(n for n in names if not n.startswith("_") and not documented(n))
    assert not missing, f"{cls.__name__}: public but not in docs/API.md: {missing}"


def test_every_error_is_in_the_contract():
    errors = [n for n, o in vars(pyraftlog).items()
              if inspect.isclass(o) and issubclass(o, BaseException)]
    assert "PoisonedError" in errors
    assert not [n for n in errors if not documented(n)]


def test_every_open_option_is_in_the_contract():
    params = inspect.signature(pyraftlog.Engine.__init__).parameters
    options = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY]
    assert "segment_size" in options
    missing = [n for n in options if not re.search(rf"^\| `{n}` \|", DOC, re.M)]
    assert not missing, f"options without a row in docs/API.md's table: {missing}"


def test_every_stats_key_is_in_the_contract(tmp_path):
    with pyraftlog.open(str(tmp_path / "log"), segment_size=1 << 20) as log:
        keys = log.stats()
    # `a`/`_b` in the doc stands for a and a_b (e.g. `purge_rewritten_bytes`/`_groups`)
    spelled = set(CODE_NAMES)
    for m in re.finditer(r"`([a-z0-9_]+)`((?:/`_[a-z0-9_]+`)+)", PROSE):
        stem = m.group(1).rsplit("_", 1)[0]
        spelled |= {stem + s.strip("`/") for s in re.findall(r"`_[a-z0-9_]+`", m.group(2))}
    missing = sorted(k for k in keys if k not in spelled)
    assert not missing, f"stats() keys not in docs/API.md: {missing}"


def test_every_command_and_flag_is_in_the_contract():
    parser = cli._parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)][0]
    for name, sub in subs.choices.items():
        assert f"pyraftlog {name} DIR" in DOC, name
        for action in sub._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert flag in DOC, f"pyraftlog {name} {flag} is not in docs/API.md"
