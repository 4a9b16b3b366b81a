"""One PySyncObj node on pyraftlog, the child of test_pysyncobj_powerloss.py.

Runs one PySyncObj group per ``--ports`` triple (a ``SyncObj`` and a
replicated key-value store each, journals in one engine at ``--dir``) until killed,
and says on stdout, one line per event, each one ``os.write`` (atomic,
unbuffered, survives SIGKILL), what it told the others:

    R                            the node is running
    T <g> <term> <vote or ->     setCurrentTerm returned: term and vote durable,
                                 about to be sent (vote grant or request)
    A <g> <idx> <term> <hash>    an append-entries answer acknowledging every
                                 entry up to idx left; entry idx's term and the
                                 blake2b of its command (idx 0: "- -")
    H <g> <count> <chain> <applied>   every 0.1 s: the group's store head and
                                 last applied index

Usage: pysyncobj_node.py --dir DIR --dumps DIR --ports SELF,A,B[;SELF,A,B...]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import threading
import time


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def digest(data: bytes) -> str:
    return hashlib.blake2b(bytes(data), digest_size=8).hexdigest()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True, help="the engine's directory")
    p.add_argument("--dumps", required=True, help="PySyncObj's dump files (none are written)")
    p.add_argument("--ports", required=True)
    args = p.parse_args()

    import pysyncobj.syncobj as psyncobj
    from pysyncobj import SyncObj, SyncObjConf

    import pyraftlog
    from pyraftlog.contrib import pysyncobj as contrib
    from pysyncobj_demo import Store  # examples/ is on PYTHONPATH (tests.common.child_env)

    engine = pyraftlog.open(args.dir, segment_size=128 << 10)
    contrib.install(engine)

    # outermost: runs after the adapter's flush and the send
    inner = psyncobj.SyncObj.__dict__["_SyncObj__sendNextNodeIdx"]

    def send_next_node_idx(self, node, reset=False, nextNodeIdx=None, success=False):
        result = inner(self, node, reset=reset, nextNodeIdx=nextNodeIdx, success=success)
        if success:
            j = self._SyncObj__raftLog
            g = int(j._name.decode().split("-")[1])
            idx = (nextNodeIdx if nextNodeIdx is not None else j.first_index + len(j)) - 1
            if idx >= j.first_index and len(j):
                cmd, i, term = j[idx - j.first_index]
                assert i == idx
                say(f"A {g} {idx} {term} {digest(cmd)}")
            else:
                say(f"A {g} {idx} - -")
        return result

    psyncobj.SyncObj._SyncObj__sendNextNodeIdx = send_next_node_idx

    set_term = contrib.PyraftlogJournal.setCurrentTerm

    def set_current_term(self, term, votedForNodeId):
        set_term(self, term, votedForNodeId)
        g = int(self._name.decode().split("-")[1])
        say(f"T {g} {term} {votedForNodeId if votedForNodeId is not None else '-'}")

    contrib.PyraftlogJournal.setCurrentTerm = set_current_term

    stores, objs = [], []
    for g, triple in enumerate(args.ports.split(";")):
        me, *partners = [f"127.0.0.1:{x}" for x in triple.split(",")]
        conf = SyncObjConf(journalFile=f"group-{g}",
                           fullDumpFile=os.path.join(args.dumps, f"group-{g}.dump"),
                           autoTickPeriod=0.02, raftMinTimeout=0.3, raftMaxTimeout=0.7,
                           appendEntriesPeriod=0.03, connectionRetryTime=0.2,
                           connectionTimeout=1.5, leaderFallbackTimeout=3.0,
                           logCompactionMinEntries=10 ** 9, logCompactionMinTime=10 ** 9)
        store = Store()
        objs.append(SyncObj(me, partners, conf=conf, consumers=[store]))
        stores.append(store)
    say("R")

    def heads() -> None:
        while True:
            for g, (o, s) in enumerate(zip(objs, stores)):
                count, chain = s.head
                say(f"H {g} {count} {chain.hex()} {o.raftLastApplied}")
            time.sleep(0.1)

    threading.Thread(target=heads, daemon=True).start()
    sys.stdin.read()          # until the test closes our stdin (or kills us)
    for o in objs:
        o.destroy_synchronous()
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
