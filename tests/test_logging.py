"""Logging (pyraftlog/logger.py): a quiet library that follows Python's
conventions.  Which event logs at which level, that every record names the
log directory and carries its figures as `pyraftlog_*` attributes, that
repeated events are summed up, and that nothing reaches stderr when the
application configured no logging."""
import errno
import logging
import os

import pytest

import pyraftlog
import pyraftlog.logger as L
from pyraftlog import CorruptionError, Entry, PoisonedError, WriteBatch
from pyraftlog import failpoint as fp

from tests.common import append, flip_byte, run_child, seg_files

SEG = 1 << 16


def records(caplog, level=None):
    return [r for r in caplog.records if r.name.startswith("pyraftlog")
            and (level is None or r.levelno == level)]


def _write_three(path):
    """Three batches, each durable before the next; returns the newest segment."""
    with pyraftlog.open(path, segment_size=SEG) as log:
        for i in (1, 2, 3):
            append(log, 1, i, 1, size=200).wait()
    return os.path.join(path, seg_files(path)[-1])


def _last_nonzero(path):
    raw = open(path, "rb").read()
    return len(raw.rstrip(b"\0")) - 1


def test_the_logger_has_a_null_handler_and_no_level():
    lg = logging.getLogger("pyraftlog")
    assert any(isinstance(h, logging.NullHandler) for h in lg.handlers)
    assert all(isinstance(h, logging.NullHandler) for h in lg.handlers)
    assert lg.level == logging.NOTSET
    assert lg.propagate


def test_recovery_summary_is_info_and_names_the_directory(log_dir, caplog):
    _write_three(str(log_dir))
    with caplog.at_level(logging.DEBUG, logger="pyraftlog"):
        pyraftlog.open(str(log_dir), segment_size=SEG).close()
    rec = [r for r in records(caplog) if "recovered" in r.getMessage()]
    assert len(rec) == 1 and rec[0].levelno == logging.INFO
    assert str(log_dir) in rec[0].getMessage()
    assert rec[0].pyraftlog_dir == str(log_dir)
    assert rec[0].pyraftlog_batches == 3 and rec[0].pyraftlog_bytes > 0
    assert not records(caplog, logging.WARNING)


def test_a_torn_tail_cut_is_a_warning(log_dir, caplog):
    seg = _write_three(str(log_dir))
    flip_byte(seg, _last_nonzero(seg))  # inside the last batch: never acknowledged by a later one
    with caplog.at_level(logging.DEBUG, logger="pyraftlog"):
        with pyraftlog.open(str(log_dir), segment_size=SEG) as log:
            assert log.last_index(1) == 2
            dropped = log.stats()["dropped_tail_bytes"]
    warn = records(caplog, logging.WARNING)
    assert len(warn) == 1 and "torn tail" in warn[0].getMessage()
    assert warn[0].pyraftlog_dir == str(log_dir) and str(log_dir) in warn[0].getMessage()
    assert warn[0].pyraftlog_file == seg and warn[0].pyraftlog_bytes == dropped > 0


def test_tolerate_any_skips_are_one_warning(log_dir, caplog):
    path = str(log_dir)
    with pyraftlog.open(path, segment_size=SEG) as log:
        for i in range(1, 11):
            append(log, i, 1, 1, size=200).wait()  # one group per batch
    seg = os.path.join(path, seg_files(path)[-1])
    raw = open(seg, "rb").read()
    # damage batches 3, 5 and 7: the 200-byte payloads are runs of byte 1
    runs = [k for k in range(1, len(raw) - 200) if raw[k:k + 200] == b"\x01" * 200
            and raw[k - 1] != 1]
    assert len(runs) == 10
    for k in (2, 4, 6):
        flip_byte(seg, runs[k] + 100)
    with pytest.raises(CorruptionError):
        pyraftlog.open(path, segment_size=SEG, recovery_mode="strict")
    with caplog.at_level(logging.DEBUG, logger="pyraftlog"):
        with pyraftlog.open(path, segment_size=SEG, recovery_mode="tolerate_any") as log:
            assert log.groups() == [1, 2, 4, 6, 8, 9, 10]
            skipped = log.stats()["skipped_batches"]
    warn = records(caplog, logging.WARNING)
    assert skipped == 3
    assert len(warn) == 1 and "skipped 3 invalid batches" in warn[0].getMessage()
    assert warn[0].pyraftlog_skipped_batches == 3 and warn[0].pyraftlog_dir == path
    assert warn[0].pyraftlog_file == seg


