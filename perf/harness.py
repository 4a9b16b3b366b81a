"""Common harness of the pyraftlog benchmarks.

A benchmark compares two *sides* measured in the same run, in the same
process: ``ours`` (pyraftlog) and a ``reference`` (raw syscalls, RocksDB, ...).
Every figure is printed as ours, reference and the ratio ours / reference, so
a slower or busier machine moves both columns and the ratio stays meaningful.

How a comparison is measured (:func:`compare`):

* both sides are set up, then warmed up (``--warmup`` seconds each, ours
  first so that the reference can be sized from what ours really writes);
* then ``runs`` rounds; each round runs both sides for ``seconds / runs``
  seconds, alternating which goes first (ABBA) so that slow drift of the
  machine (other engineers' tests, page-cache writeback) hits both alike;
* around each run a :class:`Meter` takes, with ``psutil``: wall time, CPU
  user/sys of this process (all threads: the C flusher, RocksDB's
  background threads, executor threads), RSS, bytes this process caused to
  be written to storage (``io_counters().write_bytes``: counted when a page
  goes from clean to dirty, by ``write``/``pwrite`` or through a shared
  mapping, so it is what ``fdatasync`` has to send), bytes written to the
  whole block device (shared with everyone on the machine: informative
  only) and the CPU the *other* processes used meanwhile (noise gauge);
* between runs each side gets an untimed ``maintain()`` (pyraftlog compacts
  every group so that the disk stays bounded).

Printing and saving (tables, JSON, PNG) live in ``report.py``.
Benchmarks register themselves with :func:`benchmark`; ``perf/run_all.py``
imports every ``perf/bench_*.py`` and runs them all, and each bench script
runs its own with :func:`main`.  Nothing here asserts on time: targets are
evaluated and printed, never raised.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import faulthandler
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is a dev dependency
    psutil = None

PERF_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(PERF_DIR)
if PERF_DIR not in sys.path:  # report.py is a sibling; make it importable however we were loaded
    sys.path.insert(0, PERF_DIR)

import plots  # noqa: E402
from report import (OUT_DIR, fmt_num, noise_line, print_comparison, save_json,  # noqa: E402
                    summary_table)

# Budgets.  Full: ~15 s measured per side per workload (3 runs of 5 s);
# the whole suite (peers, steady state, reads, reopen, memory) ~5 minutes.
# Quick: 2 runs of 1 s per side; the suite takes ~25 s.
DEFAULT_SECONDS, DEFAULT_RUNS, DEFAULT_WARMUP = 15.0, 3, 1.0
QUICK_SECONDS, QUICK_RUNS, QUICK_WARMUP = 2.0, 2, 0.3
TMPFS_TYPES = {"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"}


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """A goal from DESIGN.md "Targets".

    ``metric`` is ``"ratio"`` (ours / reference of the headline throughput),
    ``"p99_ms"`` (ours p99 latency, absolute milliseconds) or the name of a
    figure the benchmark put in ``Comparison.metrics`` (``"index_bytes_per_entry"``,
    ``"time_ratio"``, ...).  ``label`` replaces the generated description.
    """

    metric: str
    op: str  # ">=" or "<="
    value: float
    label: Optional[str] = None

    def describe(self) -> str:
        if self.label:
            return self.label
        if self.metric == "ratio":
            return f"{self.op} {self.value:g}x"
        if self.metric == "p99_ms":
            return f"p99 {self.op} {self.value:g} ms"
        return f"{self.metric} {self.op} {self.value:g}"

    def actual(self, comp: "Comparison") -> Optional[float]:
        if self.metric == "ratio":
            return comp.ratio
        if self.metric == "p99_ms":
            return comp.ours.p99_ms if comp.ours else None
        return comp.metrics.get(self.metric)

    def met(self, comp: "Comparison") -> Optional[bool]:
        value = self.actual(comp)
        if value is None or (self.metric == "ratio" and not comp.target_applies):
            return None
        return value >= self.value if self.op == ">=" else value <= self.value


@dataclass
class Benchmark:
    name: str
    title: str
    fn: Callable[["Config"], "Comparison | list"]  # one Comparison, or a list of them
    targets: tuple
    module: str
    budget: Optional[Callable[["Config"], float]] = None  # watchdog seconds, if not the default


BENCHMARKS: dict[str, Benchmark] = {}


def benchmark(name: str, title: str, targets: Iterable[Target] = (),
              budget: Optional[Callable[["Config"], float]] = None):
    """Decorator: register ``fn(cfg) -> Comparison`` (or a list of them) under ``name``.

    ``budget(cfg)``: seconds after which the watchdog kills a hung run (default
    ``2 * (seconds + 2 * warmup) + 180``); set it for benchmarks whose length
    does not follow ``--seconds`` (a 10-million-entry set-up, a reopen of 1 GiB).
    """

    def register(fn):
        if name in BENCHMARKS:
            raise ValueError(f"benchmark {name!r} registered twice")
        BENCHMARKS[name] = Benchmark(name, title, fn, tuple(targets), fn.__module__, budget)
        return fn

    return register


# Options of single benchmarks (``--gib`` of bench_reopen, ...), added to every
# parser once the module defining them is imported, so run_all.py takes them too.
EXTRA_OPTIONS: list = []


def add_option(*flags, **kwargs) -> None:
    """Register a command-line option; its value is ``cfg.options[dest]``."""
    if any(f == g for f in flags for opt in EXTRA_OPTIONS for g in opt[0]):
        return  # module imported twice (as __main__ and by name)
    EXTRA_OPTIONS.append((flags, kwargs))


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------

@dataclass
class Config:
    seconds: float  # measured seconds per side (split over `runs`)
    runs: int  # measured runs per side (at least 1)
    warmup: float  # warm-up seconds per side, not measured
    base_dir: str  # a fresh directory per benchmark is made below it
    quick: bool = False
    keep: bool = False
    verbose: bool = True
    options: dict = field(default_factory=dict)  # values of the add_option() options
    workdirs: list = field(default_factory=list, repr=False)  # removed after each benchmark

    @property
    def run_seconds(self) -> float:
        return self.seconds / self.runs

    def workdir(self, name: str) -> str:
        """A fresh directory under ``base_dir``, removed when the benchmark ends (unless --keep)."""
        path = tempfile.mkdtemp(prefix=f"pyraftlog-perf-{name}-", dir=self.base_dir)
        self.workdirs.append(path)
        return path

    def cleanup(self) -> None:
        while self.workdirs:
            path = self.workdirs.pop()
            if not self.keep:
                shutil.rmtree(path, ignore_errors=True)

    def log(self, msg: str) -> None:
        if self.verbose:
            print(msg, flush=True)


def proc_status() -> dict:
    """VmRSS, RssAnon, RssFile, VmHWM of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def fs_type(path: str) -> str:
    """File system type of ``path`` from /proc/mounts (longest mount prefix)."""
    path = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


