"""The ring of segment files: prepared free files, rotation into them, and
recycling of emptied segments (csrc/ring.c)."""
import os

from pyraftlog import Entry, Snapshot, SnapshotMeta, WriteBatch

from tests.common import append, free_files, run_child, seg_files, state, wait_until

SEG = 1 << 16


def test_free_segments_are_prepared_ahead(open_log, log_dir):
    log = open_log(segment_size=SEG, prepare_ahead=3)
    assert wait_until(lambda: log.stats()["free_segments"] == 3)
    assert len(free_files(log_dir)) == 3
    for f in free_files(log_dir):
        assert os.path.getsize(os.path.join(log_dir, f)) == SEG
        assert os.stat(os.path.join(log_dir, f)).st_blocks * 512 >= SEG  # allocated, not sparse


def test_past_the_purge_threshold_one_file_is_kept_ready(open_log, log_dir):
    """Once disk use is a segment past purge_threshold, the preparer keeps
    one free file ready instead of prepare_ahead (the purge is about to free
    segments; more would only add to disk use), and rotation still never
    has to create one itself."""
    log = open_log(segment_size=SEG, prepare_ahead=3, purge_threshold=6 * SEG)
    assert wait_until(lambda: log.stats()["free_segments"] == 3)
    # The background purge would rewrite the group and recycle its old
    # segments into the pool (up to max_free_segments): held off here, so
    # the pool shows the preparer alone.
    with log._purger._mu:
        for k in range(12):  # one group, never compacted: nothing to free
            append(log, 1, 1 + k * 100, 100, size=200).wait()
            # the preparer refills in the background: a loaded machine must
            # not let this writer outrun it (that would be a stall)
            assert wait_until(lambda: log.stats()["free_segments"] >= 1)
        assert wait_until(lambda: log.stats()["free_segments"] == 1)
        s = log.stats()
    assert s["disk_bytes"] > 6 * SEG  # past the threshold
    assert s["free_segments"] == 1 and s["prepare_stalls"] == 0
    assert len(free_files(log_dir)) == 1


def test_rotation_uses_prepared_files(open_log, log_dir):
    log = open_log(segment_size=SEG)
    assert wait_until(lambda: log.stats()["free_segments"] == 2)
    for k in range(10):
        append(log, 1, 1 + k * 100, 100, size=200).wait()
        wait_until(lambda: log.stats()["free_segments"] >= 1)
    s = log.stats()
    assert s["rotations"] >= 3
    assert s["prepare_stalls"] == 0
    assert s["segments"] == len(seg_files(log_dir))


def test_emptied_segments_are_recycled_and_reused(open_log, log_dir):
    log = open_log(segment_size=SEG)
    last = 0
    for k in range(40):
        append(log, 1, last + 1, 50, size=200, compact_to=last or None).wait()
        last += 50
    assert wait_until(lambda: log.stats()["segments_recycled"] > 0)
    # recycling runs on the preparer thread: wait for it to catch up
    assert wait_until(lambda: log.stats()["segments"] <= 3)  # only what is live stays
    s = log.stats()
    assert s["segments_reused"] > 0
    assert s["disk_bytes"] <= (s["segments"] + 4) * SEG
    before = state(log)
    log.close()
    log = open_log(segment_size=SEG)
    assert state(log) == before


def test_stale_batches_of_a_recycled_file_never_replay(open_log, log_dir):
    # Fill segments, compact everything so they are recycled, then write a
    # short new tail into a reused file whose old bytes are valid batches of
    # its previous life, and stop without close (a crash).
    code = """
import sys, pyraftlog
from pyraftlog import Entry, WriteBatch
log = pyraftlog.open(sys.argv[1], segment_size=65536, sync=True, prepare_ahead=1)
i = 1
while log.stats()["segments_reused"] < 2:
    b = WriteBatch(); b.append(1, [Entry(j, 1, b"old" * 60) for j in range(i, i + 20)])
    if i > 1: b.compact(1, i - 1)
    log.write(b).wait(); i += 20
    import time; time.sleep(0.001)
b = WriteBatch(); b.append(2, [Entry(1, 7, b"new tail")]); log.write(b).wait()
print(i - 1, flush=True)
import os; os._exit(0)
"""
    r = run_child(code, log_dir)
    assert r.returncode == 0, r.stderr.decode()
    last = int(r.stdout.split()[0])
    log = open_log(segment_size=SEG)
    assert log.entries(2, 1, 2) == [Entry(1, 7, b"new tail")]
    assert log.last_index(1) == last
    assert log.first_index(1) == last - 19
    assert log.groups() == [1, 2]


def test_free_files_are_adopted_after_reopen(open_log, log_dir):
    log = open_log(segment_size=SEG)
    assert wait_until(lambda: log.stats()["free_segments"] == 2)
    log.close()
    names = free_files(log_dir)
    assert len(names) == 2
    log = open_log(segment_size=SEG)
    assert wait_until(lambda: log.stats()["free_segments"] == 2)
    # the two files were adopted as they were: none created, none replaced.
    # (Given half a second to go wrong; a correct preparer never creates one,
    # a slow machine can only hide a bug here, not fail a correct engine.)
    assert not wait_until(lambda: log.stats()["segments_created"] > 0, timeout=0.5)
    assert log.stats()["free_segments"] == 2
    log.close()
    assert free_files(log_dir) == names


def test_free_files_of_another_size_are_deleted(open_log, log_dir):
    log = open_log(segment_size=SEG)
    assert wait_until(lambda: log.stats()["free_segments"] == 2)
    log.close()
    log = open_log(segment_size=2 * SEG)
    assert wait_until(lambda: log.stats()["free_segments"] == 2)
    for f in free_files(log_dir):
        assert os.path.getsize(os.path.join(log_dir, f)) == 2 * SEG


def test_remove_group_frees_its_segments(open_log, log_dir):
    log = open_log(segment_size=SEG)
    for k in range(10):
        append(log, 9, 1 + 100 * k, 100, size=300).wait()
    b = WriteBatch().apply_snapshot(9, Snapshot(SnapshotMeta(1000, 1), b"s" * 1000))
    log.write(b).wait()
    for k in range(2):
        append(log, 9, 1001 + 100 * k, 100, size=300).wait()
    assert log.stats()["live_bytes"] > 2 * 100 * 300  # the group holds entries after its snapshot
    log.write(WriteBatch().remove_group(9)).wait()
    append(log, 3, 1, 1).wait()  # something live at the head
    assert wait_until(lambda: log.stats()["segments"] <= 2)
    s = log.stats()
    assert s["live_bytes"] < 1000
    assert log.groups() == [3]
    assert os.listdir(os.path.join(log_dir, "snapshots")) == []


def test_live_bytes_follow_compaction(open_log):
    log = open_log(segment_size=SEG)
    append(log, 1, 1, 100, size=100).wait()
    full = log.stats()["live_bytes"]
    assert full >= 100 * (32 + 104)
    log.write(WriteBatch().compact(1, 50)).wait()
    half = log.stats()["live_bytes"]
    assert full - half >= 50 * (32 + 104) - 64
    log.close()
    log = open_log(segment_size=SEG)
    assert log.stats()["live_bytes"] == half
