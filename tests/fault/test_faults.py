"""Injected I/O failures (pyraftlog.failpoint) and a real full disk.

Every fault must end in a clear error, never a hang (every wait here is
bounded) and never a lost acknowledged batch after reopen:

* a failed fdatasync — of a segment, or of the directory after a rotation
  renamed a prepared file into the log — poisons the engine (docs/API.md
  "Failure is sticky"): every pending ticket and every later write fails
  with PoisonedError carrying the errno; reads keep working; reopening
  recovers at least every acknowledged batch, as a prefix;
* a failed segment creation, rename or allocation at rotation, and a failed
  snapshot file write, make that write raise OSError with the errno and
  change nothing; the engine keeps working once the fault is gone;
* a failure while opening raises OSError and leaves a directory the next
  open recovers.

Rotations are forced with 8 KiB segments and 1000-byte entries.  The
engine prepares free segment files in a background thread; to make a
rotation create its segment itself (segment::create, ::fallocate,
::header_sync, dir::fsync on that path) the pool is first drained while
one preparation fails (the preparer then waits a second)."""

import asyncio
import errno
import os
import pathlib
import re
import subprocess
import threading
import time

import pytest

import pyraftlog
from pyraftlog import Entry, PoisonedError, Snapshot, SnapshotMeta
from pyraftlog import failpoint as fp
from pyraftlog._native import lib

from tests.common import bounded, run_child

SEG = 8192
ERRNOS = [errno.EIO, errno.ENOSPC]
WAIT = 15  # seconds: the bound on every wait

def arm(point, err, count=-1):
    fp.set(point, err, count)


@pytest.fixture(autouse=True)
def _clear_failpoints():
    fp.clear_all()
    yield
    fp.clear_all()


def data(i):
    return bytes([i % 251 + 1]) * 1000


def entry_batch(log, i, group=1):
    b = log.batch()
    b.append(group, [Entry(i, 1, data(i))])
    return b


class Writer:
    """Writes entry i of group 1 for i = 1, 2, ...; remembers what was
    acknowledged."""

    def __init__(self, log):
        self.log = log
        self.next = 1
        self.acked = 0

    def write(self):
        t = self.log.write(entry_batch(self.log, self.next))
        self.next += 1
        return t

    def write_wait(self):
        t = self.write()
        t.wait(timeout=WAIT)
        self.acked = self.next - 1
        return t

    def until_rotation(self, n=1):
        start = self.log.stats()["rotations"]
        for _ in range(200):
            if self.log.stats()["rotations"] >= start + n:
                return
            self.write_wait()
        raise AssertionError("no rotation")


def open_log(path, **kw):
    kw.setdefault("segment_size", SEG)
    return pyraftlog.open(str(path), **kw)


def check_reopen(path, acked, written, group=1):
    """Every mode recovers a prefix 1..k with acked <= k <= written, byte for
    byte; strict too (the failures above are not corruption)."""
    for mode in ("strict", "tolerate_tail"):
        with open_log(path, recovery_mode=mode) as log:
            k = log.last_index(group)
            assert acked <= k <= written, (mode, acked, k, written)
            assert [e.data for e in log.entries(group, 1, k + 1)] == [data(i) for i in
                                                                      range(1, k + 1)]


# ================================================== fdatasync: poisoning

@pytest.mark.parametrize("err", ERRNOS, ids=errno.errorcode.get)
def test_fdatasync_failure_poisons(tmp_path, err):
    log = open_log(tmp_path)
    w = Writer(log)
    for _ in range(5):
        w.write_wait()
    arm("flusher::fdatasync", err)
    t = w.write()                                  # visible before durable
    assert log.last_index(1) == 6
    with pytest.raises(PoisonedError) as ei:
        t.wait(timeout=WAIT)
    assert isinstance(ei.value, OSError) and ei.value.errno == err
    assert t.done() and isinstance(t.exception(), PoisonedError)
    # sticky: later writes and syncs fail, even once the disk is fine again
    fp.clear_all()
    with pytest.raises(PoisonedError) as ei:
        w.write()
    assert ei.value.errno == err
    with pytest.raises(PoisonedError):
        bounded(log.sync, what="sync")
    # reads keep working, including the batch that never became durable
    assert [e.data for e in log.entries(1, 1, 7)] == [data(i) for i in range(1, 7)]
    assert log.stats()["poisoned_errno"] == err
    bounded(log.close, what="close")
    check_reopen(tmp_path, acked=5, written=6)


