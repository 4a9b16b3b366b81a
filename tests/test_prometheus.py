"""pyraftlog.contrib.prometheus: Engine.stats() as Prometheus metrics, checked
by parsing the text exposition with prometheus_client's own parser."""
from __future__ import annotations

import math
import urllib.request

import pytest

prometheus_client = pytest.importorskip("prometheus_client")  # the [metrics]/[test] extra

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import pyraftlog  # noqa: E402
from pyraftlog import Entry  # noqa: E402
from pyraftlog.contrib.prometheus import EngineCollector  # noqa: E402


def scrape(registry):
    text = generate_latest(registry).decode()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def samples(fam, **labels):
    return [s for s in fam.samples if all(s.labels.get(k) == v for k, v in labels.items())]


def value(fam, suffix="", **labels):
    (s,) = [s for s in samples(fam, **labels) if s.name == fam.name + suffix]
    return s.value


@pytest.fixture
def engine(tmp_path):
    eng = pyraftlog.open(str(tmp_path / "log"), segment_size=1 << 20)
    yield eng
    try:
        eng.close()
    except pyraftlog.ClosedError:
        pass


def fill(eng, writes=40, groups=5):
    tickets = []
    for i in range(1, writes + 1):
        b = eng.batch()
        for g in range(groups):
            b.append(g, [Entry(i, 1, b"x" * 100)])
        tickets.append(eng.write(b))
        if i % 8 == 0:
            tickets[-1].wait()
    eng.sync()


def test_exposition_follows_prometheus_conventions(engine):
    fill(engine)
    registry = CollectorRegistry()
    registry.register(EngineCollector(engine, labels={"node": "n1"}))
    text, fams = scrape(registry)
    st = engine.stats()
    lab = {"directory": engine.path, "node": "n1"}

    # counters end in _total, and hold what stats() says
    assert fams["pyraftlog_writes"].type == "counter"
    assert "pyraftlog_writes_total{" in text
    assert value(fams["pyraftlog_writes"], "_total", **lab) == st["writes"] == 40
    assert value(fams["pyraftlog_syncs"], "_total", **lab) == st["syncs"] >= 1
    assert value(fams["pyraftlog_written_bytes"], "_total", **lab) == st["bytes_written"]
    assert value(fams["pyraftlog_sync_seconds"], "_total", **lab) > 0
    # gauges
    for key in ("segments", "disk_bytes", "live_bytes", "groups", "entries", "index_bytes",
                "durable_lsn", "poisoned_errno"):
        fam = fams["pyraftlog_" + key]
        assert fam.type == "gauge", key
        assert value(fam, **lab) == st[key], key
    assert value(fams["pyraftlog_groups"], **lab) == 5
    assert value(fams["pyraftlog_entries"], **lab) == 200
    assert value(fams["pyraftlog_up"], **lab) == 1

    # the power-of-two histograms are real histograms: cumulative buckets
    # with increasing `le`, +Inf == _count, a _sum
    for name, hist_key in (("pyraftlog_durable_latency_seconds", "durable_latency_us"),
                           ("pyraftlog_batches_per_sync", "batches_per_sync")):
        fam = fams[name]
        assert fam.type == "histogram"
        assert "_sum is estimated" in fam.documentation
        buckets = [(float(s.labels["le"]), s.value) for s in samples(fam, **lab)
                   if s.name == name + "_bucket"]
        les = [le for le, _ in buckets]
        counts = [c for _, c in buckets]
        assert les == sorted(les) and les[-1] == math.inf
        assert counts == sorted(counts)
        count = value(fam, "_count", **lab)
        assert counts[-1] == count == sum(st[hist_key].values())
        assert value(fam, "_sum", **lab) > 0
    # every batch became durable through some sync: the batches counted by the
    # batches-per-sync histogram add up to the writes (1, 3, 7, ... are exact bounds)
    per_sync = fams["pyraftlog_batches_per_sync"]
    assert value(per_sync, "_count", **lab) == st["syncs"]
    first = [s for s in samples(per_sync, **lab) if s.name.endswith("_bucket")][0]
    assert first.labels["le"] in ("1", "1.0") and first.value == st["batches_per_sync"].get(1, 0)
    # latency: seconds, microsecond buckets; every durable batch counted once
    assert value(fams["pyraftlog_durable_latency_seconds"], "_count", **lab) == 40


def test_several_engines_and_a_closed_one(tmp_path):
    a = pyraftlog.open(str(tmp_path / "a"), segment_size=1 << 20)
    b = pyraftlog.open(str(tmp_path / "b"), segment_size=1 << 20)
    fill(a, writes=3)
    fill(b, writes=7)
    coll = EngineCollector(a, b)
    registry = CollectorRegistry()
    registry.register(coll)
    _, fams = scrape(registry)
    assert value(fams["pyraftlog_writes"], "_total", directory=a.path) == 3
    assert value(fams["pyraftlog_writes"], "_total", directory=b.path) == 7
    b.close()
    _, fams = scrape(registry)
    assert value(fams["pyraftlog_up"], directory=b.path) == 0
    assert not samples(fams["pyraftlog_writes"], directory=b.path)
    assert value(fams["pyraftlog_up"], directory=a.path) == 1
    coll.remove(b)
    _, fams = scrape(registry)
    assert not samples(fams["pyraftlog_up"], directory=b.path)
    a.close()
    with pytest.raises(ValueError):
        EngineCollector(labels={"directory": "x"})
    # names are known without stats(): a second collector clashes at register()
    with pytest.raises(ValueError):
        registry.register(EngineCollector())


def test_served_over_http_as_the_demo_does(engine):
    """The demo's --metrics-port: each node serves its engine on /metrics."""
    import pysyncobj_demo as demo

    fill(engine, writes=5)
    (port,) = demo.free_ports(1)
    child = demo.Child({"dir": "unused"}, node=2)
    child.engine = engine
    served = child.serve_metrics(port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        if isinstance(served, tuple):      # prometheus_client >= 0.20: (server, thread)
            served[0].shutdown()
            served[0].server_close()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert value(fams["pyraftlog_writes"], "_total", directory=engine.path, node="2") == 5
