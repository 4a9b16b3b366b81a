"""One node of the cluster: a child process of the coordinator.

It opens ONE ``pyraftlog.Engine``, installs it for PySyncObj's journals
(``pyraftlog.contrib.pysyncobj.install``) and runs one ``SyncObj`` with a
:class:`~pysyncobj_demo.store.Store` per group.  The coordinator speaks to it
over its standard input and output, one JSON object per line: requests
``{"cmd", "id", ...}`` (status, heads, verify, stats, load, exit) get a reply
with the same ``id``; events (``ready``, ``load_done``) carry ``"event"``.
It dies with its parent: standard input closed, or SIGKILL from the kernel
(``PR_SET_PDEATHSIG``).

perf/bench_pysyncobj.py runs the same node on other journals (it overrides
:meth:`Child.open_storage`, :meth:`Child.journal_file` and :meth:`Child.stats`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Any

import pyraftlog
from pyraftlog.contrib.pysyncobj import install

from .load_generator import start_load
from .store import Store
from .verifier import check_acknowledged

#: a request, a reply or an event: one JSON object per line
Msg = dict[str, Any]


def _die_with_parent() -> None:
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux: stdin EOF still works
        return


class Child:
    def __init__(self, cfg: Msg, node: int) -> None:
        self.cfg = cfg
        self.node = node
        self.out_lock = threading.Lock()
        self.engine: pyraftlog.Engine | None = None
        self.objs: list[Any] = []
        self.stores: list[Store] = []
        self.load_thread: threading.Thread | None = None

    def send(self, msg: Msg) -> None:
        line = json.dumps(msg) + "\n"
        with self.out_lock:
            sys.stdout.write(line)
            sys.stdout.flush()

    def open_storage(self) -> int:
        """Open this node's engine and install it for the journals; returns
        the number of batches recovered.  (perf/bench_pysyncobj.py overrides
        this and :meth:`journal_file` to run the same cluster on other journals.)"""
        cfg = self.cfg
        self.engine = pyraftlog.open(os.path.join(self.node_dir, "log"), sync=cfg["sync"],
                                     segment_size=cfg["segment_size"],
                                     min_sync_interval=cfg.get("min_sync_interval", 0.0))
        recovered = int(self.engine.stats().get("recovered_batches", 0))
        install(self.engine)
        port = cfg.get("metrics_port")
        if port:
            self.serve_metrics(int(port) + self.node)
        return recovered

    def serve_metrics(self, port: int) -> Any:
        """Expose this node's engine on http://127.0.0.1:port/metrics (Prometheus);
        returns what ``prometheus_client.start_http_server`` returns."""
        from prometheus_client import CollectorRegistry, start_http_server

        from pyraftlog.contrib.prometheus import EngineCollector

        assert self.engine is not None
        registry = CollectorRegistry()
        registry.register(EngineCollector(self.engine, labels={"node": str(self.node)}))
        return start_http_server(port, addr="127.0.0.1", registry=registry)

    def journal_file(self, g: int) -> str:
        return f"group-{g}"

    @property
    def node_dir(self) -> str:
        return os.path.join(self.cfg["dir"], f"node{self.node}")

    def start(self) -> None:
        from pysyncobj import SyncObj, SyncObjConf  # type: ignore[import-untyped]

        cfg, node = self.cfg, self.node
        ndir = self.node_dir
        os.makedirs(ndir, exist_ok=True)
        t0 = time.monotonic()
        recovered = self.open_storage()
        open_s = time.monotonic() - t0
        ports = cfg["ports"]
        for g in range(cfg["groups"]):
            me = f"127.0.0.1:{ports[node][g]}"
            partners = [f"127.0.0.1:{ports[n][g]}" for n in range(cfg["nodes"]) if n != node]
            conf = SyncObjConf(
                journalFile=self.journal_file(g),
                fullDumpFile=os.path.join(ndir, f"group-{g}.dump"),
                # no log compaction: a restarted node rebuilds from the log alone
                logCompactionMinEntries=10 ** 9,
                logCompactionMinTime=10 ** 9,
                raftMinTimeout=cfg["raft_min_timeout"],
                raftMaxTimeout=cfg["raft_min_timeout"] * 2.5,
                appendEntriesPeriod=0.05,
                connectionRetryTime=0.5,
                connectionTimeout=2.0,
                leaderFallbackTimeout=5.0,
                commandsQueueSize=10000,
            )
            store = Store()
            self.stores.append(store)
            self.objs.append(SyncObj(me, partners, conf=conf, consumers=[store]))
        self.send({"event": "ready", "open_s": open_s,
                   "create_s": time.monotonic() - t0, "recovered_batches": recovered})

    # ------------------------------------------------------------- requests

    def status(self) -> Msg:
        return {
            "leaders": sum(1 for o in self.objs if o._isLeader()),
            "with_leader": sum(1 for o in self.objs if o._getLeader() is not None),
            "ready": sum(1 for o in self.objs if o.isReady()),
            "groups": len(self.objs),
        }

    def heads(self) -> Msg:
        out = []
        for s in self.stores:
            count, chain = s.head
            out.append([count, chain.hex()])
        return {"heads": out, "applied": [o.raftLastApplied for o in self.objs]}

    def verify(self, ack_files: list[str]) -> Msg:
        return check_acknowledged(self.stores, ack_files)

    def stats(self) -> Msg:
        assert self.engine is not None
        st = self.engine.stats()
        return {"stats": {k: v for k, v in st.items() if isinstance(v, (int, float))}}

    def load(self, duration: float, window: int, ack_path: str,
             latencies: bool = False) -> Msg:
        """Drive writes into every group (load_generator.start_load); the
        thread sends ``load_done`` when it is over."""
        self.load_thread = start_load(self.stores, self.node, self.send, duration, window,
                                      ack_path, latencies)
        return {"started": True}

    def shutdown(self) -> None:
        for o in self.objs:
            o.destroy()
        deadline = time.monotonic() + 10
        for o in self.objs:
            while o.tick_thread_alive() and time.monotonic() < deadline:
                time.sleep(0.01)
        if self.engine is not None:
            self.engine.close()

    def serve(self) -> int:
        for line in sys.stdin:
            msg = json.loads(line)
            cmd, rid = msg["cmd"], msg.get("id")
            try:
                if cmd == "status":
                    reply = self.status()
                elif cmd == "heads":
                    reply = self.heads()
                elif cmd == "verify":
                    reply = self.verify(msg["ack_files"])
                elif cmd == "stats":
                    reply = self.stats()
                elif cmd == "load":
                    reply = self.load(msg["duration"], msg["window"], msg["ack_path"],
                                      msg.get("latencies", False))
                elif cmd == "exit":
                    self.shutdown()
                    self.send({"id": rid, "bye": True})
                    return 0
                else:
                    reply = {"error": f"unknown command {cmd!r}"}
            except Exception as exc:  # noqa: BLE001 - reported to the coordinator
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            reply["id"] = rid
            self.send(reply)
        return 3   # stdin closed: the coordinator is gone


def child_main(cfg_path: str, node: int) -> int:
    import logging
    _die_with_parent()
    logging.basicConfig(level=logging.WARNING,
                        format=f"%(asctime)s node{node} %(name)s %(levelname)s %(message)s")
    with open(cfg_path) as f:
        cfg = json.load(f)
    child = Child(cfg, node)
    child.start()
    code = child.serve()
    sys.stdout.flush()
    os._exit(code)