@pytest.mark.parametrize("err", ERRNOS, ids=errno.errorcode.get)
def test_segment_write_failure_poisons(tmp_path, err):
    """A batch whose write to its segment fails is not published (a reader
    never sees it) and poisons the engine like a failed fdatasync."""
    log = open_log(tmp_path)
    w = Writer(log)
    for _ in range(5):
        w.write_wait()
    pending = w.write()  # written, maybe not yet durable
    arm("log::pwrite", err, count=1)
    with pytest.raises(PoisonedError) as ei:
        w.write()
    assert isinstance(ei.value, OSError) and ei.value.errno == err
    assert log.last_index(1) == 6                  # the failed batch is not visible
    try:  # the batch before it was durable already, or it fails now
        pending.wait(timeout=WAIT)
        acked = 6
    except PoisonedError:
        acked = 5
    fp.clear_all()                                 # sticky once the disk is fine again
    with pytest.raises(PoisonedError):
        w.write()
    assert [e.data for e in log.entries(1, 1, 7)] == [data(i) for i in range(1, 7)]
    assert log.stats()["poisoned_errno"] == err
    bounded(log.close, what="close")
    check_reopen(tmp_path, acked=acked, written=6)


def test_fdatasync_failure_fails_every_pending_ticket(tmp_path):
    """Many writers with tickets in flight, callbacks and awaiters: all
    complete (failed) within the bound, none is left pending."""
    log = open_log(tmp_path, segment_size=1 << 20, min_sync_interval=0.05)
    w = Writer(log)
    w.write_wait()
    arm("flusher::fdatasync", errno.EIO)
    tickets = [w.write() for _ in range(20)]
    called = []
    for t in tickets:
        t.add_done_callback(lambda tk: called.append(tk.lsn))

    async def await_one(t):
        try:
            await t
        except PoisonedError as exc:
            return exc.errno
        return 0

    async def main():
        return await asyncio.wait_for(asyncio.gather(*(await_one(t) for t in tickets[-3:])),
                                      WAIT)

    assert bounded(lambda: asyncio.run(main()), what="await") == [errno.EIO] * 3
    for t in tickets:
        with pytest.raises(PoisonedError):
            t.wait(timeout=WAIT)
    deadline = time.monotonic() + WAIT
    while len(called) < len(tickets) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(called) == sorted(t.lsn for t in tickets)
    bounded(log.close, what="close")
    check_reopen(tmp_path, acked=1, written=21)


