"""A run's configuration: budgets, work directories, verbosity."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field

# Budgets.  Full: ~15 s measured per side per workload (3 runs of 5 s);
# the whole suite (peers, steady state, reads, reopen, memory) ~5 minutes.
# Quick: 2 runs of 1 s per side; the suite takes ~25 s.
DEFAULT_SECONDS, DEFAULT_RUNS, DEFAULT_WARMUP = 15.0, 3, 1.0
QUICK_SECONDS, QUICK_RUNS, QUICK_WARMUP = 2.0, 2, 0.3


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
