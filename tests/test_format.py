"""The Python view of the on-disk format (pyraftlog/record.py) against the C
one (csrc/format.h), and against the bytes the C writer actually produces."""
import os

from pyraftlog import Entry, HardState, WriteBatch
from pyraftlog import record as R
from pyraftlog._native import ffi, lib
from pyraftlog.engine import crc32c


def test_constants_match_c():
    out = ffi.new("uint32_t[6]")
    lib.prl_format_constants(out)
    assert list(out) == [R.SEGMENT_HEADER_SIZE, R.BATCH_HEADER_SIZE, R.RECORD_HEADER_SIZE,
                         R.ALIGN, R.FORMAT_VERSION, max(R.NAMES)]
    assert R.SEGMENT_HEADER.size == R.SEGMENT_HEADER_SIZE
    assert R.BATCH_HEADER.size == R.BATCH_HEADER_SIZE
    assert R.RECORD_HEADER.size == R.RECORD_HEADER_SIZE


def test_segment_bytes_parse_with_python_structs(open_log, log_dir):
    log = open_log(segment_size=1 << 16)
    b = WriteBatch()
    b.append(5, [Entry(1, 2, b"hello", 1), Entry(2, 2, b"")])
    b.set_hard_state(5, HardState(2, 3, 1))
    log.write(b).wait()
    log.close()
    path = os.path.join(str(log_dir), "0000000000000001.seg")
    raw = open(path, "rb").read()
    assert len(raw) == 1 << 16

    magic, version, hsize, seq, first_lsn, seg_size, reserved, crc = R.SEGMENT_HEADER.unpack_from(raw)
    assert (magic, version, hsize, seq, first_lsn, seg_size) == (R.SEGMENT_MAGIC, 1, 64, 1, 1, 1 << 16)
    assert reserved == bytes(20)
    assert crc == crc32c(raw[:60])

    off = R.SEGMENT_HEADER_SIZE
    bcrc, blen, lsn, bseq, count, lag = R.BATCH_HEADER.unpack_from(raw, off)
    assert (lsn, bseq, count) == (1, 1, 3)
    assert blen % 8 == 0
    assert bcrc == lib.prl_crc32c(lib.prl_batch_seed_of(1), ffi.from_buffer(raw[off + 4:off + blen]), blen - 4)
    p = off + R.BATCH_HEADER_SIZE
    recs = []
    for _ in range(count):
        rtype, aux, res, ln, group, index, term = R.RECORD_HEADER.unpack_from(raw, p)
        assert res == 0
        payload = raw[p + 32:p + 32 + ln]
        assert raw[p + 32 + ln:p + R.record_size(ln)] == bytes(R.record_size(ln) - 32 - ln)
        recs.append((rtype, aux, group, index, term, payload))
        p += R.record_size(ln)
    assert p == off + blen
    assert recs[0] == (R.ENTRY, 1, 5, 1, 2, b"hello")
    assert recs[1] == (R.ENTRY, 0, 5, 2, 2, b"")
    assert recs[2][:5] == (R.HARD_STATE, 0, 5, 1, 2)
    assert R.decode_hard_state(2, 1, recs[2][5]) == HardState(2, 3, 1)
    # the log's end: an all-zero batch header
    assert raw[p:p + 32] == bytes(32)