def test_fdatasync_failure_with_threads_waiting(tmp_path):
    log = open_log(tmp_path, segment_size=1 << 20)
    results = []
    lock = threading.Lock()
    counter = iter(range(1, 10**6))

    def worker(g):
        i = 0
        while True:
            i += 1
            b = log.batch()
            b.append(g, [Entry(i, 1, data(i))])
            try:
                t = log.write(b)
                t.wait(timeout=WAIT)
            except PoisonedError as exc:
                with lock:
                    results.append((g, i - 1, exc.errno))
                return
            next(counter)

    threads = [threading.Thread(target=worker, args=(g,), daemon=True) for g in range(10, 18)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    arm("flusher::fdatasync", errno.EIO)
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive(), "a writer hung after the engine was poisoned"
    assert sorted(r[0] for r in results) == list(range(10, 18))
    assert all(r[2] == errno.EIO for r in results)
    bounded(log.close, what="close")
    with open_log(tmp_path) as log:
        for g, acked, _ in results:
            k = log.last_index(g)
            assert k >= acked
            assert [e.data for e in log.entries(g, 1, k + 1)] == [data(i) for i in range(1, k + 1)]


@pytest.mark.parametrize("err", ERRNOS, ids=errno.errorcode.get)
def test_directory_fsync_failure_after_rotation_poisons(tmp_path, err):
    """Rotation renames a prepared file into the log; the flusher fsyncs the
    directory before acknowledging anything in it.  A failure there is a
    failed sync: poison."""
    log = open_log(tmp_path)
    w = Writer(log)
    w.write_wait()
    _wait_free(log)
    arm("dir::fsync", err)
    with pytest.raises(PoisonedError) as ei:
        w.until_rotation()
        w.write_wait()
    assert ei.value.errno == err
    fp.clear_all()
    with pytest.raises(PoisonedError):
        w.write()
    assert log.entries(1, 1, 2)[0].data == data(1)
    bounded(log.close, what="close")
    check_reopen(tmp_path, acked=w.acked, written=w.next - 1)


# =============================================== rotation: a clear error

def _wait_free(log):
    deadline = time.monotonic() + WAIT
    while log.stats()["free_segments"] < 1:
        assert time.monotonic() < deadline, "no free segment was prepared"
        time.sleep(0.01)


def _drain_pool(log, w):
    """Leave the engine with no prepared file: a rotation takes the file the
    preparer had, and the preparer's attempts to make the next one fail; it
    then sleeps (up to a second, until something signals it) before trying
    again, and the next rotation creates its segment itself."""
    _wait_free(log)
    arm("segment::create", errno.EIO)
    w.until_rotation()
    deadline = time.monotonic() + WAIT
    while log.stats()["free_segments"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.05)  # the preparer has failed and sleeps now
    fp.set("segment::create", 0)


def _rotation_fails(tmp_path, point, err):
    """Arm `point`, write until a write fails; returns (log, writer, error,
    last index before).  sync=False keeps the writes fast: the rotation that
    stalls must come while the preparer sleeps (up to a second)."""
    log = open_log(tmp_path, prepare_ahead=1, sync=False)
    w = Writer(log)
    w.write_wait()
    if point != "segment::rename":
        _drain_pool(log, w)
    arm(point, err)
    before = log.last_index(1)
    for _ in range(50):
        before = log.last_index(1)
        try:
            w.write_wait()
        except OSError as exc:
            return log, w, exc, before
    raise AssertionError(f"{point} armed, but no write failed")


def test_zero_fill_failure_leaves_no_free_file_and_writing_goes_on(tmp_path):
    """The preparer writes each new free file with zeros; when that fails,
    the half-made file is removed and rotations create their segments
    themselves until preparation works again."""
    log = open_log(tmp_path, prepare_ahead=1, sync=False)
    w = Writer(log)
    w.write_wait()
    _wait_free(log)
    arm("segment::zero_fill", errno.EIO)
    w.until_rotation(3)
    assert log.stats()["prepare_stalls"] >= 1
    assert log.stats()["free_segments"] == 0
    # (a file the preparer is making right now is removed once its zero fill fails)
    deadline = time.monotonic() + WAIT
    while [n for n in os.listdir(tmp_path) if n.endswith(".free")]:
        assert time.monotonic() < deadline, "a half-made free file was left"
        time.sleep(0.01)
    fp.clear_all()
    _wait_free(log)
    w.until_rotation()
    w.write_wait()
    bounded(log.close, what="close")
    check_reopen(tmp_path, acked=w.acked, written=w.next - 1)


ROTATION_POINTS = ["segment::create", "segment::fallocate", "segment::header_sync",
                   "dir::fsync", "segment::rename", "segment::mmap"]


@pytest.mark.parametrize("err", ERRNOS, ids=errno.errorcode.get)
@pytest.mark.parametrize("point", ROTATION_POINTS)
def test_rotation_failure_is_a_clear_error(tmp_path, point, err):
    log, w, exc, before = _rotation_fails(tmp_path, point, err)
    assert exc.errno == err, exc
    if point != "segment::rename":
        assert log.stats()["prepare_stalls"] >= 1   # the writer created the segment itself
    # nothing changed: the batch is not visible, no half-made segment file
    assert log.last_index(1) == before == w.next - 1
    names = os.listdir(tmp_path)
    segs = sorted(n for n in names if n.endswith(".seg"))
    assert len(segs) == log.stats()["segments"], names
    # the fault gone, writing goes on (and rotates)
    fp.clear_all()
    w.until_rotation()
    w.write_wait()
    bounded(log.close, what="close")
    check_reopen(tmp_path, acked=w.acked, written=w.next - 1)


@pytest.mark.parametrize("point", ROTATION_POINTS)
def test_rotation_failure_does_not_poison(tmp_path, point):
    """A failed rotation is not a failed sync: write() raises a plain
    OSError (PoisonedError promises that no later write succeeds), and the
    next write, once the fault is gone, succeeds.  (Until commit 8c57f32
    this was a PoisonedError.)"""
    log, w, exc, _ = _rotation_fails(tmp_path, point, errno.EIO)
    assert not isinstance(exc, PoisonedError), exc
    assert log.stats()["poisoned_errno"] == 0
    fp.clear_all()
    w.write_wait()
    bounded(log.close, what="close")


# ====================================================== opening the log

OPEN_POINTS = ["segment::create", "segment::fallocate", "segment::header_sync", "dir::fsync"]


@pytest.mark.parametrize("point", OPEN_POINTS)
def test_open_of_empty_directory_fails_cleanly(tmp_path, point):
    arm(point, errno.ENOSPC)
    with pytest.raises(OSError) as ei:
        open_log(tmp_path)
    assert ei.value.errno == errno.ENOSPC
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".seg")]
    fp.clear_all()
    with open_log(tmp_path) as log:     # not locked, nothing half-made in the way
        Writer(log).write_wait()
    check_reopen(tmp_path, acked=1, written=1)


