"""Printing and saving benchmark results: aligned tables and JSON (PNG charts: plots.py).

Only reads the result objects of :mod:`harness` (``Comparison``, ``Result``,
``RunResult``); nothing here measures.
"""
from __future__ import annotations

import json
import math
import os
from typing import Iterable, Sequence

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")

# --------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------

def fmt_num(v, digits: int = 3) -> str:
    """Human number: 1,234,567 / 12.3 / 0.123 / '-'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, str):
        return v
    av = abs(v)
    if av >= 1000:
        return f"{v:,.0f}"
    if av >= 100:
        return f"{v:.1f}"
    if av >= 1:
        return f"{v:.2f}"
    if av == 0:
        return "0"
    return f"{v:.{digits}f}" if av >= 0.001 else f"{v:.2e}"


def fmt_ratio(v) -> str:
    return "-" if v is None else f"{v:.2f}x"


def fmt_rate(v, unit: str = "/s") -> str:
    if v is None:
        return "-"
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}{unit}"
    return f"{v:.3g}{unit}"


def table(rows: Sequence[Sequence[str]], header: Sequence[str], right: Iterable[int] = ()) -> str:
    """Aligned plain-text table; columns in ``right`` are right-aligned."""
    right = set(right)
    cols = list(zip(*([header] + [list(map(str, r)) for r in rows])))
    widths = [max(len(c) for c in col) for col in cols]

    def line(cells):
        return "  ".join(
            (c.rjust(w) if i in right else c.ljust(w)) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep] + [line(list(map(str, r))) for r in rows])


def _ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def detail_table(comp) -> str:
    o, r = comp.ours, comp.ref
    if o is None:
        return ""
    rows = []

    def add(name, fo, fr, fmt=fmt_num, show_ratio=True):
        vo, vr = fo(o), (fr(r) if r else None)
        if vo is None and vr is None:
            return  # no side has this figure (latencies of reads, syncs of a reopen)
        rows.append([name, fmt(vo), fmt(vr), fmt_ratio(_ratio(vo, vr)) if show_ratio else ""])

    add("entries/s", lambda x: x.entries_per_s, lambda x: x.entries_per_s)
    add(f"ops/s ({o.op_name}s / {r.op_name + 's' if r else '-'})", lambda x: x.ops_per_s, lambda x: x.ops_per_s)
    add("latency p50 (ms)", lambda x: x.p50_ms, lambda x: x.p50_ms)
    add("latency p99 (ms)", lambda x: x.p99_ms, lambda x: x.p99_ms)
    add("latency p99.9 (ms)", lambda x: x.p999_ms, lambda x: x.p999_ms)
    add("latency max (ms)", lambda x: x.max_ms, lambda x: x.max_ms)
    add("CPU user (us/op)", lambda x: x.per_op("cpu_user"), lambda x: x.per_op("cpu_user"))
    add("CPU sys (us/op)", lambda x: x.per_op("cpu_sys"), lambda x: x.per_op("cpu_sys"))
    add("CPU busy (cores)", lambda x: x.cpu_cores, lambda x: x.cpu_cores)
    add("RSS max (MiB)", lambda x: x.rss_mib, lambda x: x.rss_mib)
    add("write amp. (process I/O)", lambda x: x.write_amp, lambda x: x.write_amp)
    add("write amp. (device, shared)", lambda x: x.device_write_amp, lambda x: x.device_write_amp)
    add("fdatasync/s", lambda x: x.syncs_per_s, lambda x: x.syncs_per_s)
    add("fdatasync mean (ms)", lambda x: x.sync_ms, lambda x: x.sync_ms)
    add("entries per fdatasync", lambda x: x.entries_per_sync, lambda x: x.entries_per_sync)
    add("writes per fdatasync", lambda x: x.writes_per_sync, lambda x: x.writes_per_sync)
    add("others' CPU (cores, noise)", lambda x: x.others_cores, lambda x: x.others_cores, show_ratio=False)
    spread = lambda x: " ".join(fmt_rate(run.throughput, "") for run in x.runs)  # noqa: E731
    rows.append(["entries/s per run", spread(o), spread(r) if r else "-", ""])
    header = ["metric", o.label, r.label if r else "reference", "ours/ref"]
    return table(rows, header, right=(1, 2, 3))




def peers_table(comp) -> str:
    """One row per side (ours, reference, every peer store) of the same run."""
    o = comp.ours
    if o is None or not comp.peers:
        return ""
    rows = []
    for res in [o] + ([comp.ref] if comp.ref else []) + list(comp.peers):
        rows.append([
            res.label, fmt_num(res.entries_per_s),
            "" if res is o else fmt_ratio(_ratio(o.entries_per_s, res.entries_per_s)),
            fmt_num(res.p50_ms), fmt_num(res.p99_ms),
            fmt_num(_sum_opt(res.per_op("cpu_user"), res.per_op("cpu_sys"))),
            fmt_num(res.device_write_amp), fmt_num(res.syncs_per_s),
            fmt_num(res.others_cores),
            " ".join(fmt_rate(run.throughput, "") for run in res.runs),
        ])
    header = ["side (same run)", "entries/s", "ours/side", "p50 ms", "p99 ms", "CPU us/op",
              "dev. w-amp", "fsync/s", "others' CPU", "entries/s per run"]
    # leave out the columns no side has a figure for (latencies of reads, syncs of reads)
    keep = [k for k in range(len(header)) if k < 3 or any(r[k] not in ("-", "") for r in rows)]
    header = [header[k] for k in keep]
    rows = [[r[k] for k in keep] for r in rows]
    return table(rows, header, right=range(1, len(header) - 1))


def _sum_opt(a, b):
    return None if a is None or b is None else a + b


def fmt_actual(target, actual) -> str:
    return fmt_ratio(actual) if target.metric in ("ratio",) or target.metric.endswith("_ratio") \
        else fmt_num(actual)


def print_comparison(comp) -> None:
    print(f"\n== {comp.name}: {comp.title}")
    if comp.skipped:
        print(f"   skipped: {comp.skipped}")
    if comp.error:
        print(f"   ERROR: {comp.error}")
    if comp.ours:
        print(detail_table(comp))
    peers = peers_table(comp)
    if peers:
        print("peers, measured in the same rounds (ours/side > 1: ours is faster):")
        print(peers)
    for line in comp.details:
        print(line)
    for t, actual, met in comp.checks():
        verdict = "n/a" if met is None else ("met" if met else "NOT met")
        print(f"   target {t.describe():<14} actual {fmt_actual(t, actual):<10} {verdict}")
    for n in comp.notes:
        print(f"   note: {n}")


def summary_rows(comps: Sequence) -> list:
    rows = []
    for c in comps:
        targets = ", ".join(t.describe() for t in c.targets) or "-"
        verdicts = ", ".join("n/a" if met is None else ("yes" if met else "NO")
                             for _t, _actual, met in c.checks()) or "-"
        if c.skipped or c.error or not (c.ours or c.summary):
            why = c.skipped and f"skipped: {c.skipped}" or f"ERROR: {c.error}"
            rows.append([c.name, "-", "-", "-", targets, why[:60]])
            continue
        if c.summary:
            ours, ref = c.summary
        else:
            ours = _rate_p99(c.ours)
            ref = f"{_rate_p99(c.ref)} ({c.ref.label})" if c.ref else "-"
        rows.append([c.name, ours, ref, fmt_ratio(c.ratio), targets, verdicts])
        for p in c.peers:  # extra rows: ours against each peer store of the same run
            rows.append([f"  vs {p.label}", "(same)", _rate_p99(p),
                         fmt_ratio(_ratio(c.ours.entries_per_s, p.entries_per_s)), "(peer)", ""])
    return rows


def _rate_p99(res) -> str:
    p99 = res.p99_ms
    return fmt_rate(res.entries_per_s) + ("" if p99 is None else f" p99 {fmt_num(p99)} ms")


def noise_line(comps: Sequence) -> str:
    """How much CPU other processes took while we measured (the machine is shared)."""
    runs = [r for c in comps for res in [c.ours, c.ref] + list(c.peers) if res for r in res.runs]
    if not runs:
        return ""
    secs = sum(r.seconds for r in runs)
    avg = sum(r.others_cpu for r in runs) / secs if secs else 0.0
    worst = max(r.others_cpu / r.seconds for r in runs if r.seconds)
    line = (f"other processes used {avg:.2f} of {os.cpu_count()} CPUs on average while we measured "
            f"(worst run {worst:.2f})")
    if avg > 0.2 or worst > 0.5:
        line += ": the machine was busy, ratios are noisy (CPU-bound sides suffer most)"
    return line


def summary_table(comps: Sequence) -> str:
    return table(summary_rows(comps), ["workload", "ours", "reference", "ratio", "target", "met?"],
                 right=(3,))


# --------------------------------------------------------------------------
# Output: JSON (charts: plots.py)
# --------------------------------------------------------------------------



def save_json(comps: Sequence, filename: str, env: dict) -> str:
    os.makedirs(OUT_DIR, exist_ok=True)
    env = dict(env)
    env["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    path = os.path.join(OUT_DIR, filename)
    with open(path, "w") as f:
        json.dump({"environment": env, "benchmarks": [c.to_dict() for c in comps]}, f, indent=1,
                  default=str)
    return path
