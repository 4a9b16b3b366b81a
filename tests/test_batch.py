"""The encoded WriteBatch (pyraftlog/batch.py) and its C check
(csrc/batch.c): the records are those docs/FORMAT.md draws, and the check
never reads outside the buffer whatever bytes it is given."""
import struct

import hypothesis.strategies as st
from hypothesis import given, settings

from pyraftlog import Entry, HardState, WriteBatch
from pyraftlog._native import ffi, lib
from pyraftlog.group_index import GroupIndex

HEADER = struct.Struct("<BBHIQQQ")  # docs/FORMAT.md: record header


def records(buf):
    """(type, aux, len, group, index, term, payload) of each record, read
    with the layout of docs/FORMAT.md."""
    out, off = [], 0
    while off < len(buf):
        t, aux, res, n, g, i, term = HEADER.unpack_from(buf, off)
        assert res == 0
        payload = bytes(buf[off + 32:off + 32 + n])
        assert bytes(buf[off + 32 + n:off + 32 + ((n + 7) & ~7)]) == bytes((8 - n % 8) % 8)
        out.append((t, aux, n, g, i, term, payload))
        off += 32 + ((n + 7) & ~7)
    assert off == len(buf)
    return out


def test_operations_are_encoded_as_the_format_draws_them():
    b = WriteBatch()
    b.append(7, [Entry(1, 2, b"abc", 1), Entry(2, 2, b"")])
    b.append_many(8, 5, [3, 3], [b"x" * 9, b"y" * 9], [0, 2])
    b.set_hard_state(7, HardState(term=2, vote=5, commit=1))
    b.compact(7, 1).truncate(7, 2).put(7, b"k", b"v").delete(7, b"k").remove_group(8)
    assert records(b._buf) == [
        (1, 1, 3, 7, 1, 2, b"abc"), (1, 0, 0, 7, 2, 2, b""),
        (1, 0, 9, 8, 5, 3, b"x" * 9), (1, 2, 9, 8, 6, 3, b"y" * 9),
        (2, 0, 8, 7, 1, 2, struct.pack("<Q", 5)),
        (4, 0, 0, 7, 1, 0, b""),          # the term is filled in by the write
        (5, 0, 0, 7, 2, 0, b""),
        (6, 0, 6, 7, 0, 0, struct.pack("<I", 1) + b"kv"),
        (7, 0, 1, 7, 0, 0, b"k"),
        (8, 0, 0, 8, 0, 0, b""),
    ]
    assert len(b) == 8 and b._n == 10


def test_a_failed_append_leaves_the_batch_as_it_was():
    b = WriteBatch().append(1, [Entry(1, 1, b"a")])
    before = bytes(b._buf)
    for bad in ([Entry(2, 1, b"b"), Entry(4, 1, b"c")], [Entry(2, 1, b"b"), "not an entry"]):
        try:
            b.append(1, bad)
        except (ValueError, TypeError):
            pass
        else:
            raise AssertionError("accepted")
        assert bytes(b._buf) == before and b._n == 1 and len(b) == 1


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 20))
def test_check_never_reads_outside_the_buffer(raw, n):
    """Arbitrary bytes and record counts: the check answers with a status,
    never a crash (make test-asan runs this under AddressSanitizer)."""
    ix = GroupIndex()
    buf = bytearray(raw)
    keep = bytearray(max(n, 1))
    res = ffi.new("prl_batch_result *")
    rc = lib.prl_batch_check(ix.h, ffi.from_buffer("uint8_t[]", buf), len(buf), n,
                             ffi.from_buffer("uint8_t[]", keep), res)
    assert rc in (0, lib.PRL_E_BAD_ARGUMENT, lib.PRL_E_INVALID_BATCH)
    if rc == 0:  # accepted: n records of known types whose lengths add up to the buffer
        off = 0
        for _ in range(n):
            t, _, _, ln = struct.unpack_from("<BBHI", buf, off)
            assert 1 <= t <= 8
            off += 32 + ((ln + 7) & ~7)
        assert off == len(buf)