@pytest.mark.parametrize("point", OPEN_POINTS)
def test_open_that_cuts_a_torn_tail_fails_cleanly(tmp_path, point):
    """After a torn tail is cut, writing starts in a new segment; if that
    cannot be created the open fails and the next open does it again."""
    with open_log(tmp_path) as log:
        w = Writer(log)
        for _ in range(4):
            w.write_wait()
    seg = sorted(n for n in os.listdir(tmp_path) if n.endswith(".seg"))[-1]
    p = os.path.join(tmp_path, seg)
    raw = bytearray(open(p, "rb").read())
    off = 64
    lens = []
    while int.from_bytes(raw[off + 4:off + 8], "little"):
        lens.append((off, int.from_bytes(raw[off + 4:off + 8], "little")))
        off += lens[-1][1]
    last_off, last_len = lens[-1]
    raw[last_off + last_len - 1] ^= 0x40           # tear the last batch
    open(p, "wb").write(raw)
    arm(point, errno.EIO)
    with pytest.raises(OSError) as ei:
        open_log(tmp_path)
    assert ei.value.errno == errno.EIO
    fp.clear_all()
    with open_log(tmp_path) as log:
        assert log.last_index(1) == 3
        assert log.stats()["dropped_tail_bytes"] > 0
    check_reopen(tmp_path, acked=3, written=3)


# ============================================ recycling emptied segments

# with max_free_segments=1 the pool is full (its one prepared file) when a
# segment empties, so the segment is deleted; with more room it is renamed
RECYCLE_POINTS = [("ring::rename", 4), ("ring::unlink", 1), ("ring::dir_fsync", 1),
                  ("ring::dir_fsync", 4)]


