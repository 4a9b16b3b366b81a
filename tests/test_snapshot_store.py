"""Snapshot data lives in its own files (pyraftlog/snapshot_store.py)."""
import os

import pytest

from pyraftlog import ConfState, CorruptionError, Snapshot, SnapshotMeta, WriteBatch

from tests.common import append, run_child

CS = ConfState((1, 2, 3))


def snap_files(log_dir):
    d = os.path.join(log_dir, "snapshots")
    return sorted(n for n in os.listdir(d) if n.endswith(".snap"))


def apply(log, g, index, term, data):
    return log.write(WriteBatch().apply_snapshot(g, Snapshot(SnapshotMeta(index, term, CS), data)))


def test_data_is_stored_outside_the_log_and_read_back(open_log, log_dir):
    log = open_log()
    apply(log, 1, 10, 2, b"x" * 100000).wait()
    assert len(snap_files(log_dir)) == 1
    assert log.snapshot(1) == Snapshot(SnapshotMeta(10, 2, CS), b"x" * 100000)
    assert log.stats()["bytes_written"] < 1000  # only the metadata went into the log
    log.close()
    log = open_log()
    assert log.snapshot(1).data == b"x" * 100000


def test_empty_data_writes_no_file(open_log, log_dir):
    log = open_log()
    apply(log, 1, 10, 2, b"").wait()
    assert snap_files(log_dir) == []
    assert log.snapshot(1) == Snapshot(SnapshotMeta(10, 2, CS), b"")


def test_older_file_deleted_once_newer_record_is_durable(open_log, log_dir):
    log = open_log(sync=True)
    apply(log, 1, 10, 2, b"old").wait()
    old = snap_files(log_dir)
    t = apply(log, 1, 20, 2, b"new")
    t.wait()
    append(log, 2, 1, 1).wait()  # a later write reaps what became durable
    files = snap_files(log_dir)
    assert len(files) == 1 and files != old
    assert log.snapshot(1).data == b"new"


def test_remove_group_deletes_its_snapshot_file(open_log, log_dir):
    log = open_log()
    apply(log, 1, 10, 2, b"data").wait()
    log.write(WriteBatch().remove_group(1)).wait()
    log.close()
    assert snap_files(log_dir) == []


def test_missing_file_raises_corruption(open_log, log_dir):
    log = open_log()
    apply(log, 1, 10, 2, b"data").wait()
    os.unlink(os.path.join(log_dir, "snapshots", snap_files(log_dir)[0]))
    with pytest.raises(CorruptionError) as e:
        log.snapshot(1)
    assert e.value.reason == "snapshot file missing"
    assert log.first_index(1) == 11  # everything else still reads


@pytest.mark.parametrize("offset, reason", [
    (0, "bad snapshot magic"),
    (8, "snapshot header checksum mismatch"),
    (40, "snapshot data checksum mismatch"),
])
def test_corrupt_file_raises_corruption(open_log, log_dir, offset, reason):
    log = open_log()
    apply(log, 1, 10, 2, b"data" * 10).wait()
    path = os.path.join(log_dir, "snapshots", snap_files(log_dir)[0])
    raw = bytearray(open(path, "rb").read())
    raw[offset] ^= 0x40
    open(path, "wb").write(raw)
    with pytest.raises(CorruptionError) as e:
        log.snapshot(1)
    assert e.value.reason == reason and e.value.path == path


def test_truncated_file_raises_corruption(open_log, log_dir):
    log = open_log()
    apply(log, 1, 10, 2, b"data" * 10).wait()
    path = os.path.join(log_dir, "snapshots", snap_files(log_dir)[0])
    os.truncate(path, 50)
    with pytest.raises(CorruptionError, match="bad length"):
        log.snapshot(1)


def test_orphans_of_a_crash_are_removed_at_open(open_log, log_dir):
    # A crash after the file was written but before its record: the file is
    # an orphan; a leftover .tmp too.
    code = """
import sys, os, pyraftlog
from pyraftlog import Snapshot, SnapshotMeta, WriteBatch
log = pyraftlog.open(sys.argv[1], sync=False)
log.write(WriteBatch().apply_snapshot(1, Snapshot(SnapshotMeta(5, 1), b"kept"))).wait()
log._store.snapshots.write(1, 999 << 16, b"orphan")
open(os.path.join(sys.argv[1], "snapshots", "x.snap.tmp"), "wb").write(b"junk")
os._exit(0)
"""
    r = run_child(code, log_dir)
    assert r.returncode == 0, r.stderr.decode()
    assert len(snap_files(log_dir)) == 2
    log = open_log()
    assert len(snap_files(log_dir)) == 1
    assert log.snapshot(1).data == b"kept"
    assert not [n for n in os.listdir(os.path.join(log_dir, "snapshots")) if n.endswith(".tmp")]


def test_failed_snapshot_write_changes_nothing(open_log, log_dir):
    import errno
    from pyraftlog import failpoint
    log = open_log()
    apply(log, 1, 10, 2, b"one").wait()
    for point in failpoint.PY_POINTS:
        with failpoint.armed(point, errno.ENOSPC):
            with pytest.raises(OSError) as e:
                apply(log, 1, 20, 2, b"two")
            assert e.value.errno == errno.ENOSPC
        assert log.snapshot(1).data == b"one"
        assert log.first_index(1) == 11
        assert len(snap_files(log_dir)) == 1
