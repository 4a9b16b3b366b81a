#!/usr/bin/env python3
"""PNG charts of a results file (``perf/out/results.json`` or a ``bench_*.json``).

Draws from the JSON alone (so any saved run can be drawn again):

- ``<name>-throughput.png``: one panel per workload, its entries/s (or
  commands/s) beside its reference and peers, each bar labelled with its
  rate and ours / side, and the CPU other processes used meanwhile;
- ``<name>-ratios.png``: ours / reference per workload against its target,
  and the p99 latencies;
- ``<name>-latency-cdf.png``: per workload, the latency CDF of every side
  (from the quantiles the harness saves; older files without them are skipped);
- ``<name>-steady-state.png``: the steady-state run's disk use (engine
  counter, directory on disk, live bytes) and write latency over time, with
  the purge threshold + 2 segments limit (when the file has that run).

    .venv/bin/python perf/plots.py perf/out/results.json [--out DIR]

``harness.main`` calls :func:`render_file` after saving the JSON (unless
``--no-plot``); nothing is drawn without matplotlib.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Optional

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
COLORS = {"ours": "tab:green", "reference": "tab:blue", "peer": "tab:gray"}
OTHER_COLORS = ["tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:gray", "tab:olive"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001 - optional
        return None
    return plt


def _sides(bench: dict) -> list:
    """(kind, side dict) of ours, the reference and the peers that ran."""
    out = []
    if bench.get("ours"):
        out.append(("ours", bench["ours"]))
    if bench.get("reference"):
        out.append(("reference", bench["reference"]))
    out.extend(("peer", p) for p in bench.get("peers") or [])
    return out


def _rate(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def _short(label: str, width: int = 22) -> str:
    return label if len(label) <= width else label[:width - 1] + "…"


def throughput(results: dict, path: str) -> Optional[str]:
    plt = _pyplot()
    benches = [b for b in results.get("benchmarks", [])
               if b.get("ours") and b["ours"].get("entries_per_s")]
    if plt is None or not benches:
        return None
    from matplotlib.ticker import FuncFormatter, MaxNLocator
    cols = min(3, len(benches))
    rows = math.ceil(len(benches) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(5.2 * cols, 7.5), 3.0 * rows + 0.4),
                             squeeze=False)
    for ax in axes.flat[len(benches):]:
        ax.axis("off")
    for ax, b in zip(axes.flat, benches):
        sides = _sides(b)
        ours = b["ours"]["entries_per_s"]
        vals = [s.get("entries_per_s") or 0 for _, s in sides]
        ax.barh(range(len(sides)), vals, color=[COLORS[k] for k, _ in sides])
        ax.set_yticks(range(len(sides)), [_short(s["label"], 30) for _, s in sides], fontsize=7)
        ax.invert_yaxis()
        for i, ((kind, s), v) in enumerate(zip(sides, vals)):
            note = _rate(v) + ("" if kind == "ours" or not v else f"  ({ours / v:.2f}x)")
            ax.text(v, i, " " + note, va="center", fontsize=7)
        ax.set_xlim(0, max(vals) * 1.45 if max(vals) else 1)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _rate(v) if v else "0"))
        unit = "commands/s" if b["ours"].get("op") == "command" else "entries/s"
        others = [s.get("others_cores") for _, s in sides if s.get("others_cores") is not None]
        noise = f"; others' CPU {max(others):.2f}" if others else ""
        ax.set_title(f"{b['name']}", fontsize=9)
        ax.set_xlabel(f"{unit} (ours / side in brackets{noise})", fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle("throughput beside the references measured in the same run\n"
                 "(green: pyraftlog, blue: reference, gray: peers)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def ratios(results: dict, path: str) -> Optional[str]:
    plt = _pyplot()
    done = [b for b in results.get("benchmarks", []) if b.get("ours") and b.get("reference")
            and b.get("ratio") is not None]
    if plt is None or not done:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = [b["name"] for b in done]
    ok = [all(t.get("met") is not False for t in b.get("targets", [])) for b in done]
    ax1.bar(names, [b["ratio"] for b in done],
            color=["tab:green" if m else "tab:red" for m in ok])
    for i, b in enumerate(done):
        for t in b.get("targets", []):
            if t.get("metric") == "ratio":
                ax1.hlines(t["value"], i - 0.4, i + 0.4, colors="black", linestyles="dashed")
    ax1.set_ylabel("ours / reference (entries/s)")
    ax1.set_title("throughput ratio (dashed: target)")
    ax1.tick_params(axis="x", rotation=20)
    x = range(len(done))
    ax2.bar([i - 0.2 for i in x], [b["ours"].get("p99_ms") or 0 for b in done], width=0.4,
            label="pyraftlog")
    ax2.bar([i + 0.2 for i in x], [b["reference"].get("p99_ms") or 0 for b in done], width=0.4,
            label="reference")
    ax2.set_xticks(list(x), names, rotation=20)
    ax2.set_yscale("log")
    ax2.set_ylabel("p99 latency (ms)")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def latency_cdf(results: dict, path: str) -> Optional[str]:
    plt = _pyplot()
    benches = [b for b in results.get("benchmarks", [])
               if any(s.get("latency_quantiles_ms") for _, s in _sides(b))]
    if plt is None or not benches:
        return None
    cols = min(3, len(benches))
    rows = math.ceil(len(benches) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(benches):]:
        ax.axis("off")
    for ax, b in zip(axes.flat, benches):
        others = iter(OTHER_COLORS * 3)
        for kind, s in _sides(b):
            q = s.get("latency_quantiles_ms")
            if not q:
                continue
            xs = [v for _, v in q]
            ys = [p for p, _ in q]
            ax.plot(xs, ys, label=_short(s["label"], 30), lw=2 if kind == "ours" else 1,
                    color=COLORS["ours"] if kind == "ours" else next(others))
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.set_title(b["name"], fontsize=9)
        ax.set_xlabel("latency (ms, log)", fontsize=7)
        ax.set_ylabel("fraction of operations", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def steady_state(results: dict, path: str) -> Optional[str]:
    plt = _pyplot()
    series = next((b.get("series", {}).get("timeline") for b in results.get("benchmarks", [])
                   if b.get("series", {}).get("timeline")), None)
    if plt is None or not series:
        return None
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    ax1.plot(series["t"], series["disk_mib"], label="disk_bytes (engine)", color="tab:green")
    if series.get("dir_mib"):
        ax1.plot(series["t"], series["dir_mib"], label="directory on disk", color="tab:blue",
                 lw=1)
    if series.get("live_mib"):
        ax1.plot(series["t"], series["live_mib"], label="live_bytes", color="tab:gray", lw=1)
    if series.get("limit_mib"):
        ax1.axhline(series["limit_mib"], color="black", ls="--", lw=1,
                    label="purge_threshold + 2 segments")
    ax1.set_ylabel("MiB")
    ax1.legend(fontsize=7, loc="lower right")
    ax1.set_title("steady state: disk use and write latency over time", fontsize=9)
    wt = series.get("write_t") or []
    if wt:
        ax2.plot(wt, series["write_p50_ms"], label="p50 per interval", color="tab:green", lw=1)
        ax2.plot(wt, series["write_max_ms"], label="max per interval", color="tab:red", lw=1)
        for a, b in series.get("purges", []):
            ax2.axvspan(a, b, color="tab:orange", alpha=0.25, lw=0)
        ax2.set_yscale("log")
        ax2.set_ylabel("write latency (ms)")
        ax2.legend(fontsize=7, loc="upper right")
    ax2.set_xlabel("seconds (orange: a purge that rewrote)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def groups(results: dict, path: str) -> Optional[str]:
    """bench_groups: cost per group against the number of groups."""
    plt = _pyplot()
    rows = next((b.get("series", {}).get("groups") for b in results.get("benchmarks", [])
                 if b.get("series", {}).get("groups")), None)
    if plt is None or not rows:
        return None
    n = [r["groups"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for key, label in (("index_b", "index (written)"), ("rss_anon_b", "anon RSS (written)"),
                       ("reopen_rss_anon_b", "anon RSS (reopened)")):
        ax1.plot(n, [r[key] for r in rows], marker="o", label=label)
    ax1.axhline(150, color="tab:blue", ls="--", lw=1, label="index target")
    ax1.axhline(250, color="tab:orange", ls="--", lw=1, label="RSS target")
    ax1.set_ylabel("bytes per group")
    for key, label in (("write_us_per_group", "write"), ("reopen_us_per_group", "reopen"),
                       ("entries_us", "entries(g, 1, 2) per call"),
                       ("initial_state_us", "initial_state(g) per call")):
        ax2.plot(n, [r[key] for r in rows], marker="o", label=label)
    ax2.set_ylabel("µs per group (or per call)")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("groups (1 entry of 32 B + a hard state each)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    fig.suptitle("cost per group", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def render(results: dict, out_dir: str = OUT_DIR, name: str = "results") -> list:
    """Every chart the results have data for; returns the paths written."""
    if _pyplot() is None:
        return []
    os.makedirs(out_dir, exist_ok=True)
    made = []
    for suffix, fn in (("throughput", throughput), ("ratios", ratios),
                       ("latency-cdf", latency_cdf), ("steady-state", steady_state),
                       ("groups", groups)):
        path = fn(results, os.path.join(out_dir, f"{name}-{suffix}.png"))
        if path:
            made.append(path)
    return made


def render_file(json_path: str, out_dir: Optional[str] = None) -> list:
    with open(json_path) as f:
        results = json.load(f)
    name = os.path.splitext(os.path.basename(json_path))[0]
    return render(results, out_dir or os.path.dirname(os.path.abspath(json_path)), name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="?", default=os.path.join(OUT_DIR, "results.json"))
    p.add_argument("--out", default=None, help="directory for the PNGs (default: the JSON's)")
    args = p.parse_args(argv)
    if _pyplot() is None:
        print("matplotlib is not installed: .venv/bin/pip install matplotlib", file=sys.stderr)
        return 1
    for path in render_file(args.results, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
