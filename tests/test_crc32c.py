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


@pytest.mark.parametrize("fn", ["prl_crc32c", "prl_crc32c_sw"])
@pytest.mark.parametrize("data, crc", VECTORS)
def test_known_vectors(fn, data, crc):
    assert getattr(lib, fn)(0, ffi.from_buffer(data), len(data)) == crc


def test_hardware_matches_portable_on_random_data():
    for n in list(range(0, 70)) + [1000, 4096, 65537]:
        data = os.urandom(n)
        assert lib.prl_crc32c(0, ffi.from_buffer(data), n) == lib.prl_crc32c_sw(0, ffi.from_buffer(data), n)


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
