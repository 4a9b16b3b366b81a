"""The demo's scenario, run by the coordinator: start the nodes, wait for a
leader in every group, start the load, SIGKILL the node that leads the most
groups and start it again, wait until every group converges, have every node
check every acknowledged write, print the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from .cluster import ChildHandle, free_ports, wait_until
from .node import Msg


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