def default_base_dir() -> str:
    """A temporary directory on a real disk: /var/tmp, else /tmp, else perf/out."""
    for cand in ("/var/tmp", "/tmp", OUT_DIR):
        os.makedirs(cand, exist_ok=True) if cand == OUT_DIR else None
        if os.path.isdir(cand) and os.access(cand, os.W_OK) and fs_type(cand) not in TMPFS_TYPES:
            return cand
    return tempfile.gettempdir()


def block_device(path: str) -> Optional[str]:
    """Name of the block device holding ``path`` (``vda``, ``nvme0n1p2``), if any."""
    try:
        st = os.stat(path)
        link = os.path.realpath(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
        return os.path.basename(link)
    except OSError:
        return None


# --------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------

class Recorder:
    """What a side's ``run`` reports: counts and per-operation latencies.

    ``ops`` are the unit the side waits on (a write, an append); ``entries``
    are Raft entries (the headline unit); ``payload`` is the entry bytes
    (``len(data)`` summed), the denominator of write amplification.  Threads
    should keep their own lists and call :meth:`add` once at the end.
    """

    def __init__(self):
        self.ops = 0
        self.entries = 0
        self.payload = 0
        self.latencies: list[float] = []  # seconds
        self.syncs: Optional[int] = None  # set by sides that count their own
        self.writes: Optional[int] = None
        self.sync_seconds: Optional[float] = None  # time spent inside fdatasync, if timed

    def add(self, ops: int, entries: int, payload: int, latencies: Sequence[float] = ()):
        self.ops += ops
        self.entries += entries
        self.payload += payload
        self.latencies.extend(latencies)


class Side:
    """One contender.  Subclasses set ``label``/``unit`` and implement ``run``."""

    label = "?"
    op_name = "op"  # what one latency sample is ("write", "append")

    def setup(self) -> None:
        pass

    def run(self, seconds: float, rec: Recorder) -> None:
        raise NotImplementedError

    def maintain(self) -> None:
        """Untimed work between runs (compaction, ...)."""

    def counters(self) -> Optional[dict]:
        """Cumulative ``{"writes": n, "syncs": n, ...}`` if the side knows them."""
        return None

    def close(self) -> None:
        pass


@dataclass
class RunResult:
    seconds: float
    ops: int
    entries: int
    payload: int
    cpu_user: float
    cpu_sys: float
    others_cpu: float  # CPU-seconds used by other processes meanwhile
    rss: int
    disk_write: int  # bytes this process caused to be written to storage
    device_write: Optional[int]  # bytes written to the block device (everyone's)
    syncs: Optional[int]
    writes: Optional[int]
    sync_seconds: Optional[float] = None  # time spent inside fdatasync

    @property
    def throughput(self) -> float:
        return self.entries / self.seconds if self.seconds else 0.0


class Meter:
    """Context manager measuring one run: wall, CPU, RSS, I/O, others' CPU."""

    def __init__(self, device: Optional[str]):
        self.device = device
        self.proc = psutil.Process() if psutil else None

    def _device_bytes(self) -> Optional[int]:
        if not (psutil and self.device):
            return None
        try:
            return psutil.disk_io_counters(perdisk=True)[self.device].write_bytes
        except (KeyError, RuntimeError, OSError):
            return None

    def _sys_busy(self) -> float:
        if not psutil:
            return 0.0
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0)

    def __enter__(self):
        p = self.proc
        self.c0 = p.cpu_times() if p else None
        self.io0 = _io_write(p)
        self.dev0 = self._device_bytes()
        self.sys0 = self._sys_busy()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.elapsed = time.perf_counter() - self.t0
        p = self.proc
        if p:
            # children's CPU is the side's own (a `cat` subprocess, a fresh interpreter),
            # not other processes' (it would read as noise otherwise)
            c1 = p.cpu_times()
            self.user = (c1.user + c1.children_user) - (self.c0.user + self.c0.children_user)
            self.sys = (c1.system + c1.children_system) - (self.c0.system + self.c0.children_system)
            self.rss = p.memory_info().rss
        else:
            self.user = self.sys = 0.0
            self.rss = 0
        io1 = _io_write(p)
        self.disk = io1 - self.io0 if io1 is not None and self.io0 is not None else 0
        dev1 = self._device_bytes()
        self.dev = dev1 - self.dev0 if dev1 is not None and self.dev0 is not None else None
        self.others = max(0.0, self._sys_busy() - self.sys0 - self.user - self.sys)
        return False


