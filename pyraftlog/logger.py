"""The `pyraftlog` logger: what the library reports, at which level, and how.

A library does not configure logging (the Python logging HOWTO, "Configuring
Logging for a Library"): the logger gets a NullHandler and nothing else, so
an application that configured nothing sees nothing (not even through
logging's last-resort handler, which would print WARNINGs to stderr), and an
application that did configure logging decides levels and handlers itself.

Levels follow what an operator must do:

* DEBUG, INFO: routine work (recovery summaries, purge summaries);
* WARNING: something deserves a look but the log carries on (a torn tail
  cut, invalid batches skipped by `tolerate_any`, rotations that found no
  prepared segment, a group too large to rewrite);
* ERROR: the log is poisoned and takes no more writes.

Every message names the log directory, and its figures are also in the
record as `pyraftlog_*` attributes (`extra=`), so that a structured (JSON)
handler needs no parsing: `pyraftlog_dir` always, then e.g.
`pyraftlog_bytes`, `pyraftlog_batches`.  Repeated events are summed up
(`Summary`), never logged once per batch."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, Optional

log = logging.getLogger("pyraftlog")
log.addHandler(logging.NullHandler())

#: seconds between two summaries of a repeated event (purges, prepare stalls)
SUMMARY_INTERVAL = 60.0


def fields(path: str, **figures: Any) -> Dict[str, Any]:
    """The `extra=` of a record about the log in `path`."""
    out = {"pyraftlog_dir": path}
    for k, v in figures.items():
        out["pyraftlog_" + k] = v
    return out


class Summary:
    """Sums counts of a repeated event and says when to log them: at the
    first event, then at most once per `interval` seconds (what happened
    meanwhile is in the next summary, or in `flush` when the engine closes).
    Thread-safe."""

    def __init__(self, interval: float = SUMMARY_INTERVAL):
        self.interval = interval
        self._mu = threading.Lock()
        self._pending: Dict[str, int] = {}
        self._last: Optional[float] = None  # when the last summary was taken

    def add(self, **counts: int) -> Optional[Dict[str, int]]:
        """Adds counts; returns the totals to log now, or None."""
        now = time.monotonic()
        with self._mu:
            for k, v in counts.items():
                self._pending[k] = self._pending.get(k, 0) + v
            if self._last is not None and now - self._last < self.interval:
                return None
            self._last = now
            out, self._pending = self._pending, {}
            return out

    def flush(self) -> Optional[Dict[str, int]]:
        """What was added since the last summary, or None."""
        with self._mu:
            out, self._pending = self._pending, {}
            return out or None
