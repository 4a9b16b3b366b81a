"""pyraftlog._objects (csrc/objects.c) on its own: the only C that touches
Python objects.  encode_entries writes exactly the records batch.py's Python
encoding writes, or appends nothing and answers -1 for anything it does not
take; make_entries builds the Entry objects of a read and refuses buffers
that do not add up.  Neither leaks references."""
import struct
import sys
import tracemalloc
from array import array

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from pyraftlog import Entry
from pyraftlog._objects import encode_entries, make_entries

HEADER = struct.Struct("<BBHIQQQ")  # docs/FORMAT.md: record header


def python_records(group, entries):
    out = bytearray()
    for e in entries:
        out += HEADER.pack(1, e.type, 0, len(e.data), group, e.index, e.term) + e.data
        out += bytes(-len(e.data) % 8)
    return bytes(out)


u64 = st.integers(0, (1 << 64) - 1)


@settings(max_examples=300, deadline=None)
@given(u64, st.integers(0, (1 << 64) - 40), u64, st.lists(st.tuples(st.binary(max_size=40),
                                                                   st.integers(0, 255)),
                                                         max_size=20))
def test_encoding_is_the_format(group, first, term, items):
    entries = [Entry(first + k, term, d, t) for k, (d, t) in enumerate(items)]
    buf = bytearray(b"prefix")
    assert encode_entries(buf, group, entries, Entry) == len(entries)
    assert bytes(buf) == b"prefix" + python_records(group, entries)


class Sub(Entry):
    __slots__ = ()


class Bytes(bytes):
    pass


class Int(int):
    pass


REFUSED = [
    (1, [Entry(1, 1, b"a"), Entry(3, 1, b"b")]),                   # not consecutive
    (1, (Entry(1, 1, b"a"),)),                                     # a tuple, not a list
    (-1, [Entry(1, 1)]), (1 << 64, [Entry(1, 1)]), ("1", [Entry(1, 1)]), (Int(1), [Entry(1, 1)]),
    (1, [Entry(-1, 1)]), (1, [Entry(1, 1 << 64)]), (1, [Entry(1, 1, b"", 256)]),
    (1, [Entry(1, 1, bytearray(b"x"))]), (1, [Entry(1, 1, Bytes(b"x"))]),
    (1, [Entry(1.0, 1)]), (1, [Entry(1, True)]), (1, [Sub(1, 1)]), (1, [(1, 1, b"", 0)]),
    (1, [Entry(1, 1), None]), (1, [object()]),
]


@pytest.mark.parametrize("group,entries", REFUSED)
def test_anything_else_appends_nothing(group, entries):
    buf = bytearray(b"kept")
    assert encode_entries(buf, group, entries, Entry) == -1
    assert buf == b"kept"


def test_make_entries_builds_the_read():
    data = b"abcdefghij"
    got = make_entries(Entry, 7, np.array([1, 2, 2], np.uint64), array("I", [0, 3, 7]),
                       array("B", [0, 1, 255]), bytearray(data))
    assert got == [Entry(7, 1, b"", 0), Entry(8, 2, b"abc", 1), Entry(9, 2, b"defghij", 255)]
    assert all(type(e) is Entry and type(e.data) is bytes for e in got)
    assert make_entries(Entry, 0, b"", b"", b"", b"") == []


@pytest.mark.parametrize("terms,lens,auxs,data", [
    (np.array([1], np.uint64), array("I", [4]), array("B", [0]), b"abc"),         # too little data
    (np.array([1], np.uint64), array("I", [2]), array("B", [0]), b"abc"),         # too much
    (np.array([1, 2], np.uint64), array("I", [1]), array("B", [0, 0]), b"a"),     # lengths differ
    (np.array([1], np.uint64), array("I", [1]), array("B", [0, 0]), b"a"),
    (b"1234567", array("I", [1]), array("B", [0]), b"a"),                          # not whole u64s
    (np.array([1], np.uint64), array("I", [0xFFFFFFFF]), array("B", [0]), b"a"),
])
def test_make_entries_refuses_buffers_that_do_not_add_up(terms, lens, auxs, data):
    with pytest.raises(ValueError):
        make_entries(Entry, 1, terms, lens, auxs, data)


def test_make_entries_refuses_a_type_that_is_no_tuple():
    with pytest.raises(ValueError):
        make_entries(dict, 1, np.array([1], np.uint64), array("I", [0]), array("B", [0]), b"")


def test_no_reference_leaks():
    data = bytes(300)
    entries = [Entry(i, 3, data) for i in range(1, 65)]
    terms, lens, auxs = np.full(64, 3, np.uint64), array("I", [300] * 64), array("B", bytes(64))
    blob = bytes(300 * 64)
    before = (sys.getrefcount(data), sys.getrefcount(Entry), sys.getrefcount(entries[0]))
    tracemalloc.start()
    for round_ in range(3):
        for _ in range(2000):
            encode_entries(bytearray(), 1, entries, Entry)
            encode_entries(bytearray(), -1, entries, Entry)
            make_entries(Entry, 1, terms, lens, auxs, blob)
        if round_ == 0:
            base = tracemalloc.get_traced_memory()[0]
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert (sys.getrefcount(data), sys.getrefcount(Entry), sys.getrefcount(entries[0])) == before
    assert grown < 64 << 10, f"{grown} bytes kept after 4000 more calls"
