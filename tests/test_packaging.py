"""Packaging: the version lives in one place (pyraftlog/_version.py), and an
sdist carries everything needed to build the C extension and installs into a
fresh virtualenv (slow: it needs PyPI, or a mirror, for the build deps)."""
import ast
import importlib.metadata
import os
import subprocess
import sys
import tarfile
import textwrap

import pytest

import pyraftlog

from tests.common import ROOT

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")

VERSION_FILE = os.path.join(ROOT, "pyraftlog", "_version.py")


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def assigns_version(tree):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in n.targets)]


def package_sources():
    """Every .py file of the package, relative to ROOT."""
    for d, _, files in os.walk(os.path.join(ROOT, "pyraftlog")):
        for name in files:
            if name.endswith(".py"):
                yield os.path.relpath(os.path.join(d, name), ROOT)


def test_version_is_defined_once():
    (assign,) = assigns_version(ast.parse(read("pyraftlog", "_version.py")))
    assert isinstance(assign.value, ast.Constant) and isinstance(assign.value.value, str)
    version = assign.value.value

    # no other module assigns __version__ or spells the version out
    for rel in package_sources():
        if rel == os.path.join("pyraftlog", "_version.py"):
            continue
        text = read(rel)
        assert not assigns_version(ast.parse(text)), f"{rel} assigns __version__"
        assert f'"{version}"' not in text and f"'{version}'" not in text, rel

    # the build reads it from there: no literal version in pyproject.toml or setup.py
    project = tomllib.loads(read("pyproject.toml"))
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "pyraftlog._version.__version__"}
    setup_calls = [n for n in ast.walk(ast.parse(read("setup.py"))) if isinstance(n, ast.Call)]
    assert not any(k.arg == "version" for c in setup_calls for k in c.keywords)

    assert pyraftlog.__version__ == version
    # the installed distribution's metadata (stale after a bump without reinstalling)
    assert importlib.metadata.version("pyraftlog") == version


def test_every_package_directory_is_installed():
    """pyproject.toml lists the packages by hand: a subpackage left out of the
    list (pyraftlog/contrib/pysyncobj/) would be missing from an installed copy;
    and the demo application stays out of the package (examples/)."""
    listed = tomllib.loads(read("pyproject.toml"))["tool"]["setuptools"]["packages"]
    found = [os.path.relpath(d, ROOT).replace(os.sep, ".")
             for d, _, files in os.walk(os.path.join(ROOT, "pyraftlog")) if "__init__.py" in files]
    assert sorted(listed) == sorted(found)
    assert not [rel for rel in package_sources() if "demo" in os.path.basename(rel)]
    assert os.path.exists(os.path.join(ROOT, "examples", "pysyncobj_demo", "__main__.py"))


# -- sdist -> fresh virtualenv ----------------------------------------------

SMOKE = textwrap.dedent("""
    import importlib.util, os, sys, tempfile
    import pyraftlog
    import pyraftlog.contrib
    from pyraftlog import Entry, WriteBatch
    from pyraftlog.contrib.pysyncobj import PyraftlogJournal, install  # a subpackage

    here = os.path.dirname(pyraftlog.__file__)
    assert here.startswith(sys.prefix), here  # the installed copy, not the source tree
    assert os.path.exists(os.path.join(here, "py.typed"))
    # the demo is an example of the repository (examples/), not installed
    assert importlib.util.find_spec("pyraftlog.contrib.demo") is None
    assert importlib.util.find_spec("pysyncobj_demo") is None
    assert not [n for _, _, files in os.walk(here) for n in files if "demo" in n], here
    with tempfile.TemporaryDirectory() as d:
        log = pyraftlog.open(d, segment_size=1 << 20)
        b = WriteBatch()
        b.append(1, [Entry(1, 1, b"hello"), Entry(2, 1, b"world")])
        log.write(b).wait()
        log.close()
        log = pyraftlog.open(d, segment_size=1 << 20)
        assert log.entries(1, 1, 3) == [Entry(1, 1, b"hello"), Entry(2, 1, b"world")]
        log.close()
    print("smoke ok", pyraftlog.__version__)
""")


def run(cmd, cwd, timeout=600):
    """Run `cmd` without the test run's PYTHONPATH; its stdout, or fail showing
    the tail of both streams."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([str(c) for c in cmd], cwd=str(cwd), env=env, capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, (f"{' '.join(map(str, cmd))} exited {p.returncode}:\n"
                               f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p.stdout


def make_venv(path):
    run([sys.executable, "-m", "venv", path], cwd=path.parent)
    return path / "bin" / "python"


@pytest.mark.slow
@pytest.mark.timeout(1200)  # builds and installs in two fresh venvs
def test_sdist_builds_and_installs_in_a_fresh_venv(tmp_path):
    build_py = make_venv(tmp_path / "build-venv")
    probe = subprocess.run([str(build_py), "-m", "pip", "download", "--no-deps", "-q",
                            "-d", str(tmp_path / "probe"), "setuptools"],
                           capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        pytest.skip("no package index: `pip download setuptools` failed: "
                    + (probe.stderr.strip().splitlines() or ["?"])[-1])

    run([build_py, "-m", "pip", "install", "-q", "build"], cwd=tmp_path)
    run([build_py, "-m", "build", "--sdist", "--outdir", tmp_path / "dist", ROOT], cwd=tmp_path)
    (sdist,) = (tmp_path / "dist").glob("pyraftlog-*.tar.gz")
    top = sdist.name[:-len(".tar.gz")]
    with tarfile.open(sdist) as tar:
        members = {m.name[len(top) + 1:] for m in tar.getmembers()}
    csrc = [f"csrc/{n}" for n in os.listdir(os.path.join(ROOT, "csrc")) if n.endswith((".c", ".h"))]
    needed = csrc + ["pyraftlog/py.typed", "pyraftlog/_build.py", "pyraftlog/_version.py",
                     "pyraftlog/contrib/__init__.py", "pyraftlog/contrib/pysyncobj/__init__.py",
                     "setup.py", "pyproject.toml", "README.md",
                     # the tests import the demo's cluster pieces from there
                     "examples/pysyncobj_demo/__main__.py", "examples/pysyncobj_demo/store.py"]
    assert not [n for n in needed if n not in members], sorted(members)

    py = make_venv(tmp_path / "venv")
    run([py, "-m", "pip", "install", "-q", "--no-cache-dir", sdist], cwd=tmp_path)
    assert "smoke ok" in run([py, "-I", "-c", SMOKE], cwd=tmp_path)
    assert "verify" in run([py.parent / "pyraftlog", "--help"], cwd=tmp_path)
    assert pyraftlog.__version__ in run([py.parent / "pyraftlog", "--version"], cwd=tmp_path)
    assert run([py, "-I", "-c", "import importlib.metadata as m; print(m.version('pyraftlog'))"],
               cwd=tmp_path).strip() == pyraftlog.__version__
