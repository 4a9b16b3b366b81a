#!/usr/bin/env python3
"""How much does the disk write per fdatasync when a log is written through mmap?

Not a registered benchmark: a probe for the segment writer's choices.  Each
variant writes `--bytes` (default 18,464: one Ready-loop batch of pyraftlog)
at the head of a fresh 64 MiB file, then `fdatasync`s, `--writes` times, and
reports time per write+sync and write amplification (bytes written / bytes
appended) from this process's I/O counter and from the block device.

Variants:
  mmap            posix_fallocate, mmap(MAP_SHARED), memcpy (what the engine does)
  mmap-random     same, plus madvise(MADV_RANDOM) on the mapping
  pwrite          posix_fallocate, os.pwrite

Why: page faults on a mapping go through readahead; with a large
read_ahead_kb (8192 on this machine's vda) the page cache builds large
folios, growing as the writer moves through the file; a store dirties the
whole folio and every fdatasync writes it all back.  MADV_RANDOM turns fault
readahead off (single pages).  Measured here (3500 x 18,464 B, one whole
segment): mmap 50.7x (915 KiB per sync), mmap-random 1.45x, pwrite 1.46x;
over only the first 1500 writes mmap was 3.7x: the folios grow with the
offset, so run the whole segment (the default).
"""
from __future__ import annotations

import argparse
import mmap
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

SIZE = 64 << 20


def device_bytes(dev):
    import psutil

    return psutil.disk_io_counters(perdisk=True)[dev].write_bytes if dev else 0


def run(variant: str, path: str, nbytes: int, writes: int, dev) -> str:
    import psutil

    proc = psutil.Process()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.posix_fallocate(fd, 0, SIZE)
        os.fsync(fd)
        m = None
        if variant.startswith("mmap"):
            m = mmap.mmap(fd, SIZE, mmap.MAP_SHARED)
            if variant == "mmap-random":
                m.madvise(mmap.MADV_RANDOM)
            elif variant == "mmap-read":
                for page in range(0, SIZE, 4096):
                    m[page]
        buf, off = os.urandom(nbytes), 4096
        writes = min(writes, (SIZE - off) // nbytes)
        w0, d0, t0 = proc.io_counters().write_bytes, device_bytes(dev), time.perf_counter()
        for _ in range(writes):
            if m is not None:
                m[off:off + nbytes] = buf
            else:
                os.pwrite(fd, buf, off)
            os.fdatasync(fd)
            off += nbytes
        el = time.perf_counter() - t0
        w1, d1 = proc.io_counters().write_bytes, device_bytes(dev)
        if m is not None:
            m.close()
    finally:
        os.close(fd)
        os.unlink(path)
    appended = writes * nbytes
    dev_wa = f"{(d1 - d0) / appended:7.2f}" if dev else "      -"
    return (f"{variant:12} {el / writes * 1e3:7.3f} ms/write+sync   process WA {(w1 - w0) / appended:7.2f}"
            f"   device WA {dev_wa}   ({(d1 - d0) / writes / 1024:,.0f} KiB to the device per sync)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bytes", type=int, default=18464, help="bytes appended per write (default 18464)")
    p.add_argument("--writes", type=int, default=3500,
                   help="writes per variant, capped to fill one 64 MiB file (default 3500)")
    p.add_argument("--rounds", type=int, default=1, help="rounds over all variants (default 1)")
    p.add_argument("--dir", default=None, help="directory on the disk to test (default as the benchmarks)")
    args = p.parse_args()
    base = args.dir or harness.default_base_dir()
    dev = harness.block_device(base)
    ra = None
    if dev:
        for cand in (f"/sys/block/{dev}/queue/read_ahead_kb", f"/sys/class/block/{dev}/../queue/read_ahead_kb"):
            if os.path.exists(cand):
                ra = open(cand).read().strip()
                break
    print(f"{base} ({harness.fs_type(base)}, device {dev}, read_ahead_kb {ra}); device bytes are "
          f"everyone's: run on a quiet machine")
    for _ in range(args.rounds):
        for variant in ("mmap", "mmap-read", "mmap-random", "pwrite"):
            print(run(variant, os.path.join(base, f"mmap-wa-{os.getpid()}"), args.bytes, args.writes, dev),
                  flush=True)


if __name__ == "__main__":
    main()