def _io_write(proc) -> Optional[int]:
    if proc is None:
        return None
    try:
        return proc.io_counters().write_bytes
    except (AttributeError, psutil.AccessDenied, OSError):
        return None


def _percentile(sorted_values: Sequence[float], q: float) -> Optional[float]:
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


CDF_POINTS = [k / 100 for k in range(100)] + [0.995, 0.999, 1.0]


@dataclass
class Result:
    """One side, aggregated over its measured runs."""

    label: str
    op_name: str
    runs: list = field(default_factory=list)
    latencies: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def _sum(self, attr):
        return sum(getattr(r, attr) for r in self.runs)

    @property
    def seconds(self):
        return self._sum("seconds")

    @property
    def entries_per_s(self):
        return self._sum("entries") / self.seconds if self.seconds else 0.0

    @property
    def ops_per_s(self):
        return self._sum("ops") / self.seconds if self.seconds else 0.0

    def _lat(self, q):
        if not hasattr(self, "_sorted") or len(self._sorted) != len(self.latencies):
            self._sorted = sorted(self.latencies)
        v = _percentile(self._sorted, q)
        return None if v is None else v * 1e3

    @property
    def p50_ms(self):
        return self._lat(0.50)

    @property
    def p99_ms(self):
        return self._lat(0.99)

    @property
    def p999_ms(self):
        return self._lat(0.999)

    @property
    def max_ms(self):
        return max(self.latencies) * 1e3 if self.latencies else None

    def per_op(self, attr):
        ops = self._sum("ops")
        return self._sum(attr) / ops * 1e6 if ops else None  # microseconds

    @property
    def cpu_cores(self):
        return (self._sum("cpu_user") + self._sum("cpu_sys")) / self.seconds if self.seconds else None

    @property
    def others_cores(self):
        return self._sum("others_cpu") / self.seconds if self.seconds else None

    @property
    def rss_mib(self):
        return max((r.rss for r in self.runs), default=0) / 2**20

    @property
    def write_amp(self):
        payload = self._sum("payload")
        return self._sum("disk_write") / payload if payload else None

    @property
    def device_write_amp(self):
        payload = self._sum("payload")
        if not payload or any(r.device_write is None for r in self.runs):
            return None
        return self._sum("device_write") / payload

    def _counted(self, attr):
        vals = [getattr(r, attr) for r in self.runs]
        return None if any(v is None for v in vals) else sum(vals)

    @property
    def syncs_per_s(self):
        syncs = self._counted("syncs")
        return syncs / self.seconds if syncs is not None and self.seconds else None

    @property
    def entries_per_sync(self):
        syncs = self._counted("syncs")
        return self._sum("entries") / syncs if syncs else None

    @property
    def sync_ms(self):
        """Mean duration of one fdatasync, when the side timed them."""
        syncs, secs = self._counted("syncs"), self._counted("sync_seconds")
        return secs / syncs * 1e3 if syncs and secs is not None else None

    @property
    def writes_per_sync(self):
        syncs, writes = self._counted("syncs"), self._counted("writes")
        return writes / syncs if syncs and writes is not None else None

    def to_dict(self) -> dict:
        keys = ["entries_per_s", "ops_per_s", "p50_ms", "p99_ms", "p999_ms", "max_ms",
                "cpu_cores", "others_cores", "rss_mib", "write_amp", "device_write_amp",
                "syncs_per_s", "sync_ms", "entries_per_sync", "writes_per_sync"]
        d = {"label": self.label, "op": self.op_name, "seconds": self.seconds}
        d.update({k: getattr(self, k) for k in keys})
        d["cpu_user_us_per_op"] = self.per_op("cpu_user")
        d["cpu_sys_us_per_op"] = self.per_op("cpu_sys")
        d["samples"] = len(self.latencies)
        # the latency distribution for perf/plots.py's CDFs: (fraction, ms)
        d["latency_quantiles_ms"] = ([(q, self._lat(q)) for q in CDF_POINTS]
                                     if self.latencies else None)
        d["runs"] = [dataclasses.asdict(r) | {"entries_per_s": r.throughput} for r in self.runs]
        d["notes"] = list(self.notes)
        return d