def _lagging(log, rounds, start=1):
    """Group 0 never compacts; groups 1-3 compact as they go."""
    for k in range(start, start + rounds):
        b = WriteBatch()
        for g in range(4):
            b.append(g, [Entry(k, 1, bytes([g]) * 500)])
            if g and k > 10:
                b.compact(g, k - 10)
        log.write(b)


def test_purges_are_summed_up_at_info(open_log, log_dir, caplog):
    log = open_log(segment_size=SEG, purge_threshold=1 << 40)  # no background purge
    with caplog.at_level(logging.DEBUG, logger="pyraftlog"):
        passes = 0
        for k in range(40):
            _lagging(log, 60, start=1 + 60 * k)
            if log.purge():
                passes += 1
        log.close()
    assert passes > 10
    purge = [r for r in records(caplog) if "purge rewrote" in r.getMessage()]
    # the first pass at once, the rest in one summary per minute and at close
    assert 1 <= len(purge) <= 3, [r.getMessage() for r in purge]
    assert all(r.levelno == logging.INFO for r in purge)
    assert sum(r.pyraftlog_passes for r in purge) == passes
    assert sum(r.pyraftlog_bytes for r in purge) == log._purger.rewritten_bytes
    assert all(r.pyraftlog_dir == str(log_dir) for r in purge)


def test_steady_state_logs_a_bounded_number_of_records(open_log, caplog):
    log = open_log(segment_size=SEG, purge_threshold=8 * SEG)  # the background purger runs
    with caplog.at_level(logging.DEBUG, logger="pyraftlog"):
        for k in range(60):
            _lagging(log, 50, start=1 + 50 * k)
        log.sync()
        s = log.stats()
        log.close()
    assert s["purge_runs"] > 3 and s["segments_recycled"] > 3
    # however many purge passes and recycled segments: a handful of lines
    assert len(records(caplog)) <= 4, [r.getMessage() for r in records(caplog)]


def test_poisoning_is_one_error(log_dir, caplog):
    fp.clear_all()
    with caplog.at_level(logging.DEBUG, logger="pyraftlog"):
        log = pyraftlog.open(str(log_dir), segment_size=SEG)
        try:
            with fp.armed("flusher::fdatasync", errno.EIO):
                t = append(log, 1, 1, 1)
                with pytest.raises(PoisonedError):
                    t.wait(15)
            for _ in range(3):
                with pytest.raises(PoisonedError):
                    append(log, 1, 2, 1)
            assert log.stats()["poisoned_errno"] == errno.EIO
        finally:
            log.close() if not log._closed() else None
    err = records(caplog, logging.ERROR)
    assert len(err) == 1 and "poisoned" in err[0].getMessage()
    assert err[0].pyraftlog_dir == str(log_dir) and err[0].pyraftlog_errno == errno.EIO
    assert str(log_dir) in err[0].getMessage()


def test_summary_sums_what_it_holds_back():
    s = L.Summary(interval=3600)
    assert s.add(n=1) == {"n": 1}   # the first event at once
    assert s.add(n=2) is None
    assert s.add(n=3) is None
    assert s.flush() == {"n": 5}
    assert s.flush() is None
    s0 = L.Summary(interval=0)
    assert s0.add(n=1) == {"n": 1} and s0.add(n=1) == {"n": 1}


_QUIET_CHILD = r"""
import os, sys
import pyraftlog
from pyraftlog import Entry, WriteBatch
path = sys.argv[1]
seg = 1 << 16
with pyraftlog.open(path, segment_size=seg, purge_threshold=8 * seg) as log:
    for k in range(1, 1500):
        b = WriteBatch()
        for g in range(4):
            b.append(g, [Entry(k, 1, bytes([g]) * 500)])
            if g and k > 10:
                b.compact(g, k - 10)
        log.write(b)
    log.purge()
    log.sync()
    assert log.stats()["purge_rewritten_bytes"] > 0
# a torn tail (a WARNING) must not reach stderr either
name = sorted(n for n in os.listdir(path) if n.endswith(".seg"))[-1]
with open(os.path.join(path, name), "r+b") as f:
    raw = f.read()
    k = len(raw.rstrip(b"\0")) - 1
    f.seek(k)
    f.write(bytes([raw[k] ^ 0xFF]))
with pyraftlog.open(path, segment_size=seg) as log:
    assert log.stats()["dropped_tail_bytes"] > 0
print("ok")
"""


def test_nothing_reaches_stderr_without_logging_configured(tmp_path):
    r = run_child(_QUIET_CHILD, tmp_path / "log", timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"ok\n"
    assert r.stderr == b""
