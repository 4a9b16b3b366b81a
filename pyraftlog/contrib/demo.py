"""PySyncObj on pyraftlog: a 3-process cluster, a SIGKILL, a restart, a check.

Run ``python -m pyraftlog.contrib.demo`` (``--help`` for the knobs).  The
coordinator (this process) starts one child process per node on 127.0.0.1.
Each child opens ONE ``pyraftlog.Engine`` and runs ``--groups`` PySyncObj
groups in it (one ``SyncObj`` per group, each with a replicated key-value
store), all journals sharing that engine's log.  Then:

1. every child drives writes into every group for ``--duration`` seconds
   (``--window`` commands in flight per group) and records each write that
   PySyncObj acknowledged in an append-only file;
2. after ``--kill-at`` seconds the node that leads the most groups is killed
   with SIGKILL and started again at once: it rebuilds every group from its
   pyraftlog log (PySyncObj's log compaction is off, so there is no dump
   file), then catches up with the others;
3. when the load is over, the coordinator waits until every group's state is
   identical on every node, checks that every acknowledged write is present
   with its value on every node, and prints a summary.

Exit status: 0 when every group is consistent, 1 on any inconsistency or
timeout, 2 on a usage error.  Every wait is bounded, and the children are
killed on every exit path of the coordinator (and die with it: they watch
their standard input and ask the kernel for SIGKILL when their parent dies).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pyraftlog

try:  # the demo needs pysyncobj; the Store class below is also used by the tests
    from pysyncobj import (  # type: ignore[import-untyped]
        FAIL_REASON,
        SyncObj,
        SyncObjConf,
        SyncObjConsumer,
        replicated,
    )
except ImportError:  # pragma: no cover - reported by main()
    SyncObj = None
    SyncObjConsumer = object

    def replicated(func: Any) -> Any:
        return func

CHAIN0 = b"\0" * 16
T = TypeVar("T")
Msg = dict[str, Any]


def value_for(key: str) -> bytes:
    """The value the demo writes under ``key`` (so any node can check it)."""
    return hashlib.blake2b(key.encode(), digest_size=8).digest()


class Store(SyncObjConsumer):  # type: ignore[misc]
    """A replicated key-value store with an order-sensitive digest.

    ``head`` is ``(number of writes applied, blake2b chain over them)``,
    replaced as one object so other threads can read it safely: two replicas
    with equal heads applied the same writes in the same order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.kv: dict[str, bytes] = {}
        self.head: tuple[int, bytes] = (0, CHAIN0)

    @replicated  # type: ignore[untyped-decorator]
    def set(self, key: str, value: bytes) -> int:
        self.kv[key] = value
        count, chain = self.head
        chain = hashlib.blake2b(chain + key.encode() + b"=" + value, digest_size=16).digest()
        self.head = (count + 1, chain)
        return count + 1

    def get(self, key: str) -> bytes | None:
        return self.kv.get(key)


# ====================================================================== child

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
        import pyraftlog
        from pyraftlog.contrib.pysyncobj import install

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
        checked = missing = wrong = 0
        examples: list[list[Any]] = []
        for path in ack_files:
            try:
                with open(path) as f:
                    lines = f.read().split("\n")
            except FileNotFoundError:
                continue
            for line in lines[:-1]:      # the last one may be torn by SIGKILL
                g, key = line.split(" ", 1)
                got = self.stores[int(g)].get(key)
                checked += 1
                if got is None:
                    missing += 1
                elif got != value_for(key):
                    wrong += 1
                else:
                    continue
                if len(examples) < 5:
                    examples.append([int(g), key])
        return {"checked": checked, "missing": missing, "wrong": wrong, "examples": examples}

    def stats(self) -> Msg:
        assert self.engine is not None
        st = self.engine.stats()
        return {"stats": {k: v for k, v in st.items() if isinstance(v, (int, float))}}

    def load(self, duration: float, window: int, ack_path: str,
             latencies: bool = False) -> Msg:
        """Drive writes into every group; acknowledged keys go to ack_path.

        ``load_done`` reports the counts; ``in_window`` counts the commands
        acknowledged before the deadline (the throughput measured by
        perf/bench_pysyncobj.py) and, with ``latencies``, ``latencies_ms``
        lists their send-to-acknowledgement times.
        """
        lock = threading.Lock()
        inflight: list[dict[str, float]] = [{} for _ in self.stores]   # key -> send time
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
                    for g, store in enumerate(self.stores):
                        with lock:
                            fl = inflight[g]
                            for key, sent in list(fl.items()):
                                if now - sent > 5.0:       # lost callback (leader died)
                                    del fl[key]
                                    counters["expired"] += 1
                            free = window - len(fl)
                        for _ in range(free):
                            seq += 1
                            key = f"n{self.node}-{seq}"
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
            msg: Msg = {"event": "load_done", "seconds": time.monotonic() - start,
                        "window_seconds": duration}
            with lock:
                msg.update(counters)
                if latencies:
                    msg["latencies_ms"] = list(lats)
                msg["inflight_left"] = sum(len(f) for f in inflight)
            self.send(msg)

        self.load_thread = threading.Thread(target=run, name="load", daemon=True)
        self.load_thread.start()
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