@dataclass
class Comparison:
    name: str
    title: str
    ours: Optional[Result] = None
    ref: Optional[Result] = None
    targets: tuple = ()
    notes: list = field(default_factory=list)
    skipped: Optional[str] = None  # the whole benchmark did not run
    error: Optional[str] = None
    target_applies: bool = True  # False when the reference is a stand-in
    params: dict = field(default_factory=dict)
    peers: list = field(default_factory=list)  # Result of each peer store, same run, same workload
    metrics: dict = field(default_factory=dict)  # named figures for non-throughput targets
    details: list = field(default_factory=list)  # extra lines printed under the detail table
    summary: Optional[tuple] = None  # (ours, reference) cells of the summary row, if not throughput
    series: dict = field(default_factory=dict)  # time series for perf/plots.py ("timeline": ...)

    @property
    def ratio(self) -> Optional[float]:
        if not (self.ours and self.ref) or not self.ref.entries_per_s:
            return None
        return self.ours.entries_per_s / self.ref.entries_per_s

    def checks(self) -> list:
        return [(t, t.actual(self), t.met(self)) for t in self.targets]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "params": self.params,
            "skipped": self.skipped,
            "error": self.error,
            "ratio": self.ratio,
            "target_applies": self.target_applies,
            "targets": [
                {"target": t.describe(), "metric": t.metric, "op": t.op, "value": t.value,
                 "actual": a, "met": m}
                for t, a, m in self.checks()
            ],
            "ours": self.ours.to_dict() if self.ours else None,
            "reference": self.ref.to_dict() if self.ref else None,
            "peers": [p.to_dict() | {"ours_over_peer": _div(self.ours and self.ours.entries_per_s,
                                                              p.entries_per_s)}
                      for p in self.peers],
            "metrics": dict(self.metrics),
            "details": list(self.details),
            "notes": list(self.notes),
            "series": dict(self.series),
        }


