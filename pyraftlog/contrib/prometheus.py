"""Prometheus metrics of pyraftlog engines (``pip install pyraftlog[metrics]``).

:class:`EngineCollector` is a collector for ``prometheus_client``: at every
scrape it calls :meth:`pyraftlog.Engine.stats` of each engine it watches and
exports the figures with Prometheus conventions::

    import pyraftlog
    from prometheus_client import REGISTRY, start_http_server
    from pyraftlog.contrib.prometheus import EngineCollector

    engine = pyraftlog.open("/var/lib/myapp/raftlog")
    REGISTRY.register(EngineCollector(engine))
    start_http_server(9108)            # http://localhost:9108/metrics

- counters (``_total``): batches written, ``fdatasync`` calls and the seconds
  spent in them, bytes and records written, segment files created, reused,
  recycled and deleted, rotations, prepare stalls, purge runs and what they
  rewrote;
- gauges: segments, free segments, disk and live bytes, groups, entries,
  index memory, the written and durable log positions (their difference is
  what waits for the next ``fdatasync``), ``pyraftlog_poisoned_errno`` (0
  while healthy), what the last recovery found, and ``pyraftlog_up`` (0 once
  the engine is closed);
- histograms: ``pyraftlog_durable_latency_seconds`` (write returned to
  durable, per batch) and ``pyraftlog_batches_per_sync`` (batches one
  ``fdatasync`` made durable).  The engine keeps them as power-of-two
  buckets, exported as cumulative ``_bucket{le=...}`` with ``_count``; the
  engine does not keep their sums, so ``_sum`` is *estimated* from bucket
  midpoints (said so in HELP).

Every sample carries the label ``directory`` (the engine's path) and any
constant ``labels`` given, so one collector can watch several engines.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (  # type: ignore[import-not-found,unused-ignore]
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector  # type: ignore[import-not-found,unused-ignore]

import pyraftlog

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["EngineCollector"]

PREFIX = "pyraftlog_"

# stats() key -> (metric name without prefix and without _total, help)
COUNTERS: dict[str, tuple[str, str]] = {
    "writes": ("writes", "Batches written (Engine.write calls that wrote something)."),
    "syncs": ("syncs", "fdatasync calls of the flusher (group commits)."),
    "sync_seconds": ("sync_seconds", "Seconds the flusher spent in fdatasync."),
    "bytes_written": ("written_bytes", "Bytes written to segments (records and framing)."),
    "records_written": ("written_records", "Records written to segments."),
    "rotations": ("segment_rotations", "Times the writer moved on to a new segment."),
    "segments_created": ("segments_created", "Segment files created (fallocated)."),
    "segments_reused": ("segments_reused", "Free segment files taken again by the writer."),
    "segments_recycled": ("segments_recycled", "Emptied segments returned to the free ring."),
    "segments_deleted": ("segments_deleted", "Emptied segment files deleted."),
    "prepare_stalls": ("prepare_stalls", "Times the writer waited for a prepared segment."),
    "purge_runs": ("purge_runs", "Purge passes (rewrites of lagging groups)."),
    "purge_rewritten_bytes": ("purge_rewritten_bytes", "Bytes rewritten at the head by purges."),
    "purge_rewritten_groups": ("purge_rewritten_groups", "Groups rewritten at the head by purges."),
    "purge_skipped_groups": ("purge_skipped_groups",
                             "Groups a purge could not rewrite (they pin their segments)."),
}

GAUGES: dict[str, tuple[str, str]] = {
    "segments": ("segments", "Segment files in use."),
    "free_segments": ("free_segments", "Prepared or emptied segment files kept for reuse."),
    "disk_bytes": ("disk_bytes", "Bytes of all segment files."),
    "live_bytes": ("live_bytes", "Bytes of records some group still needs."),
    "groups": ("groups", "Groups with any state."),
    "entries": ("entries", "Live entries of all groups."),
    "index_bytes": ("index_bytes", "Memory of the per-group index."),
    "written_lsn": ("written_lsn", "Log position of the last batch written."),
    "durable_lsn": ("durable_lsn", "Log position of the last batch made durable."),
    "poisoned_errno": ("poisoned_errno",
                       "errno of the failed fdatasync or write that poisoned the engine "
                       "(0: healthy)."),
    "recovered_batches": ("recovered_batches", "Batches replayed by the last recovery (at open)."),
    "recovered_bytes": ("recovered_bytes", "Bytes replayed by the last recovery."),
    "dropped_tail_bytes": ("dropped_tail_bytes", "Bytes of torn tail cut by the last recovery."),
    "skipped_batches": ("skipped_batches", "Invalid batches skipped by the last recovery."),
    "skipped_bytes": ("skipped_bytes", "Bytes of invalid batches skipped by the last recovery."),
}

# exported through the histograms, or derived from them
_NOT_GAUGES = {"batches_per_sync", "durable_latency_us", "durable_latency_p50_us",
               "durable_latency_p99_us"}


def _histogram(hist: Mapping[int, int], scale: float,
               integer: bool) -> tuple[list[tuple[str, float]], float]:
    """Cumulative Prometheus buckets and an estimated sum of a power-of-two histogram.

    ``hist`` maps a bucket's lower bound 2^k to its count; the bucket holds
    values in [2^k, 2^(k+1)) (the first one also 0 and 1), the last one of the
    engine's everything above.  ``le`` is the upper bound (minus 1 for integer
    counts, which makes it exact); the sum takes each value at its bucket's
    midpoint (1.5 * 2^k).
    """
    buckets: list[tuple[str, float]] = []
    acc = 0
    total = 0.0
    items = sorted(hist.items())
    for lower, count in items:
        acc += count
        upper = 2 * lower - 1 if integer else 2 * lower
        buckets.append((repr(float(upper * scale)), float(acc)))
        total += count * (1.0 if lower == 1 and integer else 1.5 * lower) * scale
    buckets.append(("+Inf", float(acc)))
    return buckets, total


class EngineCollector(Collector):  # type: ignore[misc,unused-ignore]
    """Exports :meth:`pyraftlog.Engine.stats` of one or more engines.

    ``labels``: constant labels added to every sample (``{"node": "1"}``).
    Register it with a ``prometheus_client`` registry; :meth:`add` and
    :meth:`remove` change the engines watched.  A closed engine exports only
    ``pyraftlog_up 0``.
    """

    def __init__(self, *engines: pyraftlog.Engine,
                 labels: Mapping[str, str] | None = None) -> None:
        self._labels = dict(labels or {})
        if "directory" in self._labels:
            raise ValueError("the label 'directory' is the engine's path; choose another name")
        self._engines: list[pyraftlog.Engine] = list(engines)

    def add(self, engine: pyraftlog.Engine) -> None:
        if engine not in self._engines:
            self._engines.append(engine)

    def remove(self, engine: pyraftlog.Engine) -> None:
        self._engines.remove(engine)

    def describe(self) -> Iterable[Metric]:
        # the metric names do not depend on the engines: let a registry check
        # for clashes at register() without calling stats()
        return list(self._families())

    def _families(self) -> Iterator[Metric]:
        names = ["directory", *self._labels]
        yield GaugeMetricFamily(PREFIX + "up", "1 while the engine is open, 0 once closed.",
                                labels=names)
        for name, doc in COUNTERS.values():
            yield CounterMetricFamily(PREFIX + name, doc, labels=names)
        for name, doc in GAUGES.values():
            yield GaugeMetricFamily(PREFIX + name, doc, labels=names)
        yield from self._histogram_families(names)

    @staticmethod
    def _histogram_families(
            names: Sequence[str]) -> tuple[HistogramMetricFamily, HistogramMetricFamily]:
        est = (" _sum is estimated from bucket midpoints (the engine keeps only "
               "power-of-two buckets).")
        return (
            HistogramMetricFamily(
                PREFIX + "durable_latency_seconds",
                "Seconds from a batch written to the batch durable." + est, labels=names),
            HistogramMetricFamily(
                PREFIX + "batches_per_sync",
                "Batches made durable by one fdatasync (group commit)." + est, labels=names),
        )

    def collect(self) -> Iterator[Metric]:
        names = ["directory", *self._labels]
        up = GaugeMetricFamily(PREFIX + "up", "1 while the engine is open, 0 once closed.",
                               labels=names)
        counters = {k: CounterMetricFamily(PREFIX + n, d, labels=names)
                    for k, (n, d) in COUNTERS.items()}
        gauges = {k: GaugeMetricFamily(PREFIX + n, d, labels=names) for k, (n, d) in GAUGES.items()}
        extra: dict[str, GaugeMetricFamily] = {}
        latency, per_sync = self._histogram_families(names)
        for engine in list(self._engines):
            values = [engine.path, *self._labels.values()]
            try:
                st: dict[str, Any] = engine.stats()
            except pyraftlog.ClosedError:
                up.add_metric(values, 0.0)
                continue
            up.add_metric(values, 1.0)
            for key, value in st.items():
                if key in counters:
                    counters[key].add_metric(values, float(value))
                elif key in gauges:
                    gauges[key].add_metric(values, float(value))
                elif key not in _NOT_GAUGES and isinstance(value, (int, float)):
                    # a figure added to stats() after this module: a gauge
                    fam = extra.get(key)
                    if fam is None:
                        fam = extra[key] = GaugeMetricFamily(
                            PREFIX + key, f"Engine.stats()[{key!r}].", labels=names)
                    fam.add_metric(values, float(value))
            buckets, total = _histogram(st.get("durable_latency_us", {}), 1e-6, integer=False)
            latency.add_metric(values, buckets, total)
            buckets, total = _histogram(st.get("batches_per_sync", {}), 1.0, integer=True)
            per_sync.add_metric(values, buckets, total)
        yield up
        yield from counters.values()
        yield from gauges.values()
        yield from extra.values()
        yield latency
        yield per_sync
