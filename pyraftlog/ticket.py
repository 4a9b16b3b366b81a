"""Tickets: how a writer learns that its batch is durable.

`Ticket.wait` blocks inside C (GIL released) on the flusher's condition
variable.  Callbacks and `await` go through one Notifier thread per engine,
started on first use, that sleeps in `prl_log_wait_change` and, each time the
durable lsn moves, completes every registered ticket it covers, in lsn order:
no thread per waiter and no polling.  asyncio futures are resolved with one
`call_soon_threadsafe` per event loop per wake-up.

Once the log is poisoned nothing becomes durable any more: the notifier then
completes every ticket past the durable point as failed, as soon as it is
registered.  After `close()` there is no notifier: a callback runs at once in
the caller's thread and `await` returns (or raises) at once."""
from __future__ import annotations

import asyncio
import errno
import heapq
import itertools
import os
import threading
from typing import Any, Callable, Dict, Generator, List, Optional, Tuple

from ._native import ffi, lib, raise_status
from .errors import FORKED, ClosedError, PoisonedError, RaftLogError
from .logger import fields, log

_NS = 1_000_000_000
_U64_MAX = (1 << 64) - 1


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
        ClosedError), or TimeoutError if `timeout` seconds pass first (the
        ticket stays pending).  Note: TimeoutError is an OSError, like
        PoisonedError; catch PoisonedError itself to handle a failed disk."""
        self._core.check_fork()
        ns = -1 if timeout is None else max(0, int(timeout * _NS))
        rc = lib.prl_log_wait(self._core.handle, self.lsn, ns)
        if rc:
            self._core.raise_for(rc, "wait")

    def done(self) -> bool:
        """True once durable or failed."""
        self._core.check_fork()
        return bool(lib.prl_log_wait(self._core.handle, self.lsn, 0) != lib.PRL_E_TIMEOUT)

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
        completes (durable or failed).  Exceptions from fn are logged.  On a
        closed engine fn runs at once, in the calling thread."""
        n = self._core.notifier()
        if n is None:
            _call(fn, self)
        else:
            n.add(self.lsn, (fn, self))

    def __await__(self) -> Generator[Any, None, None]:
        n = self._core.notifier()
        if n is not None:
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            n.add(self.lsn, (loop, fut))
            yield from fut.__await__()
        self.wait(0)  # raises the failure, if any


def _call(fn: Callable[[Ticket], Any], ticket: Ticket) -> None:
    try:
        fn(ticket)
    except Exception:
        path = ticket._core.path
        log.exception("%s: exception in a ticket callback (lsn %d)", path, ticket.lsn,
                      extra=fields(path, lsn=ticket.lsn))


class Core:
    """The C handle plus what tickets need from the engine."""

    def __init__(self, handle: Any, path: str = ""):
        self.handle = handle
        self.path = path  # the log directory, for log messages
        self._poison_logged = False
        self.closed = False
        self.forked = False
        self._notifier: Optional[Notifier] = None
        self._lock = threading.Lock()

    def check_fork(self) -> None:
        if self.forked:
            raise RaftLogError(FORKED)

    def raise_for(self, rc: int, what: str) -> None:
        err = 0
        if rc == lib.PRL_E_POISONED:
            err = self.poison_errno()
            self.note_poison(err)
        raise_status(rc, what, err)

    def poison_errno(self) -> int:
        """errno of the failure that poisoned the log."""
        return int(lib.prl_log_poison_errno(self.handle)) or errno.EIO

    def note_poison(self, err: int) -> None:
        """Logs the poisoning once, at ERROR, by whichever thread sees it
        first (the C flusher cannot log): writes are refused from now on and
        an operator must look at the disk and reopen."""
        if self._poison_logged:
            return
        self._poison_logged = True
        log.error("%s: log poisoned by a failed write or sync (errno %d, %s): every pending "
                  "and later write fails with PoisonedError; reads still work; reopen to "
                  "recover what was durable", self.path, err, os.strerror(err),
                  extra=fields(self.path, errno=err))

    def notifier(self) -> Optional["Notifier"]:
        """The notifier thread, started on first use; None once closed."""
        self.check_fork()
        with self._lock:
            if self.closed:
                return None
            if self._notifier is None:
                self._notifier = Notifier(self.handle, self.note_poison)
            return self._notifier

    def stop(self) -> None:
        """After the log is closed: complete what is registered, end the thread."""
        with self._lock:
            self.closed = True
            n, self._notifier = self._notifier, None
        if n is not None:
            n.stop()


class Notifier:
    """The one thread that completes callbacks and asyncio futures."""

    def __init__(self, handle: Any, on_poison: Callable[[int], None]):
        self._h = handle
        self._on_poison = on_poison
        self._mu = threading.Condition(threading.Lock())
        self._heap: List[Tuple[int, int, Any]] = []
        self._seq = itertools.count()
        self._durable = 0
        self._failed = False  # poisoned: durable_lsn will not move again
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="pyraftlog-notifier", daemon=True)
        self._thread.start()

    def add(self, lsn: int, item: Any) -> None:
        with self._mu:
            heapq.heappush(self._heap, (lsn, next(self._seq), item))
            due = lsn <= self._durable or self._failed or self._stopped
            self._mu.notify()
        if due:
            # a ticket that is already done: wake the thread (it passes the
            # kick count it last saw, so this cannot be lost)
            lib.prl_log_kick(self._h)

    def stop(self) -> None:
        with self._mu:
            self._stopped = True
            self._mu.notify()
        lib.prl_log_kick(self._h)
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        durable = ffi.new("uint64_t *")
        kicks = ffi.new("uint64_t *")
        known, known_kicks = 0, _U64_MAX
        while True:
            if not self._failed:
                rc = lib.prl_log_wait_change(self._h, known, known_kicks, -1, durable, kicks)
                known, known_kicks = int(durable[0]), int(kicks[0])
            if not self._failed and rc == lib.PRL_E_POISONED:
                self._on_poison(int(lib.prl_log_poison_errno(self._h)))  # (outside _mu: a
                # handler may be slow)
            with self._mu:
                self._durable = known
                if not self._failed and rc and rc != lib.PRL_E_TIMEOUT:
                    self._failed = True  # poisoned or closed: nothing more becomes durable
                if self._failed and not self._heap and not self._stopped:
                    self._mu.wait()  # only new registrations (or stop) matter now
                done = self._failed or self._stopped
                ready = []
                while self._heap and (self._heap[0][0] <= known or done):
                    ready.append(heapq.heappop(self._heap))
                finished = self._stopped and not self._heap
            self._complete(ready)
            if finished:
                return

    def _complete(self, ready: List[Tuple[int, int, Any]]) -> None:
        by_loop: Dict[Any, List[Any]] = {}
        for _, _, item in ready:
            if isinstance(item[0], asyncio.AbstractEventLoop):
                by_loop.setdefault(item[0], []).append(item[1])
            else:
                _call(item[0], item[1])
        for loop, futs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, futs)
            except RuntimeError:  # the loop was closed meanwhile
                pass


def _resolve(futs: List[Any]) -> None:
    for f in futs:
        if not f.done():
            f.set_result(None)
