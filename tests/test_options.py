"""Options of pyraftlog.open whose documented effect (README "Options")
is checked against the directory and the calls, not the engine's word:
segment_size rounded up to the page size, max_free_segments ("emptied
segments kept for reuse; more are deleted"), progress during recovery."""
import os

import pytest

from pyraftlog import Entry, WriteBatch

from tests.common import append, free_files, seg_files, wait_until

PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("asked, got", [
    (4096, 4096), (4097, 8192), (3 * 4096 - 1, 3 * 4096), (65536, 65536), (65537, 65536 + 4096),
])
def test_segment_size_is_rounded_up_to_the_page_size(open_log, log_dir, asked, got):
    if PAGE != 4096:
        got = -(-asked // PAGE) * PAGE
    log = open_log(segment_size=asked)
    assert log.segment_size == got
    log.write(WriteBatch().append(1, [Entry(1, 1, b"x")])).wait()
    log.close()
    for name in seg_files(log_dir) + free_files(log_dir):
        assert os.path.getsize(os.path.join(log_dir, name)) == got, name
    # the size is in the segment header too (FORMAT.md: u64 at byte 32)
    with open(os.path.join(log_dir, seg_files(log_dir)[0]), "rb") as f:
        assert int.from_bytes(f.read(40)[32:40], "little") == got


def test_a_record_larger_than_a_segment_is_a_value_error(open_log):
    log = open_log(segment_size=4097)   # 8192 after rounding
    log.write(WriteBatch().append(1, [Entry(1, 1, b"x" * 6000)])).wait()  # fits the rounded size
    with pytest.raises(ValueError):
        log.write(WriteBatch().append(1, [Entry(2, 1, b"x" * 9000)]))
    assert log.last_index(1) == 1


def _turn_over(log, segments, seg):
    """Write about `segments` segments into group 1, then compact all but
    the last entry: every segment but the active one becomes empty."""
    per = seg // 400
    last = 0
    for _ in range(segments):
        append(log, 1, last + 1, per, size=300).wait()
        last += per
    log.write(WriteBatch().compact(1, last - 1)).wait()
    append(log, 1, last + 1, 1).wait()   # something durable after the compaction
    return last + 1


@pytest.mark.parametrize("max_free", [2, 6])
def test_max_free_segments_keeps_that_many_and_deletes_the_rest(open_log, log_dir, max_free):
    seg = 1 << 16
    log = open_log(segment_size=seg, prepare_ahead=2, max_free_segments=max_free)
    _turn_over(log, 12, seg)

    def settled():
        s = log.stats()
        return s["segments"] <= 2 and s["free_segments"] == len(free_files(log_dir))
    assert wait_until(settled)
    s = log.stats()
    free = free_files(log_dir)
    assert s["free_segments"] == len(free) == max_free   # kept up to the limit...
    assert s["segments_deleted"] > 0                     # ...and the rest deleted
    assert len(seg_files(log_dir)) == s["segments"]
    for name in free:
        assert os.path.getsize(os.path.join(log_dir, name)) == seg


def test_max_free_segments_applies_to_free_files_found_at_open(open_log, log_dir):
    seg = 1 << 16
    log = open_log(segment_size=seg, prepare_ahead=2, max_free_segments=6)
    _turn_over(log, 12, seg)
    assert wait_until(lambda: len(free_files(log_dir)) == 6)
    log.close()
    log = open_log(segment_size=seg, prepare_ahead=2, max_free_segments=3)
    assert len(free_files(log_dir)) == 3 and log.stats()["free_segments"] == 3


def test_progress_reports_recovery(open_log, log_dir):
    """progress(done_bytes, total_bytes) during recovery: done grows to
    total, and total is the size of the segment files read."""
    seg = 1 << 16
    log = open_log(segment_size=seg)
    for k in range(8):
        append(log, 1, 1 + 100 * k, 100, size=300).wait()
    log.close()
    n_segs = len(seg_files(log_dir))
    assert n_segs >= 4
    calls = []
    log = open_log(segment_size=seg, progress=lambda done, total: calls.append((done, total)))
    assert log.last_index(1) == 800
    assert len(calls) == n_segs
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and len(set(dones)) == len(dones)
    assert {t for _, t in calls} == {n_segs * seg}
    assert calls[-1][0] == calls[-1][1]


def test_progress_on_an_empty_log_is_not_an_error(open_log, log_dir):
    calls = []
    log = open_log(progress=lambda done, total: calls.append((done, total)))
    assert log.groups() == []
    assert all(d <= t for d, t in calls)
