"""The load each node drives: writes into every group, a window of commands
in flight per group, each acknowledged key appended to a file.

The keys are ``n<node>-<seq>``, the value of a key is ``value_for(key)``, so
any node can check any acknowledged write (verifier.py).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .store import Store, value_for


def start_load(stores: list[Store], node: int, send: Callable[[dict[str, Any]], None],
               duration: float, window: int, ack_path: str,
               latencies: bool = False) -> threading.Thread:
    """Start a thread driving writes into every store for ``duration`` s;
    acknowledged keys go to ``ack_path``.

    When done it sends ``load_done`` with the counts; ``in_window`` counts
    the commands acknowledged before the deadline (the throughput measured by
    perf/bench_pysyncobj.py) and, with ``latencies``, ``latencies_ms`` lists
    their send-to-acknowledgement times.
    """
    from pysyncobj import FAIL_REASON  # type: ignore[import-untyped]

    lock = threading.Lock()
    inflight: list[dict[str, float]] = [{} for _ in stores]   # key -> send time
    acked: list[str] = []
    lats: list[float] = []
    counters = {"acked": 0, "failed": 0, "expired": 0, "in_window": 0}
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    deadline = time.monotonic() + duration

    def make_cb(g: int, key: str) -> Callable[[Any, int], None]:
        def cb(result: Any, err: int) -> None:
            now = time.monotonic()
            with lock:
                sent = inflight[g].pop(key, None)
                if err == FAIL_REASON.SUCCESS:
                    acked.append(f"{g} {key}\n")
                    counters["acked"] += 1
                    if now <= deadline:
                        counters["in_window"] += 1
                        if latencies and sent is not None:
                            lats.append(round((now - sent) * 1e3, 3))
                else:
                    counters["failed"] += 1
        return cb

    def drain() -> None:
        with lock:
            data = "".join(acked)
            acked.clear()
        if data:
            os.write(fd, data.encode())

    def run() -> None:
        seq = 0
        start = deadline - duration
        last_flush = start
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                for g, store in enumerate(stores):
                    with lock:
                        fl = inflight[g]
                        for key, sent in list(fl.items()):
                            if now - sent > 5.0:       # lost callback (leader died)
                                del fl[key]
                                counters["expired"] += 1
                        free = window - len(fl)
                    for _ in range(free):
                        seq += 1
                        key = f"n{node}-{seq}"
                        with lock:
                            inflight[g][key] = now
                        store.set(key, value_for(key), callback=make_cb(g, key))
                if now - last_flush > 0.05:
                    drain()
                    last_flush = now
                time.sleep(0.005)
            # let the last commands finish (bounded)
            end = time.monotonic() + 5.0
            while time.monotonic() < end:
                with lock:
                    if not any(inflight):
                        break
                time.sleep(0.02)
            drain()
        finally:
            os.close(fd)
        msg: dict[str, Any] = {"event": "load_done", "seconds": time.monotonic() - start,
                               "window_seconds": duration}
        with lock:
            msg.update(counters)
            if latencies:
                msg["latencies_ms"] = list(lats)
            msg["inflight_left"] = sum(len(f) for f in inflight)
        send(msg)

    thread = threading.Thread(target=run, name="load", daemon=True)
    thread.start()
    return thread
