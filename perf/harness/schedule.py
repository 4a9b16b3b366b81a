"""Scheduling: set-up, warm-up, then runs of both sides alternating which goes
first (ABBA), so that slow drift of the machine hits both alike."""
from __future__ import annotations

from typing import Optional, Sequence

from .config import Config
from .meter import Meter, Recorder, RunResult, Side
from report import fmt_num

from .results import Comparison, Result


def _measure_run(side: Side, seconds: float, device: Optional[str]) -> tuple[RunResult, list]:
    rec = Recorder()
    c0 = side.counters()
    with Meter(device) as m:
        side.run(seconds, rec)
    c1 = side.counters()
    syncs, writes, sync_s = rec.syncs, rec.writes, rec.sync_seconds
    if c0 is not None and c1 is not None:
        syncs = c1.get("syncs", 0) - c0.get("syncs", 0)
        writes = c1.get("writes", 0) - c0.get("writes", 0)
        if "sync_seconds" in c0 and "sync_seconds" in c1:
            sync_s = c1["sync_seconds"] - c0["sync_seconds"]
    run = RunResult(
        seconds=m.elapsed, ops=rec.ops, entries=rec.entries, payload=rec.payload,
        cpu_user=m.user, cpu_sys=m.sys, others_cpu=m.others, rss=m.rss,
        disk_write=m.disk, device_write=m.dev, syncs=syncs, writes=writes, sync_seconds=sync_s,
    )
    return run, rec.latencies


def measure(side: Side, seconds: float, device: Optional[str] = None,
            label: Optional[str] = None) -> Result:
    """One measured run of one side (no reference), as a :class:`Result`."""
    run, lats = _measure_run(side, seconds, device)
    res = Result(label or side.label, side.op_name)
    res.runs.append(run)
    res.latencies.extend(lats)
    return res


def compare(cfg: Config, comp: Comparison, ours: Side, make_ref, device: Optional[str] = None,
            peers: Sequence = (), peer_share: float = 1.0) -> Comparison:
    """Warm up and measure ``ours`` and the reference, alternating, into ``comp``.

    ``make_ref`` is a :class:`Side` or a callable ``f(ours) -> Side`` called
    after ours has warmed up (so the reference can copy ours' record sizes).
    ``peers`` are more sides (other stores doing the same workload: SQLite,
    LMDB, ...): each is warmed up after the reference and measured in every
    round after ours and the reference, for ``peer_share`` of a run's seconds;
    they land in ``comp.peers`` and never change the ratio or the targets.  A
    peer whose set-up fails is left out with a note.  Sides are closed on the
    way out.
    """
    sides = []
    try:
        ours.setup()
        sides.append(ours)
        cfg.log(f"  warm-up {ours.label} ({cfg.warmup:g} s)")
        ours.run(cfg.warmup, Recorder())
        ref = make_ref(ours) if callable(make_ref) and not isinstance(make_ref, Side) else make_ref
        ours.maintain()  # after make_ref: its compaction batch must not skew bytes per write
        ref.setup()
        sides.append(ref)
        cfg.log(f"  warm-up {ref.label} ({cfg.warmup:g} s)")
        ref.run(cfg.warmup, Recorder())
        ref.maintain()
        live_peers = []
        for peer in peers:
            peer = peer(ours) if callable(peer) and not isinstance(peer, Side) else peer
            try:
                peer.setup()
                sides.append(peer)
                cfg.log(f"  warm-up {peer.label} ({cfg.warmup * peer_share:g} s)")
                peer.run(cfg.warmup * peer_share, Recorder())
                peer.maintain()
                live_peers.append(peer)
            except Exception as e:  # noqa: BLE001 - a peer must not sink the workload
                comp.notes.append(f"peer {peer.label} left out: {type(e).__name__}: {e}")
        results = {id(s): Result(s.label, s.op_name) for s in [ours, ref] + live_peers}
        for r in range(cfg.runs):
            order = [ours, ref] if r % 2 == 0 else [ref, ours]
            if live_peers:  # rotate the peers too, so no one always runs right after ours
                k = r % len(live_peers)
                order += live_peers[k:] + live_peers[:k]
            for side in order:
                secs = cfg.run_seconds * (peer_share if side in live_peers else 1.0)
                run, lats = _measure_run(side, secs, device)
                res = results[id(side)]
                res.runs.append(run)
                res.latencies.extend(lats)
                cfg.log(f"  run {r + 1}/{cfg.runs} {side.label:<34} {fmt_num(run.throughput)} entries/s"
                        f"  ({run.ops} {side.op_name}s in {run.seconds:.2f} s)")
                side.maintain()
        comp.ours, comp.ref = results[id(ours)], results[id(ref)]
        comp.peers = [results[id(p)] for p in live_peers]
        for res in [comp.ours, comp.ref] + comp.peers:
            comp.notes.extend(io_notes(res))
        return comp
    finally:
        for side in reversed(sides):
            try:
                side.close()
            except Exception as e:  # a failing close must not hide the results
                comp.notes.append(f"close {side.label}: {e!r}")


def io_notes(res: Result) -> list:
    """Warn when the process I/O counter and the device disagree a lot."""
    wa, dev = res.write_amp, res.device_write_amp
    if wa and dev and wa > 3 * dev and wa > 4:
        return [(f"{res.label}: process write_bytes ({wa:.1f}x payload) far above what the device "
                 f"wrote ({dev:.1f}x): the kernel charges a whole (large) page-cache folio each "
                 f"time any byte of it is dirtied; the device figure is closer to the truth")]
    return []
