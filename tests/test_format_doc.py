"""The bytes the writer produces against what docs/FORMAT.md says, with an
oracle the product does not share: the numbers, names and the CRC seed
formula are read from docs/FORMAT.md itself, and CRC-32C is computed by a
pure-Python table-driven implementation written here (RFC 3720 polynomial),
never by pyraftlog's C.  tests/test_format.py checks the Python view of the
format against the C one; this file checks both against the document."""

import os
import re
import struct

import pytest

from pyraftlog import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from pyraftlog import record as R
from pyraftlog._native import ffi, lib

HERE = os.path.dirname(os.path.abspath(__file__))
FORMAT_MD = os.path.join(HERE, os.pardir, "docs", "FORMAT.md")

# ------------------------------------------------------- CRC-32C, in Python

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected


def _table():
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        out.append(c)
    return out


_TABLE = _table()


def crc32c(data, value=0):
    """CRC-32C of `data`, continuing from a CRC `value` (zlib.crc32's
    convention: crc32c(b, crc32c(a)) == crc32c(a + b))."""
    c = value ^ 0xFFFFFFFF
    for b in bytes(data):
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


@pytest.mark.parametrize("data, crc", [
    (b"123456789", 0xE3069283),          # the check value of the CRC catalogue
    (bytes(32), 0x8A9136AA),             # RFC 3720 B.4
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
])
def test_python_crc32c_is_crc32c(data, crc):
    assert crc32c(data) == crc
    assert crc32c(data[5:], crc32c(data[:5])) == crc


# ------------------------------------------------------- what FORMAT.md says

@pytest.fixture(scope="module")
def doc():
    with open(FORMAT_MD) as f:
        return f.read()


def _one(pattern, text):
    found = re.findall(pattern, text)
    assert len(found) == 1, (pattern, found)
    return found[0]


def doc_seed(doc):
    """The batch CRC seed as a function of seq, from the formula FORMAT.md
    writes: "seeded with `<expression in seq>` (truncated to 32 bits)"."""
    expr = _one(r"seeded with\s+`([^`]+)`\s+\(truncated to 32 bits\)", doc)
    assert re.fullmatch(r"[\sseq()^>0-9xa-f]+", expr), expr  # only seq, ^, >>, numbers
    return lambda seq: eval(expr, {"__builtins__": {}}, {"seq": seq}) & 0xFFFFFFFF


def doc_record_types(doc):
    return {name: int(num) for num, name in re.findall(r"^\| (\d+) \| ([A-Z_]+) \|", doc, re.M)}


def test_doc_constants_match_the_product(doc):
    out = ffi.new("uint32_t[6]")
    lib.prl_format_constants(out)
    seg_hdr = int(_one(r"### Segment header \((\d+) bytes\)", doc))
    batch_hdr = int(_one(r"### Batch header \((\d+) bytes\)", doc))
    rec_hdr = int(_one(r"### Record header \((\d+) bytes\)", doc))
    version = int(_one(r"# pyraftlog on-disk format \(version (\d+)\)", doc))
    align = int(_one(r"Every\s+structure starts on an (\d+)-byte boundary", doc))
    types = doc_record_types(doc)
    assert types and sorted(types.values()) == list(range(1, len(types) + 1)), types
    want = [seg_hdr, batch_hdr, rec_hdr, align, version, max(types.values())]
    assert list(out) == want
    assert [R.SEGMENT_HEADER_SIZE, R.BATCH_HEADER_SIZE, R.RECORD_HEADER_SIZE, R.ALIGN,
            R.FORMAT_VERSION, max(R.NAMES)] == want
    for name, num in types.items():
        assert getattr(R, name) == num, name
    assert R.SEGMENT_MAGIC == _one(r"`magic` = `(\w+)`; `seq`", doc).encode()


@pytest.mark.parametrize("seq", [0, 1, 2, 7, 0xFFFF, 1 << 31, (1 << 32) - 1, 1 << 32,
                                 (1 << 40) + 5, 0x123456789ABCDEF0, (1 << 64) - 1])
def test_doc_seed_formula_matches_the_product(doc, seq):
    assert lib.prl_batch_seed_of(seq) == doc_seed(doc)(seq)


# ------------------------------------------------- the bytes on disk

def _seg_paths(path):
    return [os.path.join(path, n) for n in sorted(os.listdir(path)) if n.endswith(".seg")]


def test_written_bytes_follow_the_doc(open_log, log_dir, doc):
    """Every segment header and every batch of a multi-segment log carries the
    CRC that FORMAT.md describes, computed here; snapshot files too."""
    seed = doc_seed(doc)
    seg_size = 16 << 10
    log = open_log(segment_size=seg_size, sync=True)
    for i in range(60):
        b = log.batch()
        b.append(i % 5, [Entry(i // 5 + 1, 1, bytes([i]) * (i * 37 % 900 + 300))])
        b.set_hard_state(i % 5, HardState(1, 2, 0))
        log.write(b)
    log.write(log.batch().apply_snapshot(9, Snapshot(SnapshotMeta(5, 2, ConfState((1, 2))),
                                                     b"snapshot data" * 50))).wait()
    log.sync()
    log.close()
    segs = _seg_paths(str(log_dir))
    assert len(segs) >= 3
    lsn, batches = 1, 0
    for path in segs:
        raw = open(path, "rb").read()
        magic, version, hsize, seq, first_lsn, size = struct.unpack_from("<8sIIQQQ", raw)
        assert (magic, version, hsize, size) == (b"PRLSEG01", 1, 64, seg_size), path
        assert seq == int(os.path.basename(path)[:16], 16)
        assert raw[40:60] == bytes(20)
        assert struct.unpack_from("<I", raw, 60)[0] == crc32c(raw[:60]), path
        assert first_lsn == lsn, path
        off = 64
        while True:
            crc, blen, blsn, bseq, count, lag = struct.unpack_from("<IIQQII", raw, off)
            if raw[off:off + 32] == bytes(32):
                break
            assert (blsn, bseq) == (lsn, seq) and blen % 8 == 0 and blen >= 32
            assert crc == crc32c(raw[off + 4:off + blen], seed(seq)), (path, off)
            # a byte of the seq in the seed matters: another seq's seed fails
            assert crc != crc32c(raw[off + 4:off + blen], seed(seq + 1))
            assert lag <= blsn
            off += blen
            lsn += 1
            batches += 1
    assert batches == 61
    snapdir = os.path.join(str(log_dir), "snapshots")
    (name,) = os.listdir(snapdir)
    raw = open(os.path.join(snapdir, name), "rb").read()
    magic, group, file_id, data_size, data_crc, header_crc = struct.unpack_from("<8sQQQII", raw)
    assert magic == _one(r"`magic` = `(\w+)`; `header_crc`", doc).encode()
    assert (group, data_size) == (9, len(b"snapshot data" * 50))
    assert header_crc == crc32c(raw[:36])
    assert data_crc == crc32c(raw[40:])
    assert name == f"{group:016x}-{file_id:016x}.snap"
