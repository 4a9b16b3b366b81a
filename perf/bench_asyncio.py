#!/usr/bin/env python3
"""asyncio: many coroutines, each awaiting its own durable append.

asyncio
    1000 tasks on one event loop; each repeatedly appends 1 entry of 256 B
    to its own group and ``await``s the ticket (the loop must stay free
    while the flusher syncs).  Reference: 1000 tasks, each ``os.pwrite``s a
    record of the same size into a shared preallocated file, then
    ``await loop.run_in_executor(None, os.fdatasync, fd)`` (the default
    executor: min(32, CPUs + 4) threads).  Target: >= 4x durable appends/s.
"""
from __future__ import annotations

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Comparison, Side, Target, benchmark  # noqa: E402
from sides import ENTRY_BYTES, TERM, EngineSide, RawFile, Skip, encoded_records, payload  # noqa: E402

TASKS = 1000


def run_tasks(loop, n, body, seconds):
    """Run ``n`` tasks of ``body(k, deadline)`` on ``loop`` until the deadline; their outputs."""

    async def main():
        deadline = time.perf_counter() + seconds
        return await asyncio.gather(*(body(k, deadline) for k in range(n)))

    return loop.run_until_complete(main())


class AsyncSide(EngineSide):
    label = "pyraftlog"
    op_name = "append"

    def __init__(self, workdir):
        super().__init__(workdir, TASKS)
        self.data = payload()

    def setup(self):
        super().setup()
        self.loop = asyncio.new_event_loop()

    def run(self, seconds, rec):
        Entry, WriteBatch, log, data = (self.pyraftlog.Entry, self.pyraftlog.WriteBatch,
                                        self.log, self.data)
        nxt = self.next_index

        async def body(k, deadline):
            g, clock, lat = self.groups[k], time.perf_counter, []
            i = nxt[g]
            now = clock()
            while now < deadline:
                b = WriteBatch()
                b.append(g, [Entry(i, TERM, data)])
                await log.write(b)
                i += 1
                end = clock()
                lat.append(end - now)
                now = end
            nxt[g] = i
            return lat

        for lat in run_tasks(self.loop, TASKS, body, seconds):
            rec.add(len(lat), len(lat), len(lat) * ENTRY_BYTES, lat)

    def close(self):
        try:
            super().close()
        finally:
            self.loop.close()


def timed_fdatasync(fd: int) -> float:
    """os.fdatasync(fd), returning how long it took (runs in an executor thread)."""
    t0 = time.perf_counter()
    os.fdatasync(fd)
    return time.perf_counter() - t0


class ExecutorSyncSide(Side):
    label = "pwrite + executor fdatasync"
    op_name = "append"

    def __init__(self, workdir, nbytes):
        self.workdir = workdir
        self.buf = encoded_records(1, nbytes, payload())

    def setup(self):
        self.file = RawFile(os.path.join(self.workdir, "raw.wal"))
        self.loop = asyncio.new_event_loop()

    def run(self, seconds, rec):
        f, buf, loop = self.file, self.buf, self.loop
        fd, n = f.fd, len(buf)

        async def body(_k, deadline):
            pwrite, clock, lat, in_sync = os.pwrite, time.perf_counter, [], 0.0
            now = clock()
            while now < deadline:
                pwrite(fd, buf, f.offset(n))
                in_sync += await loop.run_in_executor(None, timed_fdatasync, fd)
                end = clock()
                lat.append(end - now)
                now = end
            return lat, in_sync

        in_sync = 0.0
        for lat, s in run_tasks(loop, TASKS, body, seconds):
            rec.add(len(lat), len(lat), len(lat) * ENTRY_BYTES, lat)
            in_sync += s
        rec.syncs = rec.writes = rec.ops
        rec.sync_seconds = in_sync  # summed over executor threads: syncs overlap

    def close(self):
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()
        self.file.close()


@benchmark("asyncio", "asyncio: 1000 tasks, each appends 1 x 256 B to its own group and awaits the ticket",
           targets=[Target("ratio", ">=", 4.0)])
def asyncio_bench(cfg):
    comp = Comparison("asyncio", harness.BENCHMARKS["asyncio"].title,
                      params={"tasks": TASKS, "entry_bytes": ENTRY_BYTES})
    workdir = cfg.workdir("asyncio")
    try:
        ours = AsyncSide(workdir)
    except Skip as e:
        comp.skipped = str(e)
        return comp

    def make_ref(o):
        nbytes, how = o.bytes_per_write(1)
        comp.params["bytes_per_write"] = nbytes
        comp.notes.append(f"reference writes {nbytes} B per append ({how})")
        return ExecutorSyncSide(workdir, nbytes)

    harness.compare(cfg, comp, ours, make_ref, device=harness.block_device(workdir))
    return comp


if __name__ == "__main__":
    harness.ensure_importable()
    harness.main(["asyncio"], description=__doc__, json_name="bench_asyncio.json")