# ================================================================ coordinator

class DemoError(Exception):
    pass


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
        """``program``: the child's command before ``--child CONFIG NODE``
        (default: this module)."""
        self.node = node
        self.log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed by kill()
        program = program or [sys.executable, "-m", "pyraftlog.contrib.demo"]
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
    deadline = time.monotonic() + timeout
    while True:
        result = pred()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def run_demo(args: argparse.Namespace, workdir: str) -> int:
    nodes, groups = args.nodes, args.groups
    ports = free_ports(nodes * groups)
    cfg = {
        "dir": workdir, "nodes": nodes, "groups": groups, "sync": not args.no_sync,
        "ports": [ports[n * groups:(n + 1) * groups] for n in range(nodes)],
        "raft_min_timeout": args.raft_timeout,
        "segment_size": int(args.segment_mib * (1 << 20)),
        "metrics_port": args.metrics_port,
    }
    cfg_path = os.path.join(workdir, "cluster.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)

    def say(text: str) -> None:
        if not args.quiet:
            print(text, flush=True)

    children: dict[int, ChildHandle] = {}

    def spawn(n: int) -> ChildHandle:
        return ChildHandle(n, cfg_path, os.path.join(workdir, f"node{n}.log"))

    try:
        t_start = time.monotonic()
        for n in range(nodes):
            children[n] = spawn(n)
        for n in range(nodes):
            children[n].wait_event("ready", timeout=60)
        say(f"started {nodes} processes x {groups} groups in {time.monotonic() - t_start:.1f} s")
        if args.metrics_port:
            say("Prometheus metrics: " + ", ".join(
                f"node {n} http://127.0.0.1:{args.metrics_port + n}/metrics" for n in range(nodes)))

        def all_have_leaders() -> list[Msg] | None:
            sts = [children[n].request("status") for n in range(nodes)]
            if all(s["with_leader"] == groups for s in sts) and \
                    sum(s["leaders"] for s in sts) >= groups:
                return sts
            return None
        sts = wait_until("a leader in every group", all_have_leaders, timeout=60)
        say(f"every group has a leader ({time.monotonic() - t_start:.1f} s); "
            f"leaders per node: {[s['leaders'] for s in sts]}")

        stats0 = {n: children[n].request("stats")["stats"] for n in range(nodes)}
        ack_files = [os.path.join(workdir, f"acks-node{n}.txt") for n in range(nodes)]
        for n in range(nodes):
            children[n].request("load", duration=args.duration, window=args.window,
                                ack_path=ack_files[n])
        t_load = time.monotonic()
        say(f"load running for {args.duration:.0f} s (window {args.window} per group per node)")

        # ---- SIGKILL the node that leads the most groups, restart it
        time.sleep(max(0.0, t_load + args.kill_at - time.monotonic()))
        status = {n: children[n].request("status") for n in range(nodes)}
        victim = max(range(nodes), key=lambda n: int(status[n]["leaders"]))
        killed_leaders = status[victim]["leaders"]
        children[victim].kill()
        t_kill = time.monotonic()
        say(f"t={t_kill - t_load:.1f}s SIGKILL node {victim} (leader of {killed_leaders} groups)")
        children[victim] = spawn(victim)
        ready = children[victim].wait_event("ready", timeout=60)
        say(f"node {victim} restarted: log reopened in {ready['open_s']:.3f} s "
            f"({ready['recovered_batches']} batches recovered), "
            f"{groups} groups created in {ready['create_s']:.2f} s")
        wait_until(f"node {victim} to catch up in every group",
                   lambda: children[victim].request("status")["ready"] == groups,
                   timeout=args.timeout, interval=0.05)
        recovery_s = time.monotonic() - t_kill
        say(f"node {victim} caught up in every group {recovery_s:.2f} s after the kill")

        # ---- end of load
        done = {}
        for n in range(nodes):
            if n != victim:
                done[n] = children[n].wait_event("load_done", timeout=args.duration + 30)
        load_s = max(d["seconds"] for d in done.values())
        stats1 = {n: children[n].request("stats")["stats"] for n in range(nodes)}

        # ---- convergence and verification
        def converged() -> list[Any] | None:
            hs = [children[n].request("heads")["heads"] for n in range(nodes)]
            return hs if all(h == hs[0] for h in hs) else None
        wait_until("every group to converge on every node", converged, timeout=args.timeout)
        heads = wait_until("stable heads", converged, timeout=args.timeout)
        results = [children[n].request("verify", ack_files=ack_files, timeout=60)
                   for n in range(nodes)]

        acked = results[0]["checked"]      # every acknowledged write, the killed node's too
        failed = sum(d["failed"] + d["expired"] for d in done.values())
        writes_applied = sum(h[0] for h in heads[0])
        bad = [(n, r) for n, r in enumerate(results) if r["missing"] or r["wrong"]]
        short = [g for g, h in enumerate(heads[0]) if h[0] == 0]

        survivors = [n for n in range(nodes) if n != victim]
        syncs = {n: stats1[n]["syncs"] - stats0[n]["syncs"] for n in survivors}
        writes = sum(stats1[n]["writes"] - stats0[n]["writes"] for n in survivors)
        total_syncs = sum(syncs.values())
        per_node = ", ".join(f"node {n}: {syncs[n] / load_s:.0f}" for n in survivors)
        print("=" * 72)
        print(f"pyraftlog + PySyncObj demo: {nodes} processes x {groups} groups = "
              f"{nodes * groups} SyncObj, one Engine per process")
        print(f"groups:               {groups}")
        print(f"load:                 {load_s:.1f} s, {acked} commands acknowledged "
              f"({acked / load_s:.0f} commands/s), {failed} failed or unknown (leader changes)")
        print(f"writes applied:       {writes_applied} (every group, replicated on every node)")
        print(f"fdatasyncs/s:         {total_syncs / len(survivors) / load_s:.0f} per surviving "
              f"process ({per_node})")
        print(f"batches per sync:     {writes / total_syncs if total_syncs else 0.0:.1f} "
              "(engine writes / fdatasyncs on the surviving processes)")
        print(f"killed node:          node {victim} (SIGKILL at t={t_kill - t_load:.1f} s, "
              f"leader of {killed_leaders} groups)")
        print(f"recovery:             log reopened in {ready['open_s']:.3f} s; all {groups} groups "
              f"caught up {recovery_s:.2f} s after the kill")
        print(f"acknowledged writes:  {acked} checked on each of {nodes} nodes, "
              f"missing {[r['missing'] for r in results]}, wrong {[r['wrong'] for r in results]}")
        if bad or short:
            for n, r in bad:
                print(f"INCONSISTENT: node {n} misses {r['missing']} / has {r['wrong']} wrong "
                      f"acknowledged writes, e.g. {r['examples']}")
            if short:
                print(f"INCONSISTENT: groups without any write: {short[:10]}")
            print("verified: FAILED")
            return 1
        print(f"verified: {groups} groups consistent")
        return 0
    finally:
        for c in children.values():
            if c.proc.poll() is None:
                c.stop()
            else:
                c.kill()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pyraftlog.contrib.demo",
                                description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--groups", type=int, default=50,
                   help="PySyncObj groups per process (default 50)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    p.add_argument("--kill-at", type=float, default=10.0,
                   help="seconds into the load to SIGKILL a node (default 10)")
    p.add_argument("--window", type=int, default=4, help="commands in flight per group per node")
    p.add_argument("--timeout", type=float, default=60.0, help="bound of each catch-up wait (s)")
    p.add_argument("--raft-timeout", type=float, default=0.6, help="PySyncObj raftMinTimeout (s)")
    p.add_argument("--dir",
                   help="work directory (default: a new temporary one, removed afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--no-sync", action="store_true", help="open engines with sync=False")
    p.add_argument("--segment-mib", type=float, default=16,
                   help="engine segment_size in MiB (default 16; the demo writes ~10 MiB per node)")
    p.add_argument("--metrics-port", type=int, default=0, metavar="PORT",
                   help="serve node n's engine as Prometheus metrics on "
                        "http://127.0.0.1:PORT+n/metrics (needs prometheus_client: "
                        "pip install pyraftlog[metrics])")
    p.add_argument("--quiet", action="store_true", help="print the summary only")
    p.add_argument("--child", nargs=2, metavar=("CONFIG", "NODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child_main(args.child[0], int(args.child[1]))
    if SyncObj is None:
        print("the demo needs pysyncobj: pip install pysyncobj", file=sys.stderr)
        return 2
    if args.nodes < 3 or args.groups < 1 or args.duration <= args.kill_at:
        p.error("need --nodes >= 3, --groups >= 1 and --kill-at < --duration")

    def on_signal(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    if args.dir:
        workdir = os.path.abspath(args.dir)
        os.makedirs(workdir, exist_ok=True)
        if os.listdir(workdir):
            p.error(f"--dir {workdir} is not empty")
    else:
        workdir = tempfile.mkdtemp(prefix="pyraftlog-demo-")
    try:
        return run_demo(args, workdir)
    except DemoError as exc:
        print(f"demo failed: {exc} (logs in {workdir})", file=sys.stderr)
        args.keep = True
        return 1
    finally:
        if args.keep or args.dir:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
