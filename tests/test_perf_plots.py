"""perf/plots.py draws its PNG charts from a small results file (no benchmark runs)."""
from __future__ import annotations

import importlib
import json
import os

import pytest

pytest.importorskip("matplotlib")  # in the [test] extra; `make perf` installs it too


@pytest.fixture(scope="module")
def perf_modules():
    """perf/harness.py and perf/plots.py, reached from the repository root
    (perf/ is a folder of scripts: a namespace package)."""
    return importlib.import_module("perf.harness"), importlib.import_module("perf.plots")


def small_results(harness):
    """Two workloads as the harness saves them: one with a reference and peers,
    and a steady-state run with its timeline."""
    def result(label, rate, lat_ms):
        res = harness.Result(label, "write")
        res.runs.append(harness.RunResult(
            seconds=1.0, ops=int(rate), entries=int(rate), payload=256 * int(rate),
            cpu_user=0.5, cpu_sys=0.2, others_cpu=0.1, rss=50 << 20, disk_write=0,
            device_write=None, syncs=100, writes=int(rate)))
        res.latencies.extend(lat_ms * (1 + k / 100) / 1e3 for k in range(200))
        return res

    comp = harness.Comparison("ready_loop", "a Ready loop",
                              ours=result("pyraftlog", 120_000, 0.4),
                              ref=result("raw pwrite+fdatasync", 300_000, 0.2),
                              targets=(harness.Target("ratio", ">=", 0.9),))
    comp.peers = [result("SQLite", 30_000, 2.0), result("LMDB", 60_000, 1.0)]
    steady = harness.Comparison("steady_state", "steady state", ours=result("steady", 50_000, 0.5))
    steady.series["timeline"] = {
        "t": [0.0, 0.5, 1.0, 1.5], "disk_mib": [3, 20, 33, 17], "dir_mib": [3, 20, 33, 17],
        "live_mib": [1, 10, 11, 11], "limit_mib": 34,
        "write_t": [0.125, 0.375, 0.625], "write_p50_ms": [0.4, 0.5, 0.45],
        "write_max_ms": [2.0, 9.0, 3.0], "purges": [[0.4, 0.5]]}
    return {"environment": {}, "benchmarks": [comp.to_dict(), steady.to_dict()]}


def test_charts_from_a_results_file(perf_modules, tmp_path):
    harness, plots = perf_modules
    results = small_results(harness)
    quantiles = results["benchmarks"][0]["ours"]["latency_quantiles_ms"]
    assert quantiles[0][0] == 0.0 and quantiles[-1][0] == 1.0
    assert [v for _, v in quantiles] == sorted(v for _, v in quantiles)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results, default=str))
    made = plots.render_file(str(path), str(tmp_path / "png"))
    names = sorted(os.path.basename(p) for p in made)
    assert names == ["results-latency-cdf.png", "results-ratios.png",
                     "results-steady-state.png", "results-throughput.png"]
    for p in made:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(p) > 5000


def test_old_results_without_quantiles_or_timeline(perf_modules, tmp_path):
    harness, plots = perf_modules
    results = small_results(harness)
    for b in results["benchmarks"]:
        b.pop("series")
        for side in [b["ours"], b.get("reference")] + b.get("peers", []):
            if side:
                side.pop("latency_quantiles_ms")
    made = plots.render(results, str(tmp_path), "old")
    assert sorted(os.path.basename(p) for p in made) == ["old-ratios.png", "old-throughput.png"]