def _empty_segments(log, w, rotations=3):
    """Writes until `rotations` segments are full, then compacts everything
    written: those segments are all empty at once, so one is recycled into
    the pool and (with max_free_segments=1) the next deleted."""
    w.until_rotation(rotations)
    b = log.batch()
    b.compact(1, w.next - 1)
    log.write(b).wait(timeout=WAIT)
    w.write_wait()


@pytest.mark.parametrize("point,max_free", RECYCLE_POINTS)
def test_recycle_failure_is_counted_logged_and_retried(tmp_path, point, max_free, caplog):
    """A failed rename, unlink or directory sync while recycling is neither
    silent nor fatal: counted in stats(), logged at WARNING by the next
    write, retried a second later; writes and tickets go on, and nothing
    acknowledged is lost."""
    log = open_log(tmp_path, prepare_ahead=1, max_free_segments=max_free)
    w = Writer(log)
    _empty_segments(log, w)
    assert bounded(lambda: _wait_for(
        lambda: log.stats()["segments_recycled"] + log.stats()["segments_deleted"] > 0))
    arm(point, errno.EIO)
    _empty_segments(log, w)
    assert bounded(lambda: _wait_for(lambda: log.stats()["recycle_errors"] > 0))
    with caplog.at_level("WARNING", logger="pyraftlog"):
        w.write_wait()  # not poisoned: the flusher syncs the directory itself
    assert any("recycling an emptied segment failed" in r.getMessage() and
               r.levelname == "WARNING" for r in caplog.records), caplog.text
    s = log.stats()
    assert s["poisoned_errno"] == 0 and s["recycle_errors"] >= 1
    if point != "ring::dir_fsync":  # the file was not retired: still in the log
        assert s["segments"] > 2
    fp.clear_all()
    # retried: every emptied segment leaves the log (a failed directory sync
    # is retried by the flusher, which syncs the directory before it
    # acknowledges the next batch)
    assert bounded(lambda: _wait_for(lambda: log.stats()["segments"] <= 2))
    bounded(log.close, what="close")
    with open_log(tmp_path, recovery_mode="strict") as log:
        assert log.last_index(1) == w.acked
        assert log.entries(1, w.acked, w.acked + 1)[0].data == data(w.acked)


def _wait_for(pred, timeout=WAIT - 1):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def test_start_sync_failure_fails_open_cleanly(tmp_path):
    """Opening syncs the newest recovered segment (a kill may have left
    batches only in the page cache) before anything new is acknowledged: if
    that fdatasync fails, the open fails with the errno, and the next open
    recovers everything."""
    with open_log(tmp_path) as log:
        w = Writer(log)
        for _ in range(5):
            w.write_wait()
    arm("log::start_sync", errno.EIO)
    with pytest.raises(OSError) as ei:
        open_log(tmp_path)
    assert ei.value.errno == errno.EIO
    fp.clear_all()
    check_reopen(tmp_path, acked=5, written=5)


RECOVERY_POINTS = ["segment::open", "segment::mmap"]


def _files(path):
    return {n: open(os.path.join(path, n), "rb").read()
            for n in sorted(os.listdir(path)) if n.endswith((".seg", ".free"))}


@pytest.mark.parametrize("err", ERRNOS, ids=errno.errorcode.get)
@pytest.mark.parametrize("point", RECOVERY_POINTS)
def test_recovery_open_or_mmap_failure_is_a_clear_error(tmp_path, point, err):
    """Opening or mapping an existing segment fails during recovery: the open
    raises OSError with the errno, naming the segment file; nothing in the
    directory changed; the next open recovers everything."""
    with open_log(tmp_path) as log:
        w = Writer(log)
        w.until_rotation(3)
    before = _files(tmp_path)
    assert sum(n.endswith(".seg") for n in before) >= 3
    for mode in ("strict", "tolerate_tail", "tolerate_any"):
        arm(point, err)
        with pytest.raises(OSError) as ei:
            bounded(lambda: open_log(tmp_path, recovery_mode=mode), what="open")
        fp.clear_all()
        assert ei.value.errno == err and not isinstance(ei.value, PoisonedError)
        assert re.search(r"[0-9a-f]{16}\.seg", str(ei.value)), str(ei.value)
        assert _files(tmp_path) == before
    check_reopen(tmp_path, acked=w.acked, written=w.acked)


