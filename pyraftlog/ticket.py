"""Tickets: how a writer learns that its batch is durable.

`Ticket.wait` blocks inside C (GIL released) on the flusher's condition
variable.  Callbacks and `await` go through one Notifier thread per engine,
started on first use, that sleeps in `prl_log_wait_change` and, each time the
durable lsn moves, completes every registered ticket it covers, in lsn order:
no thread per waiter and no polling.  asyncio futures are resolved with one
`call_soon_threadsafe` per event loop per wake-up."""
from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
from typing import Any, Callable, Dict, Generator, List, Optional, Tuple

from ._native import ffi, lib, raise_status
from .errors import ClosedError, PoisonedError

log = logging.getLogger("pyraftlog")

_NS = 1_000_000_000


class Ticket:
    """The promise of one write: completes once its batch is durable, or fails
    with the write's error.  Tickets of one engine complete in write order."""

    __slots__ = ("lsn", "_core")

    def __init__(self, core: "Core", lsn: int):
        self._core = core
        self.lsn = lsn

    def __repr__(self) -> str:
        return f"<Ticket lsn={self.lsn} {'done' if self.done() else 'pending'}>"

    def wait(self, timeout: Optional[float] = None) -> None:
        """Block until durable; raise the write's error (PoisonedError,
        ClosedError), or TimeoutError if `timeout` seconds pass first."""
        ns = -1 if timeout is None else max(0, int(timeout * _NS))
        rc = lib.prl_log_wait(self._core.handle, self.lsn, ns)
        if rc:
            self._core.raise_for(rc, "wait")

    def done(self) -> bool:
        """True once durable or failed."""
        return lib.prl_log_wait(self._core.handle, self.lsn, 0) != lib.PRL_E_TIMEOUT

    def exception(self) -> Optional[BaseException]:
        """The error the ticket failed with, or None (durable, or pending)."""
        try:
            self.wait(0)
        except TimeoutError:
            return None
        except (PoisonedError, ClosedError) as exc:
            return exc
        return None

    def add_done_callback(self, fn: Callable[["Ticket"], Any]) -> None:
        """Call fn(ticket) once, on the notifier thread, when the ticket
        completes (durable or failed).  Exceptions from fn are logged."""
        self._core.notifier().add(self.lsn, (fn, self))

    def __await__(self) -> Generator[Any, None, None]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._core.notifier().add(self.lsn, (loop, fut))
        yield from fut.__await__()
        self.wait(0)  # raises the failure, if any


class Core:
    """The C handle plus what tickets need from the engine."""

    def __init__(self, handle: Any):
        self.handle = handle
        self._notifier: Optional[Notifier] = None
        self._lock = threading.Lock()

    def raise_for(self, rc: int, what: str) -> None:
        if -1000 < rc < 0:  # -errno: the log is poisoned (PRL_E_* codes are below -1000)
            raise PoisonedError(-rc)
        raise_status(rc, what)

    def notifier(self) -> "Notifier":
        n = self._notifier
        if n is None:
            with self._lock:
                if self._notifier is None:
                    self._notifier = Notifier(self.handle)
                n = self._notifier
        return n

    def stop(self) -> None:
        with self._lock:
            n, self._notifier = self._notifier, None
        if n is not None:
            n.stop()


class Notifier:
    """The one thread that completes callbacks and asyncio futures."""

    def __init__(self, handle: Any):
        self._h = handle
        self._mu = threading.Lock()
        self._heap: List[Tuple[int, int, Any]] = []
        self._seq = itertools.count()
        self._durable = 0
        self._failed: Optional[int] = None  # status the log failed with
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="pyraftlog-notifier", daemon=True)
        self._thread.start()

    def add(self, lsn: int, item: Any) -> None:
        with self._mu:
            heapq.heappush(self._heap, (lsn, next(self._seq), item))
            due = lsn <= self._durable or self._failed is not None or self._stopped
        if due:
            lib.prl_log_kick(self._h)  # wake the thread for a ticket that is already done

    def stop(self) -> None:
        with self._mu:
            self._stopped = True
        lib.prl_log_kick(self._h)
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        durable = ffi.new("uint64_t *")
        known = 0
        while True:
            rc = lib.prl_log_wait_change(self._h, known, -1, durable)
            known = int(durable[0])
            with self._mu:
                self._durable = known
                if rc and rc != lib.PRL_E_TIMEOUT:
                    self._failed = rc
                final = self._failed is not None or self._stopped
                ready = []
                while self._heap and (self._heap[0][0] <= known or final):
                    ready.append(heapq.heappop(self._heap))
            self._complete(ready)
            if final:
                with self._mu:
                    if not self._heap:
                        return

    def _complete(self, ready: List[Tuple[int, int, Any]]) -> None:
        by_loop: Dict[Any, List[Any]] = {}
        for _, _, item in ready:
            if len(item) == 2 and isinstance(item[0], asyncio.AbstractEventLoop):
                by_loop.setdefault(item[0], []).append(item[1])
                continue
            fn, ticket = item
            try:
                fn(ticket)
            except Exception:
                log.exception("pyraftlog: exception in a ticket callback")
        for loop, futs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, futs)
            except RuntimeError:  # the loop was closed meanwhile
                pass


def _resolve(futs: List[Any]) -> None:
    for f in futs:
        if not f.done():
            f.set_result(None)
