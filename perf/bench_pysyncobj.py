#!/usr/bin/env python3
"""What a PySyncObj user gains: the demo's cluster workload on four journals.

The workload is `make demo (examples/pysyncobj_demo)` without its kill: 3
processes on 127.0.0.1, each running ``--groups`` PySyncObj groups (one
``SyncObj`` and one replicated key-value store per group), every process
keeping ``--window`` commands in flight per group.  It runs in turn, in fresh
clusters, on

- ``pyraftlog``: every journal of a process is a group of one shared engine
  (`pyraftlog.contrib.pysyncobj.install`), durable where Raft needs it;
- ``durable FileJournal``: PySyncObj's own ``FileJournal`` per group, made
  durable by hand the way a user would: ``fdatasync`` of the group's journal
  file at the same points where the pyraftlog adapter waits (before the
  append-entries answer, before the leader counts itself in a commit quorum,
  with the term and vote, which go to a meta file written, fsynced, renamed
  and its directory fsynced);
- ``FileJournal (no fsync)``: PySyncObj's stock ``FileJournal``, which never
  syncs: not durable, the throughput a user has today;
- ``pyraftlog sync=False``: the adapter on an engine that never syncs.

For each: commands/s (acknowledged to the clients within the measured
window, all nodes), p50/p99 command latency (send to acknowledgement),
fdatasyncs per second per process, engine writes (or journal syncs) per
fdatasync, CPU seconds of the three processes per 1,000 commands, and the CPU
other processes used meanwhile (the machine is shared).  Targets:
pyraftlog >= 3x the durable FileJournal and >= 0.8x the stock FileJournal.

    .venv/bin/python perf/bench_pysyncobj.py            # 3 rounds x 4 clusters x 5 s, ~2 min
    .venv/bin/python perf/bench_pysyncobj.py --quick    # 1 round x 4 clusters x 2 s, ~35 s

This file is also the cluster's child program (``--child CONFIG NODE``).
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

PERF_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, PERF_DIR)
sys.path.insert(0, os.path.join(os.path.dirname(PERF_DIR), "examples"))  # pysyncobj_demo

# ============================================================== child side

SYNC_COUNT = [0, 0]          # [fdatasync/fsync calls, journal flushes that synced]
_sync_lock = threading.Lock()


def _count(syncs: int) -> None:
    with _sync_lock:
        SYNC_COUNT[0] += syncs
        SYNC_COUNT[1] += 1


def synced_file_journal_class():
    """PySyncObj's FileJournal plus the fdatasyncs a careful user adds by hand."""
    from pysyncobj.journal import FileJournal
    from pysyncobj.pickle import dumps

    class SyncedFileJournal(FileJournal):
        def __init__(self, journal_file: str) -> None:
            super().__init__(journal_file)
            self._path = journal_file
            self._dirty = False
            # any descriptor of the file syncs its pages, also the ones
            # written through FileJournal's mapping (one page cache)
            self._fd = os.open(journal_file, os.O_RDONLY)

        def add(self, command, idx, term):
            super().add(command, idx, term)
            self._dirty = True

        def clear(self):
            super().clear()
            self._dirty = True

        def deleteEntriesFrom(self, entryFrom):
            super().deleteEntriesFrom(entryFrom)
            self._dirty = True

        def deleteEntriesTo(self, entryTo):
            super().deleteEntriesTo(entryTo)
            self._dirty = True

        def flush(self):
            """Make the entries durable (before an append-entries answer)."""
            if self._dirty:
                os.fdatasync(self._fd)
                self._dirty = False
                _count(1)

        def setRaftCommitIndex(self, raftCommitIndex):
            super().setRaftCommitIndex(raftCommitIndex)
            self.flush()       # the leader counts itself only with its entries on disk

        def setCurrentTerm(self, term, votedForNodeId):
            meta = self._FileJournal__meta
            meta["currentTerm"] = term
            meta["votedForNodeId"] = votedForNodeId
            path = self._path + ".meta"
            with open(path + ".tmp", "wb") as f:
                f.write(dumps(meta))
                f.flush()
                os.fsync(f.fileno())
            os.replace(path + ".tmp", path)
            dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            self._FileJournal__metaSaved = True
            _count(2)
            self.flush()

        def _destroy(self):
            super()._destroy()
            os.close(self._fd)

    return SyncedFileJournal


def install_synced_file_journals() -> None:
    """createJournal -> SyncedFileJournal; the append-entries answer flushes first."""
    import pysyncobj.syncobj as psyncobj
    from pysyncobj.journal import MemoryJournal

    cls = synced_file_journal_class()
    psyncobj.createJournal = lambda f=None: MemoryJournal() if f is None else cls(f)
    orig = psyncobj.SyncObj.__dict__["_SyncObj__sendNextNodeIdx"]

    def send_next_node_idx(self, *args, **kwargs):
        journal = self._SyncObj__raftLog
        if isinstance(journal, cls):
            journal.flush()
        return orig(self, *args, **kwargs)

    psyncobj.SyncObj._SyncObj__sendNextNodeIdx = send_next_node_idx


