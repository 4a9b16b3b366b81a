"""Build script: compiles csrc/ into pyraftlog._pyraftlog_c (cffi) and
csrc/objects.c into pyraftlog._objects (a plain CPython extension: the only C
that touches Python objects).

The cdef is read from the real header csrc/pyraftlog.h (preprocessor lines
dropped), never pasted here.  PYRAFTLOG_SANITIZE=1 builds both with
AddressSanitizer and UBSan (make test-asan)."""
import os
import pathlib
import re
import subprocess
import sysconfig
from typing import List, Tuple

from cffi import FFI
from setuptools import Extension

ROOT = pathlib.Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
SOURCES = ["crc32c.c", "failpoint.c", "segment.c", "scan.c", "log.c", "table.c", "flusher.c",
           "ring.c", "group_table.c", "group_index.c", "group_walk.c", "apply.c",
           "batch.c", "replay.c"]


def cdef_text() -> str:
    text = (CSRC / "pyraftlog.h").read_text()
    return "\n".join(line for line in text.splitlines() if not re.match(r"\s*#", line))


def flags() -> Tuple[List[str], List[str]]:
    """(compile, link) flags of both extensions."""
    cflags = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread"]
    ldflags = ["-pthread"]
    if os.environ.get("PYRAFTLOG_SANITIZE"):
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
               "-fno-sanitize-recover=undefined"]
        cflags = [f for f in cflags if f != "-O2"] + ["-O1", "-g"] + san
        ldflags += san
    return cflags, ldflags


def objects_extension() -> Extension:
    cflags, ldflags = flags()
    return Extension("pyraftlog._objects", sources=["csrc/objects.c"], include_dirs=["csrc"],
                     extra_compile_args=cflags, extra_link_args=ldflags)


def build_objects(out_dir: pathlib.Path) -> None:
    """pyraftlog._objects into out_dir/pyraftlog/ (make test-asan's copy)."""
    cflags, ldflags = flags()
    inc = sysconfig.get_paths()["include"]
    target = out_dir / "pyraftlog" / ("_objects" + sysconfig.get_config_var("EXT_SUFFIX"))
    subprocess.check_call(["gcc", "-shared", "-fPIC", *cflags, f"-I{inc}", f"-I{CSRC}",
                           str(CSRC / "objects.c"), "-o", str(target), *ldflags])


def make_builder(absolute: bool = False) -> FFI:
    """setuptools wants source paths relative to the project; a build into
    another directory (make test-asan) needs them absolute."""
    def path(p: pathlib.Path) -> str:
        return str(p if absolute else p.relative_to(ROOT))

    cflags, ldflags = flags()
    ffi = FFI()
    ffi.cdef(cdef_text())
    ffi.set_source(
        "pyraftlog._pyraftlog_c",
        '#include "pyraftlog.h"',
        sources=[path(CSRC / s) for s in SOURCES],
        include_dirs=[path(CSRC)],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    )
    return ffi


ffibuilder = make_builder()

if __name__ == "__main__":
    # python pyraftlog/_build.py DIR: build the extension into DIR/pyraftlog/
    # (make test-asan builds its sanitized copy this way, beside the real one)
    import sys

    out = sys.argv[1] if len(sys.argv) > 1 else "."
    make_builder(absolute=True).compile(tmpdir=out)
    build_objects(pathlib.Path(out))
