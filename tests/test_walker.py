"""The walker's rules (pyraftlog/walker.py) on their own: segment bytes made
by a real engine, then damaged by hand, and what `classify` and `unfinished`
call each break — the one definition recovery's modes and the tools' policies
act on (their policies are tested through them in tests/crash and
tests/test_cli.py)."""
import os
import struct

import pytest

import pyraftlog
from pyraftlog import Entry, WriteBatch
from pyraftlog import record as R
from pyraftlog import walker as W
from pyraftlog._native import ffi, lib
from pyraftlog.recovery import Scanner

SEG = 1 << 16


def make_log(path, batches=6, acknowledged=True):
    """One segment holding `batches` batches of one entry each, each durable
    before the next was written (so each later batch's watermark covers the
    earlier ones); without `acknowledged`, the watermarks are rewritten to
    say that none was."""
    with pyraftlog.open(str(path), segment_size=SEG) as log:
        for i in range(1, batches + 1):
            log.write(WriteBatch().append(1, [Entry(i, 1, bytes([i]) * 100)])).wait()
    seq = W.list_segments(str(path))[-1]
    with open(os.path.join(path, W.segment_name(seq)), "rb") as f:
        buf = bytearray(f.read())
    if not acknowledged:
        unacknowledge(buf, seq)
    return seq, buf


def unacknowledge(buf, seq):
    """Rewrite every batch's sync_lag so that no batch claims an earlier one
    was durable (as if the disk never finished a sync), checksums fixed."""
    for off, lsn, ln in batch_offsets(buf, seq):
        struct.pack_into("<I", buf, off + 28, lsn)  # watermark lsn - lag = 0
        seed = (seq ^ (seq >> 32)) & 0xFFFFFFFF ^ 0x9E3779B9  # format.h: prl_batch_seed
        crc = lib.prl_crc32c(seed, ffi.from_buffer(bytes(buf[off + 4:off + ln])), ln - 4)
        struct.pack_into("<I", buf, off, crc)


def batch_offsets(buf, seq):
    out, off = [], R.SEGMENT_HEADER_SIZE
    while True:
        crc, ln, lsn, bseq, count, lag = R.BATCH_HEADER.unpack_from(buf, off)
        if ln == 0 or bseq != seq:
            return out
        out.append((off, lsn, ln))
        off += ln


def walk_to_break(buf, seq, newest=True, next_first=None, chain_on_clean=False):
    base = ffi.from_buffer("uint8_t[]", buf)
    first = ffi.new("uint64_t *")
    assert lib.prl_scan_header(base, len(buf), seq, first) == 0
    sc, off, lsn = Scanner(max_batches=64, max_records=64), R.SEGMENT_HEADER_SIZE, int(first[0])
    while True:
        r = sc.scan(base, len(buf), seq, off, lsn)
        off, lsn = int(r.next_offset), int(r.next_lsn)
        if r.reason != lib.PRL_R_NONE:
            return W.classify(base, len(buf), seq, off, lsn, int(r.reason), int(r.bad_len),
                              newest, next_first, chain_on_clean)


def test_a_clean_end_is_the_end(tmp_path):
    seq, buf = make_log(tmp_path)
    b = walk_to_break(buf, seq)
    assert b.kind == W.END and b.clean and not b.following and b.lsn == 7


def test_damage_nothing_acknowledged_after_is_a_torn_tail(tmp_path):
    seq, buf = make_log(tmp_path)
    off, lsn, ln = batch_offsets(buf, seq)[-1]
    buf[off + ln - 1] ^= 0xFF
    b = walk_to_break(buf, seq)
    assert (b.kind, b.offset, b.lsn) == (W.TORN, off, lsn) and not b.clean
    assert "never acknowledged" in b.text() and b.span() >= ln - R.ALIGN


def test_damage_a_later_batch_acknowledges_is_corruption(tmp_path):
    seq, buf = make_log(tmp_path)
    off, lsn, ln = batch_offsets(buf, seq)[2]
    buf[off + ln - 1] ^= 0xFF
    b = walk_to_break(buf, seq)
    assert (b.kind, b.offset, b.lsn) == (W.ACKED, off, lsn) and W.acknowledged(b)
    assert [f.lsn for f in b.following] == [lsn + 1, lsn + 2, lsn + 3]
    assert "acknowledged" in b.text()