def child_main(cfg_path: str, node: int) -> int:
    import logging

    from pysyncobj_demo import node as demo

    demo._die_with_parent()
    logging.basicConfig(level=logging.ERROR,
                        format=f"%(asctime)s node{node} %(name)s %(levelname)s %(message)s")
    with open(cfg_path) as f:
        cfg = json.load(f)

    class BenchChild(demo.Child):
        def open_storage(self) -> int:
            if cfg["journal"] == "pyraftlog":
                return super().open_storage()
            if cfg["journal"] == "file-sync":
                install_synced_file_journals()
            return 0

        def journal_file(self, g: int) -> str:
            if cfg["journal"] == "pyraftlog":
                return super().journal_file(g)
            return os.path.join(self.node_dir, f"group-{g}.journal")

        def stats(self):
            if self.engine is not None:
                return super().stats()
            with _sync_lock:
                return {"stats": {"syncs": SYNC_COUNT[0], "writes": SYNC_COUNT[1]}}

    child = BenchChild(cfg, node)
    child.start()
    code = child.serve()
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--child":
    sys.exit(child_main(sys.argv[2], int(sys.argv[3])))

# ======================================================== coordinator side

import harness  # noqa: E402
from harness import Comparison, Result, RunResult, Target  # noqa: E402
from report import fmt_num, table  # noqa: E402

harness.add_option("--groups", type=int, default=50,
                   help="pysyncobj: PySyncObj groups per process (default 50)")
harness.add_option("--window", type=int, default=4,
                   help="pysyncobj: commands in flight per group per process (default 4)")

# (label, journal, sync)
VARIANTS = [
    ("pyraftlog", "pyraftlog", True),
    ("durable FileJournal (+fdatasync)", "file-sync", True),
    ("FileJournal (no fsync)", "file", True),
    ("pyraftlog sync=False", "pyraftlog", False),
]
NODES = 3


def _sys_busy() -> float:
    import psutil
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0)


def _proc_cpu(pids) -> tuple[float, float, int, int]:
    """user, sys, rss, write_bytes summed over the processes."""
    import psutil
    u = s = rss = wb = 0
    for pid in pids:
        try:
            p = psutil.Process(pid)
            c = p.cpu_times()
            u += c.user
            s += c.system
            rss += p.memory_info().rss
            wb += p.io_counters().write_bytes
        except (psutil.Error, AttributeError):
            pass
    return u, s, rss, wb


def run_cluster(cfg: harness.Config, journal: str, sync: bool, seconds: float,
                warmup: float) -> tuple[RunResult, list, dict]:
    """One fresh cluster on ``journal``: warm-up, then ``seconds`` measured."""
    import psutil

    import pysyncobj_demo as demo

    groups, window = cfg.options["groups"], cfg.options["window"]
    workdir = cfg.workdir(f"pysyncobj-{journal}")
    ports = demo.free_ports(NODES * groups)
    ccfg = {"dir": workdir, "nodes": NODES, "groups": groups, "sync": sync,
            "ports": [ports[n * groups:(n + 1) * groups] for n in range(NODES)],
            "raft_min_timeout": 0.6, "segment_size": 16 << 20, "journal": journal,
            "min_sync_interval": cfg.options.get("min_sync_interval") or 0.0}
    cfg_path = os.path.join(workdir, "cluster.json")
    with open(cfg_path, "w") as f:
        json.dump(ccfg, f)
    program = [sys.executable, os.path.abspath(__file__)]
    children = [demo.ChildHandle(n, cfg_path, os.path.join(workdir, f"node{n}.log"), program)
                for n in range(NODES)]
    try:
        for c in children:
            c.wait_event("ready", timeout=90)

        def leaders():
            sts = [c.request("status") for c in children]
            return sts if (all(s["with_leader"] == groups for s in sts)
                           and sum(s["leaders"] for s in sts) >= groups) else None
        demo.wait_until("a leader in every group", leaders, timeout=90)

        def load(duration: float, tag: str, lats: bool) -> None:
            for c in children:
                c.request("load", duration=duration, window=window, latencies=lats,
                          ack_path=os.path.join(workdir, f"acks-{tag}-{c.node}.txt"))

        if warmup > 0:
            load(warmup, "warmup", False)
            for c in children:
                c.wait_event("load_done", timeout=warmup + 60)
        pids = [c.proc.pid for c in children]
        st0 = [c.request("stats")["stats"] for c in children]
        me = psutil.Process()
        me0 = sum(me.cpu_times()[:2])
        u0, s0, _, wb0 = _proc_cpu(pids)
        busy0 = _sys_busy()
        t0 = time.perf_counter()
        load(seconds, "run", True)
        time.sleep(max(0.0, t0 + seconds - time.perf_counter()))
        elapsed = time.perf_counter() - t0
        u1, s1, rss, wb1 = _proc_cpu(pids)
        busy1 = _sys_busy()
        me1 = sum(me.cpu_times()[:2])
        st1 = [c.request("stats")["stats"] for c in children]
        done = [c.wait_event("load_done", timeout=60) for c in children]
    finally:
        for c in children:
            c.stop(timeout=20)
    commands = sum(d["in_window"] for d in done)
    lats = [x / 1e3 for d in done for x in d.get("latencies_ms", [])]
    syncs = sum(b["syncs"] - a["syncs"] for a, b in zip(st0, st1))
    writes = sum(b["writes"] - a["writes"] for a, b in zip(st0, st1))
    user, sys_ = u1 - u0, s1 - s0
    others = max(0.0, (busy1 - busy0) - user - sys_ - (me1 - me0))
    run = RunResult(seconds=elapsed, ops=commands, entries=commands, payload=0,
                    cpu_user=user, cpu_sys=sys_, others_cpu=others, rss=rss,
                    disk_write=wb1 - wb0, device_write=None,
                    syncs=syncs if sync else 0, writes=writes)
    extra = {"failed": sum(d["failed"] + d["expired"] for d in done)}
    return run, lats, extra


