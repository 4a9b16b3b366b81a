"""The coordinator's side of the cluster: node processes and bounded waits.

:class:`ChildHandle` starts one node (node.py) as a child process and speaks
its line protocol (requests with replies, events); every wait is bounded and
ends in a :class:`DemoError` naming the node.  Also used by
perf/bench_pysyncobj.py (its own child program) and the tests (``free_ports``).
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any, TypeVar

from .node import Msg

#: run as ``python EXAMPLE_DIR --child CONFIG NODE`` by default
EXAMPLE_DIR = os.path.dirname(os.path.abspath(__file__))

T = TypeVar("T")


class DemoError(Exception):
    """A node that is gone, does not answer, or a wait that timed out."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (bound to port 0 together)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class ChildHandle:
    def __init__(self, node: int, cfg_path: str, log_path: str,
                 program: list[str] | None = None) -> None:
        """Start node ``node`` (node.py) as a child process; its standard
        error goes to ``log_path``.  ``program``: the child's command before
        ``--child CONFIG NODE`` (default: this example, run as a directory)."""
        self.node = node
        self.log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed by kill()
        program = program or [sys.executable, EXAMPLE_DIR]
        self.proc = subprocess.Popen(
            [*program, "--child", cfg_path, str(node)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.started = time.monotonic()
        self.events: queue.Queue[Msg] = queue.Queue()
        self.replies: queue.Queue[Msg] = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            (self.replies if "id" in msg else self.events).put(msg)
        self.events.put({"event": "eof"})

    def request(self, cmd: str, timeout: float = 15.0, **kw: Any) -> Msg:
        self.next_id += 1
        kw.update(cmd=cmd, id=self.next_id)
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write((json.dumps(kw) + "\n").encode())
            self.proc.stdin.flush()
        except OSError as exc:
            raise DemoError(f"node {self.node} is gone (exit {self.proc.poll()})") from exc
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DemoError(f"node {self.node}: no answer to {cmd!r} in {timeout:.0f} s")
            try:
                msg = self.replies.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise DemoError(f"node {self.node} exited ({self.proc.returncode}) "
                                    f"during {cmd!r}") from None
                continue
            if msg.get("id") != self.next_id:
                continue
            if "error" in msg:
                raise DemoError(f"node {self.node}: {msg['error']}")
            return msg

    def wait_event(self, name: str, timeout: float) -> Msg:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DemoError(f"node {self.node}: no {name!r} event in {timeout:.0f} s")
            try:
                msg = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if msg.get("event") == name:
                return msg
            if msg.get("event") == "eof":
                raise DemoError(f"node {self.node} exited ({self.proc.wait(5)}) before {name!r}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        self.log.close()

    def stop(self, timeout: float = 20.0) -> None:
        """Graceful exit; SIGKILL if it does not happen in time."""
        try:
            if self.proc.poll() is None:
                self.request("exit", timeout=timeout)
                self.proc.wait(5)
        except (DemoError, subprocess.TimeoutExpired):
            pass
        self.kill()


def wait_until(what: str, pred: Callable[[], T | None], timeout: float,
               interval: float = 0.2) -> T:
    """``pred()``'s first true result, polled every ``interval`` s; DemoError
    naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = pred()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
