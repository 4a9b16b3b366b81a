"""cffi build script: compiles csrc/ into pyraftlog._pyraftlog_c.

The cdef is read from the real header csrc/pyraftlog.h (preprocessor lines
dropped), never pasted here.  PYRAFTLOG_SANITIZE=1 builds with AddressSanitizer
and UBSan (make test-asan)."""
import os
import pathlib
import re

from cffi import FFI

ROOT = pathlib.Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
SOURCES = ["crc32c.c", "failpoint.c", "segment.c", "scan.c", "log.c", "flusher.c", "ring.c"]


def cdef_text() -> str:
    text = (CSRC / "pyraftlog.h").read_text()
    return "\n".join(line for line in text.splitlines() if not re.match(r"\s*#", line))


ffibuilder = FFI()
ffibuilder.cdef(cdef_text())

_cflags = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread"]
_ldflags = ["-pthread"]
if os.environ.get("PYRAFTLOG_SANITIZE"):
    _san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    _cflags = [f for f in _cflags if f != "-O2"] + ["-O1", "-g"] + _san
    _ldflags += _san

ffibuilder.set_source(
    "pyraftlog._pyraftlog_c",
    '#include "pyraftlog.h"',
    sources=[str((CSRC / s).relative_to(ROOT)) for s in SOURCES],
    include_dirs=[str(CSRC.relative_to(ROOT))],
    extra_compile_args=_cflags,
    extra_link_args=_ldflags,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
