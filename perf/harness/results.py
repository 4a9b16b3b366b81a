"""Results: a side's figures over its runs, and a Comparison of ours against
a reference, with its targets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from .meter import CDF_POINTS, _percentile


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