def _div(a, b):
    return a / b if a is not None and b else None


def _measure_run(side: Side, seconds: float, device: Optional[str]) -> tuple[RunResult, list]:
    rec = Recorder()
    c0 = side.counters()
    with Meter(device) as m:
        side.run(seconds, rec)
    c1 = side.counters()
    syncs, writes, sync_s = rec.syncs, rec.writes, rec.sync_seconds
    if c0 is not None and c1 is not None:
        syncs = c1.get("syncs", 0) - c0.get("syncs", 0)
        writes = c1.get("writes", 0) - c0.get("writes", 0)
        if "sync_seconds" in c0 and "sync_seconds" in c1:
            sync_s = c1["sync_seconds"] - c0["sync_seconds"]
    run = RunResult(
        seconds=m.elapsed, ops=rec.ops, entries=rec.entries, payload=rec.payload,
        cpu_user=m.user, cpu_sys=m.sys, others_cpu=m.others, rss=m.rss,
        disk_write=m.disk, device_write=m.dev, syncs=syncs, writes=writes, sync_seconds=sync_s,
    )
    return run, rec.latencies


def measure(side: Side, seconds: float, device: Optional[str] = None,
            label: Optional[str] = None) -> Result:
    """One measured run of one side (no reference), as a :class:`Result`."""
    run, lats = _measure_run(side, seconds, device)
    res = Result(label or side.label, side.op_name)
    res.runs.append(run)
    res.latencies.extend(lats)
    return res


def compare(cfg: Config, comp: Comparison, ours: Side, make_ref, device: Optional[str] = None,
            peers: Sequence = (), peer_share: float = 1.0) -> Comparison:
    """Warm up and measure ``ours`` and the reference, alternating, into ``comp``.

    ``make_ref`` is a :class:`Side` or a callable ``f(ours) -> Side`` called
    after ours has warmed up (so the reference can copy ours' record sizes).
    ``peers`` are more sides (other stores doing the same workload: SQLite,
    LMDB, ...): each is warmed up after the reference and measured in every
    round after ours and the reference, for ``peer_share`` of a run's seconds;
    they land in ``comp.peers`` and never change the ratio or the targets.  A
    peer whose set-up fails is left out with a note.  Sides are closed on the
    way out.
    """
    sides = []
    try:
        ours.setup()
        sides.append(ours)
        cfg.log(f"  warm-up {ours.label} ({cfg.warmup:g} s)")
        ours.run(cfg.warmup, Recorder())
        ref = make_ref(ours) if callable(make_ref) and not isinstance(make_ref, Side) else make_ref
        ours.maintain()  # after make_ref: its compaction batch must not skew bytes per write
        ref.setup()
        sides.append(ref)
        cfg.log(f"  warm-up {ref.label} ({cfg.warmup:g} s)")
        ref.run(cfg.warmup, Recorder())
        ref.maintain()
        live_peers = []
        for peer in peers:
            peer = peer(ours) if callable(peer) and not isinstance(peer, Side) else peer
            try:
                peer.setup()
                sides.append(peer)
                cfg.log(f"  warm-up {peer.label} ({cfg.warmup * peer_share:g} s)")
                peer.run(cfg.warmup * peer_share, Recorder())
                peer.maintain()
                live_peers.append(peer)
            except Exception as e:  # noqa: BLE001 - a peer must not sink the workload
                comp.notes.append(f"peer {peer.label} left out: {type(e).__name__}: {e}")
        results = {id(s): Result(s.label, s.op_name) for s in [ours, ref] + live_peers}
        for r in range(cfg.runs):
            order = [ours, ref] if r % 2 == 0 else [ref, ours]
            if live_peers:  # rotate the peers too, so no one always runs right after ours
                k = r % len(live_peers)
                order += live_peers[k:] + live_peers[:k]
            for side in order:
                secs = cfg.run_seconds * (peer_share if side in live_peers else 1.0)
                run, lats = _measure_run(side, secs, device)
                res = results[id(side)]
                res.runs.append(run)
                res.latencies.extend(lats)
                cfg.log(f"  run {r + 1}/{cfg.runs} {side.label:<34} {fmt_num(run.throughput)} entries/s"
                        f"  ({run.ops} {side.op_name}s in {run.seconds:.2f} s)")
                side.maintain()
        comp.ours, comp.ref = results[id(ours)], results[id(ref)]
        comp.peers = [results[id(p)] for p in live_peers]
        for res in [comp.ours, comp.ref] + comp.peers:
            comp.notes.extend(io_notes(res))
        return comp
    finally:
        for side in reversed(sides):
            try:
                side.close()
            except Exception as e:  # a failing close must not hide the results
                comp.notes.append(f"close {side.label}: {e!r}")


