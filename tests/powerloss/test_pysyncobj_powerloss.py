"""A PySyncObj node on pyraftlog survives power loss (issue 14, item 4).

Nodes 0 and 1 of a 3-node PySyncObj cluster (``GROUPS`` groups) run in this
process; node 2 (pysyncobj_node.py) runs in a child under the power-loss
recorder (recording.py, shim.c: a copy of every file at every sync).  The
child starts as a follower of every group; writes go through nodes 0 and 1.
Partway through, the leader of some groups is destroyed, so the child takes
part in elections (it votes, or asks for votes).  The child is SIGKILLed at a
random moment, and crash images are drawn from its recording (what was
synced, what the page cache held, and torn mixtures of the two, as in
test_powerloss.py).  On every image, the recovered journals must hold:

- every entry the child acknowledged to a leader (its append-entries answers
  carry "everything up to idx"; it logged idx, the entry's term and a hash of
  its command after each answer left), with that term and command;
- the term and vote it answered with last (a later term, or the same term
  with the same vote; a vote logged as "none" may have become a vote).

Then the child is restarted on the image that keeps only what was synced:
it must rejoin and catch up with the surviving nodes in every group.

The short run is part of ``make test``; the long one (more kill points and
images) is ``slow`` and runs in ``make test-crash``.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
import time

import pytest

pytest.importorskip("pysyncobj")

from pysyncobj import SyncObj, SyncObjConf  # noqa: E402

import pyraftlog  # noqa: E402
from pyraftlog.contrib import pysyncobj as contrib  # noqa: E402
from pysyncobj_demo import Store, free_ports, value_for  # noqa: E402

from tests.common import child_env, python_module, wait_for  # noqa: E402
from tests.powerloss.image import materialize, plan_image  # noqa: E402
from tests.powerloss.pysyncobj_node import digest  # noqa: E402
from tests.powerloss.recording import (  # noqa: E402
    Recording,
    build_shim,
    parse_journal,
    recorder_env,
    seed_journal,
)

GROUPS = 3
SEGMENT = 128 << 10
SEED = int(os.environ.get("PYRAFTLOG_POWERLOSS_SEED", "20240605"))
CONF = dict(autoTickPeriod=0.02, raftMinTimeout=0.3, raftMaxTimeout=0.7,
            appendEntriesPeriod=0.03, connectionRetryTime=0.2, connectionTimeout=1.5,
            leaderFallbackTimeout=3.0, logCompactionMinEntries=10 ** 9,
            logCompactionMinTime=10 ** 9)


class Child:
    """Node 2: pysyncobj_node.py, its output lines collected by a thread."""

    def __init__(self, root: str, dumps: str, ports, extra_env=None, log=None):
        arg = ";".join(",".join(map(str, t)) for t in ports)
        self.proc = subprocess.Popen(
            python_module("tests.powerloss.pysyncobj_node", "--dir", root, "--dumps", dumps,
                          "--ports", arg),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log or subprocess.DEVNULL,
            env=child_env(**(extra_env or {})))
        self.lines = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        buf = b""
        while True:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return
            buf += chunk
            *full, buf = buf.split(b"\n")
            with self.lock:
                self.lines.extend(x.decode() for x in full)

    def seen(self, kind):
        with self.lock:
            return [ln.split()[1:] for ln in self.lines if ln.split()[:1] == [kind]]

    def head(self, g):
        with self.lock:
            for ln in reversed(self.lines):
                p = ln.split()
                if p[0] == "H" and int(p[1]) == g:
                    return int(p[2]), p[3]
        return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.thread.join(10)

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(15)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()


class Nodes:
    """Nodes 0 and 1, in this process."""

    def __init__(self, base, addr):
        self.engines, self.objs, self.stores = [], [], []
        for n in (0, 1):
            eng = pyraftlog.open(str(base / f"node{n}"), segment_size=SEGMENT)
            objs, stores = [], []
            with contrib.install(eng):
                for g in range(GROUPS):
                    conf = SyncObjConf(journalFile=f"group-{g}",
                                       fullDumpFile=str(base / f"node{n}-g{g}.dump"), **CONF)
                    store = Store()
                    partners = [addr[k][g] for k in range(3) if k != n]
                    objs.append(SyncObj(addr[n][g], partners, conf=conf, consumers=[store]))
                    stores.append(store)
            self.engines.append(eng)
            self.objs.append(objs)
            self.stores.append(stores)
        self.gone = set()          # (n, g) destroyed

    def live(self, g):
        return [n for n in (0, 1) if (n, g) not in self.gone]

    def leader(self, g):
        for n in self.live(g):
            if self.objs[n][g]._isLeader():
                return n
        return None

    def destroy(self, n, g):
        self.objs[n][g].destroy_synchronous()
        self.gone.add((n, g))

    def close(self):
        for n in (0, 1):
            for g in range(GROUPS):
                if (n, g) not in self.gone:
                    self.objs[n][g].destroy_synchronous()
            self.engines[n].close()


class Load:
    """Writes into every group through a live in-process node, 4 in flight."""

    def __init__(self, nodes: Nodes):
        self.nodes = nodes
        self.stop = threading.Event()
        self.acked = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        inflight = [{} for _ in range(GROUPS)]     # key -> time sent
        seq = 0

        def cb(g, key):
            def done(result, err):
                with self.lock:
                    inflight[g].pop(key, None)
                    if err == 0:
                        self.acked += 1
            return done

        while not self.stop.is_set():
            now = time.monotonic()
            for g in range(GROUPS):
                live = self.nodes.live(g)
                with self.lock:
                    for key, sent in list(inflight[g].items()):
                        if now - sent > 2.0:     # lost with a destroyed leader
                            del inflight[g][key]
                    free = 4 - len(inflight[g])
                for _ in range(free):
                    seq += 1
                    key = f"g{g}-{seq}"
                    with self.lock:
                        inflight[g][key] = now
                    self.nodes.stores[live[seq % len(live)]][g].set(
                        key, value_for(key), callback=cb(g, key))
            time.sleep(0.01)

    def finish(self):
        self.stop.set()
        self.thread.join(10)


def check_image(image: str, acks, terms) -> list:
    """What the recovered journals of node 2 lack (empty: nothing)."""
    problems = []
    eng = pyraftlog.open(image, segment_size=SEGMENT, recovery_mode="tolerate_tail")
    try:
        for g in range(GROUPS):
            j = contrib.PyraftlogJournal(eng, f"group-{g}")
            first, last = j.first_index, j.first_index + len(j) - 1
            for idx, term, h in acks.get(g, []):
                if term == "-":
                    continue
                idx, term = int(idx), int(term)
                if not first <= idx <= last:
                    problems.append(f"group {g}: acknowledged entry {idx} missing "
                                    f"(journal {first}..{last})")
                    break
                cmd, i, t = j[idx - first]
                if (t, digest(cmd)) != (term, h):
                    problems.append(f"group {g}: entry {idx} is ({t}, {digest(cmd)}), "
                                    f"acknowledged as ({term}, {h})")
                    break
            if terms.get(g):
                t, v = terms[g][-1]
                v = None if v == "-" else v
                rt, rv = j.getCurrentTerm(), j.getVotedForNodeId()
                if rt < t or (rt == t and v is not None and rv != v):
                    problems.append(f"group {g}: answered with term {t} vote {v}, "
                                    f"recovered term {rt} vote {rv}")
            j.close()
    finally:
        eng.close()
    return problems


def run_once(base, shim, seed: int, images: int, extra_env=None) -> dict:
    rng = random.Random(seed)
    ports = free_ports(3 * GROUPS)
    addr = [[f"127.0.0.1:{ports[n * GROUPS + g]}" for g in range(GROUPS)] for n in range(3)]
    child_ports = [(ports[2 * GROUPS + g], ports[g], ports[GROUPS + g]) for g in range(GROUPS)]
    root, out, dumps = base / "root", base / "out", base / "dumps"
    for d in (root, out, dumps):
        d.mkdir()
    # nodes 0 and 1 first: they elect the leaders (2 of 3), node 2 joins as a follower
    nodes = Nodes(base, addr)
    child = None
    try:
        wait_for(lambda: all(nodes.leader(g) is not None for g in range(GROUPS)), 20,
                 "leaders among nodes 0 and 1")
        k0 = seed_journal(str(root), str(out))
        env = dict(recorder_env(shim, os.path.realpath(root), str(out), k0), **(extra_env or {}))
        with open(base / "child.log", "wb") as log:
            child = Child(str(root), str(dumps), child_ports, extra_env=env, log=log)
        wait_for(lambda: child.seen("R"), 30, "node 2 to start")
        load = Load(nodes)
        elect_at, kill_at = rng.randint(10, 60), rng.randint(30, 150)
        elected = False
        deadline = time.monotonic() + 25
        while len(child.seen("A")) < kill_at and time.monotonic() < deadline:
            if not elected and len(child.seen("A")) >= elect_at:
                # the leaders of two groups go: node 2 votes (or is voted for)
                for g in range(GROUPS - 1):
                    n = nodes.leader(g)
                    if n is not None:
                        nodes.destroy(n, g)
                elected = True
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.02))
        child.kill()
        load.finish()
        acks_lines, term_lines = child.seen("A"), child.seen("T")
        assert len(acks_lines) >= 10, f"node 2 acknowledged only {len(acks_lines)} times"
        acks, terms = {}, {}
        for g, idx, term, h in acks_lines:
            acks.setdefault(int(g), []).append((idx, term, h))
        for g, term, vote in term_lines:
            terms.setdefault(int(g), []).append((int(term), vote))

        rec = Recording(root=os.path.realpath(root), out=str(out))
        parse_journal(rec)
        assert not rec.unmodelled and not rec.failed_syncs, (rec.unmodelled, rec.failed_syncs)
        styles = ["durable", "current", "torn", "old-names"] + ["random"] * max(0, images - 4)
        failures = []
        for k, style in enumerate(styles[:images]):
            img = str(base / f"image{k}")
            materialize(rec, plan_image(rec, rng, style), img)
            problems = check_image(img, acks, terms)
            if problems:
                failures.append(f"image {k} ({style}): " + "; ".join(problems[:3]))
            else:
                shutil.rmtree(img)

        # restart node 2 on what was synced: it rejoins and catches up
        rejoin = str(base / "rejoin")
        materialize(rec, plan_image(rec, random.Random(seed), "durable"), rejoin)
        with open(base / "rejoin.log", "wb") as log:
            child = Child(rejoin, str(dumps), child_ports, log=log)

        def caught_up():
            for g in range(GROUPS):
                live = nodes.live(g)
                ref = nodes.stores[live[0]][g].head
                h = child.head(g)
                if h is None or h != (ref[0], ref[1].hex()):
                    return False
                if any(nodes.stores[n][g].head != ref for n in live):
                    return False
            return True
        wait_for(caught_up, 30, "node 2 to catch up after its restart")
        return {"acks": len(acks_lines), "votes": len(term_lines), "syncs": rec.syncs,
                "images": len(styles[:images]), "failures": failures,
                "elected": elected}
    finally:
        if child is not None:
            child.stop()
        nodes.close()


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    return build_shim(str(tmp_path_factory.mktemp("shim")))


def test_pysyncobj_follower_survives_power_loss(shim, tmp_path):
    """One kill of node 2, 8 crash images, a restart on the synced image."""
    res = run_once(tmp_path, shim, SEED, images=8)
    assert not res["failures"], "\n".join(res["failures"])
    assert res["acks"] >= 10 and res["syncs"] >= 5 and res["votes"] >= 1, res


def test_the_test_sees_acknowledgements_without_sync(shim, tmp_path):
    """With the recorder told to forget every file sync, as if the journal
    never synced before answering, the synced image must lose acknowledged
    entries: the check has teeth."""
    res = run_once(tmp_path, shim, SEED, images=1, extra_env={"PRL_PL_FORGET": "file"})
    assert res["failures"] and "missing" in res["failures"][0], res


@pytest.mark.slow
def test_pysyncobj_follower_survives_power_loss_long(shim, tmp_path):
    """PYRAFTLOG_POWERLOSS_RUNS kills x PYRAFTLOG_POWERLOSS_IMAGES images each."""
    runs = int(os.environ.get("PYRAFTLOG_POWERLOSS_RUNS", "5"))
    images = int(os.environ.get("PYRAFTLOG_POWERLOSS_IMAGES", "40"))
    failures = []
    for r in range(runs):
        base = tmp_path / f"run{r}"
        base.mkdir()
        res = run_once(base, shim, SEED + 1 + r, images=images)
        failures += [f"run {r}: {f}" for f in res["failures"]]
        print(f"run {r}: {res}")
    assert not failures, "\n".join(failures[:10])
