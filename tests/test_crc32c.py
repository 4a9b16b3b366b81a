"""CRC-32C: hardware and portable versions against RFC 3720 vectors."""
import os

import pytest

from pyraftlog._native import ffi, lib

VECTORS = [
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (b"", 0),
]
# every level this CPU has: 0 tables, 1 the crc32 instruction (three-way
# blocks), 2 AVX-512 folding (csrc/crc32c.c)
LEVELS = list(range(lib.prl_crc32c_hw() + 1))
# lengths around where the implementations change: the three-way blocks
# (3 x 128, 3 x 1024, 3 x 8192 bytes), the folds (256 bytes, from 512 on),
# and a batch of 100 entries of 256 bytes
EDGES = sorted({e + d for e in (8, 16, 64, 256, 384, 512, 768, 1024, 3072, 3 * 8192, 28832,
                                 2 * 3 * 8192)
                for d in (-9, -8, -1, 0, 1, 7, 8, 9, 255, 256, 257) if e + d >= 0})


@pytest.mark.parametrize("fn", ["prl_crc32c", "prl_crc32c_sw"])
@pytest.mark.parametrize("data, crc", VECTORS)
def test_known_vectors(fn, data, crc):
    assert getattr(lib, fn)(0, ffi.from_buffer(data), len(data)) == crc


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("data, crc", VECTORS + [(b"123456789" * 1000, None)])
def test_known_vectors_at_every_level(level, data, crc):
    want = crc if crc is not None else lib.prl_crc32c_sw(0, ffi.from_buffer(data), len(data))
    assert lib.prl_crc32c_at(level, 0, ffi.from_buffer(data), len(data)) == want


def test_hardware_matches_portable_on_random_data():
    for n in list(range(0, 70)) + [1000, 4096, 65537]:
        data = os.urandom(n)
        assert lib.prl_crc32c(0, ffi.from_buffer(data), n) == lib.prl_crc32c_sw(0, ffi.from_buffer(data), n)


@pytest.mark.parametrize("level", LEVELS)
def test_every_level_matches_portable_around_block_boundaries(level):
    data = os.urandom(max(EDGES) + 64)
    for n in EDGES:
        for start in (0, 1, 3, 8):  # unaligned starts too
            view = ffi.from_buffer(data)
            want = lib.prl_crc32c_sw(0x5A5A5A5A, view + start, n)
            assert lib.prl_crc32c_at(level, 0x5A5A5A5A, view + start, n) == want, (n, start)


def test_extension_equals_whole():
    data = os.urandom(1000)
    for cut in (0, 1, 7, 8, 500, 999, 1000):
        a = lib.prl_crc32c(0, ffi.from_buffer(data[:cut]), cut)
        b = lib.prl_crc32c(a, ffi.from_buffer(data[cut:]), len(data) - cut)
        assert b == lib.prl_crc32c(0, ffi.from_buffer(data), len(data))


def test_sanitized_build_is_the_one_under_test():
    # make test-asan sets this: prove the sanitized copy was imported
    if os.environ.get("PYRAFTLOG_EXPECT_SANITIZED"):
        import pyraftlog._pyraftlog_c as c
        assert "build/asan" in c.__file__
