"""Measuring one side for one run: the Side interface, the Meter (wall, CPU,
RSS, bytes written, others' CPU) and what one run yields."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional, Sequence

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is a dev dependency
    psutil = None


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
