"""Bulk paths: WriteBatch.append_many (no Entry objects) and Engine.terms
(a numpy array of terms)."""
import numpy as np
import pytest

from pyraftlog import CompactedError, Entry, UnavailableError, WriteBatch


def test_append_many_equals_append(open_log, log_dir):
    log = open_log()
    terms = np.array([1, 1, 2, 3, 3, 3], dtype=np.uint64)
    datas = [b"a", bytearray(b"bb"), memoryview(b"ccc"), b"", b"e", b"f"]
    log.write(WriteBatch().append_many(1, 1, terms, datas, types=[0, 1, 2, 0, 255, 0])).wait()
    want = [Entry(1, 1, b"a"), Entry(2, 1, b"bb", 1), Entry(3, 2, b"ccc", 2), Entry(4, 3, b""),
            Entry(5, 3, b"e", 255), Entry(6, 3, b"f")]
    assert log.entries(1, 1, 7) == want
    # conflicting suffix and compacted prefix, as append does
    log.write(WriteBatch().compact(1, 2)).wait()
    log.write(WriteBatch().append_many(1, 1, [1, 1, 9], [b"x", b"y", b"z"])).wait()
    assert log.entries(1, 3, 4) == [Entry(3, 9, b"z")]
    assert log.last_index(1) == 3
    log.close()
    log = open_log()
    assert log.entries(1, 3, 4) == [Entry(3, 9, b"z")]


@pytest.mark.parametrize("args, exc", [
    ((1, 1, [1, 2], [b"a"]), ValueError),            # lengths differ
    ((1, 1, [1], [b"a"], [256]), ValueError),        # type out of range
    ((1, 1, [-1], [b"a"]), ValueError),              # negative term
    ((1, 1, [1.0], [b"a"]), TypeError),              # float term
    ((1, 1, [1], ["text"]), TypeError),              # str payload
    ((1, 1, [1], b"ab"), TypeError),                 # bytes instead of a sequence
    ((True, 1, [1], [b"a"]), TypeError),
    ((1, 2**64 - 1, [1, 1], [b"a", b"b"]), ValueError),
])
def test_append_many_rejects_bad_input(args, exc):
    with pytest.raises(exc):
        WriteBatch().append_many(*args)


def test_append_many_gap_raises_and_changes_nothing(open_log):
    log = open_log()
    with pytest.raises(ValueError):
        log.write(WriteBatch().append_many(1, 3, [1], [b"a"]))
    assert log.last_index(1) == 0 and log.groups() == []


def test_terms_matches_term(open_log):
    log = open_log()
    ts = [1, 1, 1, 4, 4, 7, 8, 8, 8, 8]
    log.write(WriteBatch().append_many(5, 1, ts, [b""] * len(ts))).wait()
    log.write(WriteBatch().compact(5, 2)).wait()
    got = log.terms(5, 3, 11)
    assert got.dtype == np.uint64
    assert got.tolist() == [log.term(5, i) for i in range(3, 11)] == ts[2:]
    assert log.terms(5, 4, 4).tolist() == []
    with pytest.raises(CompactedError):
        log.terms(5, 2, 4)
    with pytest.raises(UnavailableError):
        log.terms(5, 3, 12)
    with pytest.raises(ValueError):
        log.terms(5, 5, 4)
    assert log.terms(99, 1, 1).tolist() == []