# ===================================================== snapshot files

SNAP_POINTS = ["snapshot::write", "snapshot::fsync", "snapshot::rename", "snapshot::dir_fsync"]


@pytest.mark.parametrize("err", ERRNOS, ids=errno.errorcode.get)
@pytest.mark.parametrize("point", SNAP_POINTS)
def test_snapshot_store_failure_is_a_clear_error(tmp_path, point, err):
    log = open_log(tmp_path, segment_size=1 << 20)
    w = Writer(log)
    for _ in range(3):
        w.write_wait()
    old = Snapshot(SnapshotMeta(2, 1), b"old snapshot")
    b = log.batch()
    b.apply_snapshot(7, old)
    log.write(b).wait(timeout=WAIT)
    snapdir = os.path.join(tmp_path, "snapshots")
    files_before = sorted(os.listdir(snapdir))

    arm(point, err)
    b = log.batch()
    b.append(1, [Entry(4, 1, data(4))])
    b.put(3, b"k", b"v")
    b.apply_snapshot(7, Snapshot(SnapshotMeta(9, 2), b"new snapshot" * 100))
    with pytest.raises(OSError) as ei:
        log.write(b)
    assert ei.value.errno == err and not isinstance(ei.value, PoisonedError)
    fp.clear_all()
    # nothing changed, in memory or on disk
    assert log.last_index(1) == 3 and log.get(3, b"k") is None
    assert log.snapshot(7) == old
    assert sorted(os.listdir(snapdir)) == files_before, point
    # not poisoned: the same batch goes through now
    log.write(b).wait(timeout=WAIT)
    assert log.snapshot(7).data == b"new snapshot" * 100
    bounded(log.close, what="close")
    with open_log(tmp_path, recovery_mode="strict") as log:
        assert log.snapshot(7).data == b"new snapshot" * 100
        assert log.last_index(1) == 4 and log.get(3, b"k") == b"v"
    assert len(os.listdir(snapdir)) == 1   # the superseded file is gone


CSRC = pathlib.Path(__file__).resolve().parents[2] / "csrc"
FAILPOINT_CALL = re.compile(r'(?:prl_failpoint|FAIL_OR)\(\s*"([^"]+)"')


def test_failpoint_table_matches_the_failpoints_in_csrc():
    """The one table of names (csrc/failpoint.c) is exactly the set of places
    the C code checks: a name armed but never checked would be a test that
    silently tests nothing."""
    used = set()
    for f in CSRC.glob("*.c"):
        if f.name != "failpoint.c":
            used |= set(FAILPOINT_CALL.findall(f.read_text()))
    assert used, "no failpoint call found in csrc/: the pattern is stale"
    assert set(fp.C_POINTS) == used
    assert len(fp.C_POINTS) == len(set(fp.C_POINTS))


def test_failpoint_module_knows_every_c_failpoint():
    """Every C failpoint can be armed from Python (segment::rename was
    missing from failpoint.C_POINTS until commit 8c57f32)."""
    for point in ROTATION_POINTS + ["flusher::fdatasync"]:
        fp.set(point, errno.EIO, 1)
        fp.set(point, 0)


@pytest.mark.parametrize("name", ["flusher::fdatasyncx", "flusher::", "", "Dir::fsync",
                                  "segment::rename ", "nope"])
