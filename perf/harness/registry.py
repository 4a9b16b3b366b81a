"""The registry: every benchmark registers itself with @benchmark (its name,
title, targets); single benchmarks add their own command-line options."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Optional

if TYPE_CHECKING:
    from .config import Config
    from .results import Comparison


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
