"""SECURITY.md: a log directory is private by default, and nothing in it can
make pyraftlog run code, touch a file outside it or hang.

* modes of a fresh log (files 0600, directories 0700; `file_mode`);
* hostile names planted in a log directory — a symbolic link (to a file
  outside, to a valid segment outside), a FIFO, a character device, a
  directory — where a segment, a free segment, LOCK, snapshots/ or a
  snapshot file should be: `open` in every recovery mode and the CLI's
  `inspect`, `dump` and `verify` end in a CorruptionError (exit 1) naming
  the path, never a read or write outside the directory, never a hang;
* wrong paths for `open`: a regular file, missing parents, a directory this
  process may not write;
* no code execution from log bytes: no pickle.loads/eval/exec in the
  package, and the PySyncObj adapter's vote encoding."""
import io
import os
import pickle
import re
import shutil
import stat
import tempfile

import pytest

import pyraftlog
from pyraftlog import CorruptionError, Entry, Snapshot, SnapshotMeta, WriteBatch

from tests.common import ROOT, bounded, run_child
from tests.common import run_cli as cli

SEG = 1 << 16
SEG1 = "0000000000000001.seg"
MODES = ("strict", "tolerate_tail", "tolerate_any")


@pytest.fixture(autouse=True)
def _umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def make_log(path, snapshot=True):
    """A closed log with entries in two segments and a snapshot file."""
    with pyraftlog.open(str(path), segment_size=SEG, sync=False) as log:
        for i in range(1, 200):
            log.write(WriteBatch().append(1, [Entry(i, 1, b"x" * 500)]))
        if snapshot:
            log.write(WriteBatch().apply_snapshot(
                2, Snapshot(SnapshotMeta(5, 1), b"snapshot data"))).wait()
        log.sync()
    return str(path)


# -- modes ------------------------------------------------------------------

def _all_modes(path):
    out = {}
    for dirpath, dirs, files in os.walk(path):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, path)] = mode(p)
    return out


def test_a_fresh_log_is_private(tmp_path):
    path = make_log(tmp_path / "new" / "log")  # missing parents are created
    assert mode(path) == 0o700
    modes = _all_modes(path)
    assert modes.pop("snapshots") == 0o700
    kinds = {n.rsplit(".", 1)[-1] for n in modes}
    assert {"seg", "free", "snap"} <= kinds and "LOCK" in modes, modes
    assert set(modes.values()) == {0o600}, modes
    # parents are not the log's: they get the usual mode
    assert mode(tmp_path / "new") == 0o755


def test_file_mode_gives_group_access(tmp_path):
    path = str(tmp_path / "log")
    with pyraftlog.open(path, segment_size=SEG, sync=False, file_mode=0o640) as log:
        log.write(WriteBatch().apply_snapshot(1, Snapshot(SnapshotMeta(5, 1), b"d"))).wait()
        for i in range(1, 200):
            log.write(WriteBatch().append(2, [Entry(i, 1, b"x" * 500)]))
    assert mode(path) == 0o750
    modes = _all_modes(path)
    assert modes.pop("snapshots") == 0o750
    assert set(modes.values()) == {0o640}, modes


def test_existing_modes_are_left_alone(tmp_path):
    path = make_log(tmp_path / "log")
    os.chmod(path, 0o755)
    os.chmod(os.path.join(path, SEG1), 0o644)
    os.chmod(os.path.join(path, "LOCK"), 0o640)
    with pyraftlog.open(path, segment_size=SEG, sync=False) as log:
        assert log.last_index(1) == 199
    assert mode(path) == 0o755
    assert mode(os.path.join(path, SEG1)) == 0o644
    assert mode(os.path.join(path, "LOCK")) == 0o640


@pytest.mark.parametrize("bad", [0o700, 0o400, 0o1600, 0o4600, -1, 0o777])
def test_bad_file_modes_are_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="file_mode"):
        pyraftlog.open(str(tmp_path / "log"), file_mode=bad)
    assert not os.path.exists(tmp_path / "log")


@pytest.mark.parametrize("bad", ["0600", 1.5, True, None])
def test_file_mode_must_be_an_int(tmp_path, bad):
    with pytest.raises(TypeError, match="file_mode"):
        pyraftlog.open(str(tmp_path / "log"), file_mode=bad)


# -- hostile names ------------------------------------------------------------