def io_notes(res: Result) -> list:
    """Warn when the process I/O counter and the device disagree a lot."""
    wa, dev = res.write_amp, res.device_write_amp
    if wa and dev and wa > 3 * dev and wa > 4:
        return [(f"{res.label}: process write_bytes ({wa:.1f}x payload) far above what the device "
                 f"wrote ({dev:.1f}x): the kernel charges a whole (large) page-cache folio each "
                 f"time any byte of it is dirtied; the device figure is closer to the truth")]
    return []


def environment(cfg: Config) -> dict:
    env = {
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "dir": cfg.base_dir,
        "fs_type": fs_type(cfg.base_dir),
        "device": block_device(cfg.base_dir),
        "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "workdirs"},
    }
    try:
        import pyraftlog

        env["pyraftlog"] = getattr(pyraftlog, "__version__", "?")
        env["pyraftlog_file"] = getattr(pyraftlog, "__file__", None)
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        env["pyraftlog"] = f"not importable: {e!r}"
    return env


# --------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------

def ensure_importable() -> None:
    """Let ``import pyraftlog`` find the work tree when it is not installed."""
    try:
        import pyraftlog  # noqa: F401
    except ImportError:
        if REPO_DIR not in sys.path:
            sys.path.insert(0, REPO_DIR)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=None,
                   help=f"measured seconds per side per workload (default {DEFAULT_SECONDS:g}, "
                        f"quick {QUICK_SECONDS:g})")
    p.add_argument("--runs", type=int, default=None,
                   help=f"measured runs per side, alternating with the reference (default "
                        f"{DEFAULT_RUNS}, quick {QUICK_RUNS})")
    p.add_argument("--warmup", type=float, default=None,
                   help=f"warm-up seconds per side (default {DEFAULT_WARMUP:g}, quick {QUICK_WARMUP:g})")
    p.add_argument("--dir", default=None,
                   help="directory for the logs and reference files (default: a temp dir under "
                        "/var/tmp or /tmp, whichever is a real disk, not tmpfs)")
    p.add_argument("--quick", action="store_true", help="short runs (the whole suite in well under a minute)")
    p.add_argument("--only", action="append", default=None, metavar="NAME",
                   help="run only this benchmark (repeatable)")
    p.add_argument("--list", action="store_true", help="list the registered benchmarks and exit")
    p.add_argument("--keep", action="store_true", help="keep the work directories")
    p.add_argument("--no-plot", action="store_true", help="do not write a PNG even if matplotlib is installed")
    p.add_argument("--json", default=None, help="file name under perf/out/ for the JSON results")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-run progress lines")
    for flags, kwargs in EXTRA_OPTIONS:
        p.add_argument(*flags, **kwargs)
    return p


