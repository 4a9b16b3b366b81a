#!/usr/bin/env python3
"""Many threads, each waiting for its own small write to be durable.

threads
    16 threads; each one repeatedly appends 1 entry of 256 B to its own
    group and waits for durability (``log.write(batch).wait()``).  The
    engine's group commit should cover many threads' writes with one
    ``fdatasync``.  Reference: 16 threads, each doing ``os.pwrite`` of a
    record of the same size into one shared preallocated file, then its own
    ``os.fdatasync`` (what every thread does without a group-committing
    log).  Targets: >= 2.5x the reference's appends/s, and p99 <= 3 ms.
"""
from __future__ import annotations

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Comparison, Side, Target, benchmark  # noqa: E402
from sides import ENTRY_BYTES, TERM, EngineSide, RawFile, Skip, encoded_records, payload  # noqa: E402

THREADS = 16


def run_threads(n, body, seconds):
    """Start ``n`` threads running ``body(k, deadline, out)`` together; return their outputs."""
    outs = [None] * n
    start = threading.Barrier(n + 1)
    box = {}

    def main(k):
        start.wait()
        outs[k] = body(k, box["deadline"], outs)

    threads = [threading.Thread(target=main, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    box["deadline"] = time.perf_counter() + seconds
    start.wait()
    for t in threads:
        t.join()
    return outs


class ThreadsSide(EngineSide):
    label = "pyraftlog"
    op_name = "append"

    def __init__(self, workdir):
        super().__init__(workdir, THREADS)
        self.data = payload()

    def run(self, seconds, rec):
        Entry, WriteBatch, log, data = (self.pyraftlog.Entry, self.pyraftlog.WriteBatch,
                                        self.log, self.data)
        nxt = self.next_index

        def body(k, deadline, _outs):
            g, clock, lat = self.groups[k], time.perf_counter, []
            i = nxt[g]
            now = clock()
            while now < deadline:
                b = WriteBatch()
                b.append(g, [Entry(i, TERM, data)])
                log.write(b).wait()
                i += 1
                end = clock()
                lat.append(end - now)
                now = end
            nxt[g] = i
            return lat

        for lat in run_threads(THREADS, body, seconds):
            rec.add(len(lat), len(lat), len(lat) * ENTRY_BYTES, lat)


class RawThreadsSide(Side):
    label = "16 x own pwrite+fdatasync"
    op_name = "append"

    def __init__(self, workdir, nbytes):
        self.workdir = workdir
        self.buf = encoded_records(1, nbytes, payload())

    def setup(self):
        self.file = RawFile(os.path.join(self.workdir, "raw.wal"))

    def run(self, seconds, rec):
        f, buf = self.file, self.buf
        fd, n = f.fd, len(buf)

        def body(_k, deadline, _outs):
            pwrite, fdatasync, clock, lat = os.pwrite, os.fdatasync, time.perf_counter, []
            in_sync = 0.0
            now = clock()
            while now < deadline:
                pwrite(fd, buf, f.offset(n))
                mid = clock()
                fdatasync(fd)
                end = clock()
                in_sync += end - mid
                lat.append(end - now)
                now = end
            return lat, in_sync

        in_sync = 0.0
        for lat, s in run_threads(THREADS, body, seconds):
            rec.add(len(lat), len(lat), len(lat) * ENTRY_BYTES, lat)
            in_sync += s
        rec.syncs = rec.writes = rec.ops
        rec.sync_seconds = in_sync  # summed over threads: syncs overlap

    def close(self):
        self.file.close()


@benchmark("threads", "16 threads, each appends 1 x 256 B to its own group and waits for durability",
           targets=[Target("ratio", ">=", 2.5), Target("p99_ms", "<=", 3.0)])
def threads(cfg):
    comp = Comparison("threads", harness.BENCHMARKS["threads"].title,
                      params={"threads": THREADS, "entry_bytes": ENTRY_BYTES})
    workdir = cfg.workdir("threads")
    try:
        ours = ThreadsSide(workdir)
    except Skip as e:
        comp.skipped = str(e)
        return comp

    def make_ref(o):
        nbytes, how = o.bytes_per_write(1)
        comp.params["bytes_per_write"] = nbytes
        comp.notes.append(f"reference writes {nbytes} B per append ({how})")
        return RawThreadsSide(workdir, nbytes)

    harness.compare(cfg, comp, ours, make_ref, device=harness.block_device(workdir))
    return comp


if __name__ == "__main__":
    harness.ensure_importable()
    harness.main(["threads"], description=__doc__, json_name="bench_threads.json")