def side_table(results: list) -> str:
    rows = []
    for res in results:
        secs = res.seconds
        cmds = res._sum("entries")
        cpu = res._sum("cpu_user") + res._sum("cpu_sys")
        syncs = res._counted("syncs") or 0
        writes = res._counted("writes")
        rows.append([
            res.label, fmt_num(res.entries_per_s), fmt_num(res.p50_ms), fmt_num(res.p99_ms),
            fmt_num(syncs / secs / NODES) if secs else "-",
            fmt_num(writes / syncs) if syncs and writes is not None else "-",
            fmt_num(cpu / cmds * 1000) if cmds else "-",
            fmt_num(res.others_cores),
        ])
    return table(rows, ["journal", "commands/s", "p50 ms", "p99 ms", "fdatasync/s/proc",
                        "writes/fdatasync", "CPU s/1k cmds", "others' CPU"],
                 right=range(1, 8))


@harness.benchmark(
    "pysyncobj", "PySyncObj cluster (3 processes x G groups): pyraftlog vs FileJournal",
    targets=(Target("ratio", ">=", 3.0, label=">= 3x durable FileJournal"),
             Target("vs_filejournal", ">=", 0.8, label=">= 0.8x FileJournal (no fsync)")),
    budget=lambda cfg: len(VARIANTS) * cfg.runs * (cfg.run_seconds + cfg.warmup + 120) + 60)
def bench_pysyncobj(cfg: harness.Config):
    try:
        import pysyncobj  # noqa: F401
    except ImportError:
        return Comparison("pysyncobj", "PySyncObj cluster", skipped="pip install pysyncobj")
    # a fresh cluster per run costs ~5 s: --quick measures one round
    rounds = 1 if cfg.quick else cfg.runs
    seconds = max(cfg.seconds / rounds if cfg.quick else cfg.run_seconds, 2.0)
    warmup = max(cfg.warmup, 1.0)
    results = {label: Result(label, "command") for label, _, _ in VARIANTS}
    for r in range(rounds):
        k = r % len(VARIANTS)
        for label, journal, sync in VARIANTS[k:] + VARIANTS[:k]:
            run, lats, extra = run_cluster(cfg, journal, sync, seconds, warmup)
            results[label].runs.append(run)
            results[label].latencies.extend(lats)
            cfg.log(f"  run {r + 1}/{rounds} {label:<34} {fmt_num(run.throughput)} commands/s"
                    f"  ({run.ops} in {run.seconds:.2f} s, {extra['failed']} failed, "
                    f"others' CPU {run.others_cpu / run.seconds:.2f})")
            cfg.cleanup()
    ours, ref, stock, nosync = (results[v[0]] for v in VARIANTS)
    comp = Comparison("pysyncobj", "PySyncObj cluster", ours=ours, ref=ref, peers=[stock, nosync],
                      params={"groups": cfg.options["groups"], "window": cfg.options["window"],
                              "nodes": NODES, "seconds_per_run": seconds})
    comp.metrics["vs_filejournal"] = (ours.entries_per_s / stock.entries_per_s
                                      if stock.entries_per_s else None)
    comp.metrics["vs_nosync"] = (ours.entries_per_s / nosync.entries_per_s
                                 if nosync.entries_per_s else None)
    comp.details.append(f"side by side ({NODES} processes x {cfg.options['groups']} groups, "
                        f"window {cfg.options['window']} per group per process, "
                        f"{rounds} x {seconds:g} s each):")
    comp.details.extend("   " + line for line in side_table([ours, ref, stock, nosync]).splitlines())
    comp.notes.append("CPU s/1k cmds: user+sys of the three cluster processes per 1,000 "
                      "acknowledged commands; fdatasync/s/proc: fdatasync (and fsync) calls per "
                      "second per process; writes/fdatasync: engine writes (FileJournal: journal "
                      "syncs) per fdatasync")
    return comp


if __name__ == "__main__":
    harness.ensure_importable()
    harness.main(["pysyncobj"], description=__doc__, json_name="bench_pysyncobj.json")