def config_from_args(args) -> Config:
    seconds = args.seconds if args.seconds is not None else (QUICK_SECONDS if args.quick else DEFAULT_SECONDS)
    runs = args.runs if args.runs is not None else (QUICK_RUNS if args.quick else DEFAULT_RUNS)
    warmup = args.warmup if args.warmup is not None else (QUICK_WARMUP if args.quick else DEFAULT_WARMUP)
    base = args.dir or default_base_dir()
    os.makedirs(base, exist_ok=True)
    options = {}
    for flags, kwargs in EXTRA_OPTIONS:
        dest = kwargs.get("dest") or flags[-1].lstrip("-").replace("-", "_")
        options[dest] = getattr(args, dest, kwargs.get("default"))
    return Config(seconds=max(seconds, 0.05), runs=max(1, runs), warmup=max(0.0, warmup),
                  base_dir=base, quick=args.quick, keep=args.keep, verbose=not args.quiet,
                  options=options)


def run_benchmarks(cfg: Config, names: Sequence[str]) -> list:
    comps = []
    for name in names:
        b = BENCHMARKS[name]
        cfg.log(f"\n>> {name}: {b.title}")
        # Watchdog: a hung ticket (engine bug) must not hang `make perf`.
        budget = b.budget(cfg) if b.budget else 2 * (cfg.seconds + 2 * cfg.warmup) + 180
        faulthandler.dump_traceback_later(budget, exit=True)
        t0 = time.perf_counter()
        try:
            out = b.fn(cfg)
        except Exception as e:  # noqa: BLE001 - one failing workload must not hide the others
            out = Comparison(name, b.title, error=f"{type(e).__name__}: {e}")
            out.notes.append(traceback.format_exc().strip().splitlines()[-3].strip())
            if cfg.verbose:
                traceback.print_exc()
        finally:
            faulthandler.cancel_dump_traceback_later()
            cfg.cleanup()
        wall = round(time.perf_counter() - t0, 2)
        for comp in (out if isinstance(out, list) else [out]):
            if comp.name == name:
                comp.targets = comp.targets or b.targets
            comp.params.setdefault("wall_seconds", wall)
            print_comparison(comp)
            comps.append(comp)
    return comps


def main(names: Optional[Sequence[str]] = None, description: str = "", json_name: str = "results.json",
         argv: Optional[Sequence[str]] = None) -> list:
    """Parse the common options, run ``names`` (default: all registered), print, save."""
    args = parser(description).parse_args(argv)
    names = list(names) if names is not None else list(BENCHMARKS)
    if args.list:
        for n in names:
            print(f"{n:<22} {BENCHMARKS[n].title}")
        return []
    if args.only:
        unknown = [n for n in args.only if n not in BENCHMARKS]
        if unknown:
            raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
        names = [n for n in names if n in args.only]
    if psutil is None:
        print("warning: psutil is not installed: no CPU, RSS or I/O figures", file=sys.stderr)
    cfg = config_from_args(args)
    kind = fs_type(cfg.base_dir)
    free = shutil.disk_usage(cfg.base_dir).free
    print(f"pyraftlog perf: dir {cfg.base_dir} ({kind}, {free / 2**30:.0f} GiB free), "
          f"{cfg.runs} x {cfg.run_seconds:.2g} s per side, warm-up {cfg.warmup:g} s, "
          f"{os.cpu_count()} CPUs, load {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if kind in TMPFS_TYPES:
        print(f"warning: {cfg.base_dir} is {kind}: fdatasync costs nothing there; the figures "
              f"do not describe a disk", file=sys.stderr)
    env = environment(cfg)
    comps = run_benchmarks(cfg, names)
    print("\n" + summary_table(comps))
    noise = noise_line(comps)
    if noise:
        print(noise)
    path = save_json(comps, args.json or json_name, env)
    print(f"\nresults: {os.path.relpath(path)}")
    if not args.no_plot:
        for png in plots.render_file(path):
            print(f"plot:    {os.path.relpath(png)}")
    return comps