class Outside:
    """Files outside the log directory that a planted link points at; their
    bytes and times must not change."""

    def __init__(self, root, log):
        self.dir = os.path.join(root, "outside")
        os.makedirs(self.dir)
        self.victim = os.path.join(self.dir, "victim")
        with open(self.victim, "wb") as f:
            f.write(b"not yours " * 1000)
        self.segment = os.path.join(self.dir, "segment")
        shutil.copyfile(os.path.join(log, SEG1), self.segment)
        self.subdir = os.path.join(self.dir, "dir")
        os.makedirs(self.subdir)
        self._before = self.snapshot()

    def snapshot(self):
        out = {}
        for n in sorted(os.listdir(self.dir)):
            p = os.path.join(self.dir, n)
            st = os.lstat(p)
            data = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else None
            out[n] = (data, st.st_mtime_ns, st.st_size)
        out["subdir"] = sorted(os.listdir(self.subdir))
        return out

    def unchanged(self):
        assert self.snapshot() == self._before


def _plant(path, kind, out):
    """Replace (or create) `path` with a hostile entry of `kind`."""
    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    if kind == "symlink":
        os.symlink(out.victim, path)
    elif kind == "symlink_to_segment":
        os.symlink(out.segment, path)
    elif kind == "symlink_to_dir":
        os.symlink(out.subdir, path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        try:
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null
        except PermissionError:
            pytest.skip("creating a device needs CAP_MKNOD")
    elif kind == "directory":
        os.mkdir(path)
    else:
        raise AssertionError(kind)


FILE_KINDS = ("symlink", "symlink_to_segment", "fifo", "device", "directory")
# where: the name planted, relative to the log directory
FILE_PLACES = {
    "segment": SEG1,                                   # an existing segment replaced
    "next_segment": "00000000000000ff.seg",            # a newer segment name added
    "free": "00000000000000fe.free",                   # a free segment file added
    "lock": "LOCK",
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return make_log(tmp_path_factory.mktemp("pristine") / "log")


@pytest.fixture
def hostile(tmp_path, pristine):
    def make(place, kind):
        path = str(tmp_path / "log")
        shutil.copytree(pristine, path, symlinks=True)
        out = Outside(str(tmp_path), path)
        target = os.path.join(path, place)
        _plant(target, kind, out)
        return path, target, out
    return make


@pytest.mark.parametrize("kind", FILE_KINDS)
@pytest.mark.parametrize("place", sorted(FILE_PLACES))
@pytest.mark.parametrize("rmode", MODES)
def test_open_refuses_what_is_not_a_regular_file(hostile, place, kind, rmode):
    path, target, out = hostile(FILE_PLACES[place], kind)
    # LOCK's bytes are never read: not corruption of the log, an OSError
    # (IsADirectoryError for a directory, as tests/crash/test_corruption.py
    # wants); the other names are parts of the log
    want = OSError if place == "lock" else CorruptionError
    with pytest.raises(want) as ei:
        bounded(lambda: pyraftlog.open(path, segment_size=SEG, recovery_mode=rmode), "open")
    if place == "lock":
        assert ei.value.filename == target and "not a regular file" in str(ei.value)
    else:
        assert ei.value.path == target, str(ei.value)
        assert "not a regular file" in ei.value.reason
    out.unchanged()
    assert os.path.lexists(target)  # left for the operator to look at


SNAP_KINDS = ("symlink_to_dir", "symlink", "fifo", "device")


@pytest.mark.parametrize("kind", SNAP_KINDS)
@pytest.mark.parametrize("rmode", MODES)
def test_open_refuses_a_snapshots_dir_that_is_not_a_directory(hostile, kind, rmode):
    path, target, out = hostile("snapshots", kind)
    with pytest.raises(CorruptionError) as ei:
        bounded(lambda: pyraftlog.open(path, segment_size=SEG, recovery_mode=rmode), "open")
    assert ei.value.path == target and "not a directory" in ei.value.reason
    out.unchanged()


def _snap_file(path):
    d = os.path.join(path, "snapshots")
    (name,) = [n for n in os.listdir(d) if n.endswith(".snap")]
    return os.path.join("snapshots", name)


@pytest.mark.parametrize("kind", FILE_KINDS)
@pytest.mark.parametrize("rmode", MODES)
def test_open_refuses_a_snapshot_file_that_is_not_a_regular_file(hostile, pristine, kind, rmode):
    path, target, out = hostile(_snap_file(pristine), kind)
    with pytest.raises(CorruptionError) as ei:
        bounded(lambda: pyraftlog.open(path, segment_size=SEG, recovery_mode=rmode), "open")
    assert ei.value.path == target and "not a regular file" in ei.value.reason
    out.unchanged()


def test_a_snapshot_replaced_after_open_is_refused_when_read(tmp_path, pristine):
    path = str(tmp_path / "log")
    shutil.copytree(pristine, path)
    out = Outside(str(tmp_path), path)
    with pyraftlog.open(path, segment_size=SEG) as log:
        target = os.path.join(path, _snap_file(pristine))
        _plant(target, "symlink", out)
        with pytest.raises(CorruptionError) as ei:
            log.snapshot(2)
        assert ei.value.path == target and "symbolic link" in ei.value.reason
        _plant(target, "fifo", out)
        with pytest.raises(CorruptionError):
            bounded(lambda: log.snapshot(2), "snapshot()")
        os.unlink(target)
    out.unchanged()


def test_names_outside_the_format_are_left_alone(tmp_path, pristine):
    path = str(tmp_path / "log")
    shutil.copytree(pristine, path)
    out = Outside(str(tmp_path), path)
    for name in ("notes.txt", "1.seg", "00000000000000zz.seg", "snapshots/readme"):
        os.symlink(out.victim, os.path.join(path, name))
    os.mkfifo(os.path.join(path, "fifo"))
    with pyraftlog.open(path, segment_size=SEG) as log:
        assert log.last_index(1) == 199 and log.snapshot(2).data == b"snapshot data"
        log.write(WriteBatch().append(1, [Entry(200, 1, b"y")])).wait()
    assert all(os.path.islink(os.path.join(path, n)) for n in ("notes.txt", "1.seg"))
    out.unchanged()


# -- the command line ---------------------------------------------------------


@pytest.mark.parametrize("kind", FILE_KINDS)
@pytest.mark.parametrize("place", ["segment", "next_segment", "free"])
@pytest.mark.parametrize("command", ["inspect", "dump", "verify"])
def test_cli_refuses_what_is_not_a_regular_file(hostile, place, kind, command):
    path, target, out = hostile(FILE_PLACES[place], kind)
    p = cli(command, path)
    if place == "free" and command != "inspect":
        assert p.returncode == 0, p.stderr  # dump and verify do not look at free files
    else:
        assert p.returncode == 1, (p.stdout, p.stderr)
        assert target in p.stderr and "not a regular file" in p.stderr, p.stderr
    out.unchanged()


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_cli_refuses_a_snapshot_file_that_is_not_a_regular_file(hostile, pristine, kind,
                                                                 command):
    path, target, out = hostile(_snap_file(pristine), kind)
    p = cli(command, path)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert target in p.stderr and "not a regular file" in p.stderr, p.stderr
    out.unchanged()


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_cli_refuses_a_snapshots_dir_that_is_a_link(hostile, command):
    path, target, out = hostile("snapshots", "symlink_to_dir")
    p = cli(command, path)
    assert p.returncode == 1 and target in p.stderr and "not a directory" in p.stderr, p.stderr
    out.unchanged()


# -- wrong paths ------------------------------------------------------------------

def test_open_on_a_regular_file_names_it(tmp_path):
    f = tmp_path / "file"
    f.write_bytes(b"data")
    with pytest.raises(NotADirectoryError) as ei:
        pyraftlog.open(str(f))
    assert ei.value.filename == str(f) and "not a directory" in str(ei.value)
    assert f.read_bytes() == b"data"


def test_open_below_a_regular_file_names_it(tmp_path):
    f = tmp_path / "file"
    f.write_bytes(b"data")
    with pytest.raises(NotADirectoryError) as ei:
        pyraftlog.open(str(f / "log"))
    assert str(f) in str(ei.value)


def test_open_creates_missing_parents(tmp_path):
    path = tmp_path / "a" / "b" / "log"
    pyraftlog.open(str(path), segment_size=SEG).close()
    assert os.path.isdir(path) and mode(path) == 0o700


_UNWRITABLE_CHILD = r"""
import os, sys
import pyraftlog  # first: the interpreter's own files may not be readable by nobody
if os.getuid() == 0:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
for path in sys.argv[1:]:
    try:
        pyraftlog.open(path)
    except PermissionError as exc:
        print(type(exc).__name__, exc.filename, exc.strerror, sep="|")
    else:
        print("opened", path)
"""


def test_a_directory_without_write_permission_is_a_clear_error():
    # a directory of its own under /tmp: the child may drop to nobody, who
    # cannot enter pytest's 0700 tmp_path
    top = tempfile.mkdtemp(prefix="pyraftlog-perm-")
    try:
        if os.getuid() != 0:
            pytest.skip("needs root to drop to an unprivileged user")
        os.chmod(top, 0o755)
        ro = os.path.join(top, "ro")
        make_log(ro, snapshot=False)
        os.chmod(ro, 0o755)  # readable by nobody, writable by root only
        for n in os.listdir(ro):
            os.chmod(os.path.join(ro, n), 0o644)
        fresh = os.path.join(top, "fresh")
        os.mkdir(fresh, 0o555)
        below = os.path.join(top, "ro2")
        os.mkdir(below, 0o555)
        r = run_child(_UNWRITABLE_CHILD, ro, fresh, os.path.join(below, "log"))
        assert r.returncode == 0, r.stderr.decode()
        lines = r.stdout.decode().splitlines()
        assert lines[0].startswith(f"PermissionError|{ro}|"), lines
        assert "writable" in lines[0]
        assert lines[1].startswith(f"PermissionError|{fresh}|"), lines
        assert lines[2].startswith("PermissionError|" + os.path.join(below, "log")), lines
        assert sorted(os.listdir(fresh)) == [] and os.listdir(below) == []
    finally:
        shutil.rmtree(top, ignore_errors=True)


# -- no code execution from log bytes -----------------------------------------------

_PACKAGE = os.path.join(ROOT, "pyraftlog")
_CALLS = re.compile(r"\b(pickle\.loads?|marshal\.loads?|cPickle|shelve|yaml\.load|eval|exec|"
                    r"__import__|importlib\.import_module)\s*\(")


def _sources():
    for dirpath, _, files in os.walk(_PACKAGE):
        for n in files:
            if n.endswith(".py"):
                yield os.path.join(dirpath, n)


def test_the_package_never_evaluates_or_unpickles():
    hits = []
    for p in _sources():
        for k, line in enumerate(open(p, encoding="utf-8"), 1):
            code = line.split("#", 1)[0]
            if _CALLS.search(code):
                hits.append(f"{os.path.relpath(p, ROOT)}:{k}: {line.strip()}")
    assert not hits, hits


def test_the_only_unpickler_resolves_no_global():
    users = [p for p in _sources() if "Unpickler" in open(p, encoding="utf-8").read()]
    assert [os.path.relpath(p, _PACKAGE) for p in users] == [
        os.path.join("contrib", "pysyncobj", "vote.py")]
    from pyraftlog.contrib.pysyncobj import vote
    with pytest.raises(pickle.UnpicklingError):
        vote._VoteUnpickler(io.BytesIO(pickle.dumps(os.system))).load()


def _journal_with_raw_vote(path, raw, group_name="j"):
    from pyraftlog.contrib import pysyncobj as adapter
    g = adapter.group_id_for(group_name)
    with pyraftlog.open(path, segment_size=SEG) as log:
        b = WriteBatch()
        b.put(g, adapter.KEY_NAME, group_name.encode())
        b.put(g, adapter.KEY_VOTE, raw)
        log.write(b).wait()
    return g


class _Boom:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pysyncobj_votes_are_plain_strings(tmp_path):
    from pyraftlog.contrib import pysyncobj as adapter
    path = str(tmp_path / "log")
    with pyraftlog.open(path, segment_size=SEG) as log:
        j = adapter.PyraftlogJournal(log, "j")
        j.setCurrentTerm(3, "127.0.0.1:7001")
        with pytest.raises(TypeError, match="node id"):
            j.setCurrentTerm(4, 12)
        assert (j.getCurrentTerm(), j.getVotedForNodeId()) == (3, "127.0.0.1:7001")
        raw = log.get(adapter.group_id_for("j"), adapter.KEY_VOTE)
        assert raw == b"s127.0.0.1:7001"


@pytest.mark.parametrize("vote", ["127.0.0.1:7001", None, "ünï"])
def test_old_pickled_string_votes_are_still_read(tmp_path, vote):
    from pyraftlog.contrib import pysyncobj as adapter
    path = str(tmp_path / "log")
    _journal_with_raw_vote(path, b"p" + pickle.dumps(vote, protocol=2))
    with pyraftlog.open(path, segment_size=SEG) as log:
        assert adapter.PyraftlogJournal(log, "j").getVotedForNodeId() == vote


@pytest.mark.parametrize("what", ["code", "int", "garbage"])
def test_other_pickled_votes_are_refused_naming_the_group(tmp_path, what):
    from pyraftlog.contrib import pysyncobj as adapter
    marker = str(tmp_path / "pwned")
    raw = {"code": pickle.dumps(_Boom(marker), protocol=2), "int": pickle.dumps(12),
           "garbage": b"\x80\x02junk"}[what]
    path = str(tmp_path / "log")
    g = _journal_with_raw_vote(path, b"p" + raw)
    with pyraftlog.open(path, segment_size=SEG) as log:
        with pytest.raises(ValueError, match=f"group {g}: the stored PySyncObj vote"):
            adapter.PyraftlogJournal(log, "j")
    assert not os.path.exists(marker)