def test_unknown_failpoint_names_are_rejected(name):
    """The C side rejects a name it does not check (before, any name was
    accepted and armed nothing)."""
    assert lib.prl_failpoint_set(name.encode(), errno.EIO, 1) == lib.PRL_E_BAD_ARGUMENT
    with pytest.raises(ValueError, match="unknown failpoint"):
        fp.set(name, errno.EIO)
    with pytest.raises(ValueError, match="unknown failpoint"):
        with fp.armed(name, errno.EIO):
            pass


# ========================================================= a full disk

FULL_DISK_CHILD = r"""
import errno, json, os, sys
import pyraftlog
from pyraftlog import Entry
path, filler = sys.argv[1], sys.argv[2]
SEG = 256 << 10
out = {"acked": 0, "errors": []}
log = pyraftlog.open(path, segment_size=SEG, prepare_ahead=1)
i = 0
def write(i):
    b = log.batch()
    b.append(1, [Entry(i, 1, bytes([i % 251 + 1]) * 3000)])
    log.write(b).wait(timeout=15)
# fill the disk: everything but ~100 KiB goes to a filler file
with open(filler, "wb") as f:
    try:
        while True:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
os.truncate(filler, os.path.getsize(filler) - (100 << 10))
# write until the disk is full: rotations need new segment files
for _ in range(2000):
    try:
        write(i + 1)
        i += 1
        out["acked"] = i
    except OSError as exc:
        out["errors"].append([type(exc).__name__, exc.errno])
        if len(out["errors"]) >= 3:
            break
# a snapshot file on the full disk
try:
    b = log.batch()
    b.apply_snapshot(5, pyraftlog.Snapshot(pyraftlog.SnapshotMeta(1, 1), b"s" * (400 << 10)))
    log.write(b)
    out["snapshot"] = None
except OSError as exc:
    out["snapshot"] = [type(exc).__name__, exc.errno]
out["last_before_free"] = log.last_index(1)
# space comes back: the engine goes on (the preparer retries every second)
os.unlink(filler)
import time
deadline = time.monotonic() + 10
while True:
    try:
        write(i + 1)
        i += 1
        out["acked"] = i
        break
    except OSError as exc:
        if time.monotonic() > deadline:
            out["after_free"] = [type(exc).__name__, exc.errno]
            break
        time.sleep(0.2)
out["poisoned"] = log.stats()["poisoned_errno"]
log.close()
print(json.dumps(out))
"""


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode:
        pytest.skip(f"cannot mount a 2 MiB tmpfs (needs root / CAP_SYS_ADMIN): "
                    f"{p.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_full_disk_raises_enospc_without_sigbus(small_tmpfs):
    """A real ENOSPC: a 2 MiB tmpfs, filled up by another file.  Segment
    files are allocated in full before they are mapped, so the writer never
    stores into a hole (SIGBUS); preparing a segment fails with ENOSPC and
    the write that needs it raises a clear OSError.  Runs in a child: a
    SIGBUS would kill it, not the test run."""
    import json
    path = small_tmpfs / "log"
    p = run_child(FULL_DISK_CHILD, path, small_tmpfs / "filler", timeout=120)
    assert p.returncode == 0, f"child died (rc={p.returncode}): {p.stderr.decode()[-3000:]}"
    out = json.loads(p.stdout.decode().strip().splitlines()[-1])
    assert out["errors"], out
    assert all(e[1] == errno.ENOSPC for e in out["errors"]), out
    assert out["snapshot"] is not None and out["snapshot"][1] == errno.ENOSPC, out
    assert "after_free" not in out, out
    assert out["poisoned"] == 0, out
    with pyraftlog.open(str(path), segment_size=256 << 10, recovery_mode="strict") as log:
        k = log.last_index(1)
        assert k == out["acked"]
        assert [e.data for e in log.entries(1, 1, k + 1)] == \
            [bytes([i % 251 + 1]) * 3000 for i in range(1, k + 1)]
        assert log.snapshot(5).meta.index == 0