def test_damage_only_unacknowledged_batches_follow_is_torn(tmp_path):
    seq, buf = make_log(tmp_path, acknowledged=False)
    off, lsn, ln = batch_offsets(buf, seq)[2]
    buf[off + ln - 1] ^= 0xFF
    b = walk_to_break(buf, seq)
    assert b.kind == W.TORN and len(b.following) == 3 and not W.acknowledged(b)


@pytest.mark.parametrize("acknowledged", [True, False])
def test_a_zero_header_with_valid_batches_after_it(tmp_path, acknowledged):
    """Acknowledged batches after a clean end: corruption.  Unacknowledged
    ones: a torn tail (a power loss keeps pages of a write in any order, so
    a later batch's page can survive where an earlier header's did not)."""
    seq, buf = make_log(tmp_path, acknowledged=acknowledged)
    off, lsn, ln = batch_offsets(buf, seq)[3]
    buf[off:off + R.BATCH_HEADER_SIZE] = bytes(R.BATCH_HEADER_SIZE)
    b = walk_to_break(buf, seq)
    assert b.clean and b.text().startswith("valid batches follow the end of the log")
    assert b.kind == (W.FOLLOWS if acknowledged else W.TORN)


def test_breaks_in_a_segment_with_a_successor(tmp_path):
    seq, buf = make_log(tmp_path)
    off, lsn, ln = batch_offsets(buf, seq)[-1]
    buf[off + 40] ^= 0xFF
    missing = walk_to_break(buf, seq, newest=False, next_first=lsn + 1)
    assert missing.kind == W.MISSING and missing.text().endswith(f"batches from {lsn} are missing")
    assert walk_to_break(buf, seq, newest=False, next_first=lsn).kind == W.CHAIN
    zeroed = bytearray(buf)
    zeroed[off:off + R.BATCH_HEADER_SIZE] = bytes(R.BATCH_HEADER_SIZE)
    # a clean end before a successor whose header is invalid: chain for the
    # tools (the successor's header is the problem), missing otherwise
    assert walk_to_break(zeroed, seq, newest=False, next_first=None).kind == W.MISSING
    assert walk_to_break(zeroed, seq, newest=False, next_first=None,
                         chain_on_clean=True).kind == W.CHAIN


def header_reason(buf, seq):
    return lib.prl_scan_header(ffi.from_buffer("uint8_t[]", buf), len(buf), seq,
                               ffi.new("uint64_t *"))


@pytest.mark.parametrize("strict", [True, False])
def test_an_unfinished_newest_segment(tmp_path, strict):
    seq, buf = make_log(tmp_path)
    base = ffi.from_buffer("uint8_t[]", buf)
    assert W.unfinished(base, len(buf), seq, 0, strict) is None  # a valid header
    empty = bytearray(len(buf))                                   # never written
    assert W.unfinished(ffi.from_buffer("uint8_t[]", empty), len(empty), seq,
                        header_reason(empty, seq), strict) == []
    # a damaged header over acknowledged batches is not an unfinished creation
    buf[0] ^= 0xFF
    reason = header_reason(buf, seq)
    assert reason and W.unfinished(base, len(buf), seq, reason, strict) is None


def test_unacknowledged_batches_behind_a_bad_header(tmp_path):
    seq, buf = make_log(tmp_path, acknowledged=False)
    buf[0] ^= 0xFF
    base, reason = ffi.from_buffer("uint8_t[]", buf), header_reason(buf, seq)
    found = W.unfinished(base, len(buf), seq, reason, strict=False)
    assert found is not None and len(found) == 6
    assert W.unfinished(base, len(buf), seq, reason, strict=True) is None


def test_the_chain_gap_wording():
    assert W.chain_gap(9, 7) == ("segment starts at batch 9, but the previous segment ends "
                                 "before batch 7")
