"""The `pyraftlog` command: inspect, dump and verify a log directory.

    pyraftlog inspect DIR [--json]
    pyraftlog dump DIR [--group G] [--from I] [--to J] [--json]
    pyraftlog verify DIR

All three only read: they take no lock (they work on a directory a live
process holds and writes), never change or delete a file, and report a
directory that is missing, empty, foreign or corrupt in one line on stderr
with exit status 1.  Usage errors exit 2.  The reading itself lives in
pyraftlog/tools/inspector.py."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO

import numpy as np

from .. import ops as O
from .. import record as R
from .._version import __version__
from ..errors import RaftLogError
from ..group_index import GroupState
from ..recovery import Scanner
from .inspector import (
    InspectError,
    Problem,
    RawLog,
    Report,
    SegmentSummary,
    Walker,
    check_directory,
    lock_holder,
    report,
    verify,
)

PROG = "pyraftlog"


class ProgressLine:
    """`scanning 42%` on stderr, only when stderr is a terminal and a scan
    has run for a while; cleared when done."""

    def __init__(self, label: str, stream: Optional[TextIO] = None, delay: float = 0.5):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.start = time.monotonic()
        self.delay = delay
        self.shown = False
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.start < self.delay or now - self.last < 0.1:
            return
        self.last = now
        self.shown = True
        self.stream.write(f"\r{self.label} {100 * done // max(total, 1):3d}% "
                          f"({human(done)} of {human(total)})\033[K")
        self.stream.flush()

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


def human(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    if n < 1024:
        return f"{n} B"
    x, units = n / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while x >= 1024 and len(units) > 1:
        x /= 1024
        units.pop(0)
    return f"{x:.1f} {units[0]}"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "es" if noun.endswith("h") else "s")


def _table(rows: List[List[str]], out: TextIO, indent: str = "  ") -> None:
    """Columns right-aligned, except those whose header ends with '<'."""
    if not rows:
        return
    left = [h.endswith("<") for h in rows[0]]
    rows = [[c.rstrip("<") for c in rows[0]]] + rows[1:]
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    for r in rows:
        cells = [c.ljust(w) if lf else c.rjust(w) for c, w, lf in zip(r, widths, left)]
        out.write(indent + "  ".join(cells).rstrip() + "\n")


# -- inspect ---------------------------------------------------------------------

def _segment_state(seg: SegmentSummary, active: bool, live: int) -> str:
    if seg.unfinished:
        return "unfinished"
    if seg.recycled:
        return "recycled"
    if not seg.header_ok:
        return "invalid"
    if active:
        return "active"
    return "live" if live else "empty"


def _group(g: int, st: GroupState, live: int) -> Dict[str, Any]:
    hs, meta = st.hard_state, st.snap_meta
    return {"group": g, "first_index": st.first_index, "last_index": st.last_index,
            "entries": len(st.positions),
            "hard_state": {"term": hs.term, "vote": hs.vote, "commit": hs.commit},
            "snapshot": {"index": meta.index, "term": meta.term,
                         "data_size": st.snap_ref[0] if st.snap_ref else 0,
                         "voters": list(meta.conf_state.voters),
                         "learners": list(meta.conf_state.learners)},
            "kv_keys": len(st.kv) if st.kv else 0,
            "live_bytes": live}


def report_dict(r: Report) -> Dict[str, Any]:
    """The inspect report as JSON-able data (what --json prints)."""
    walk = r.walk
    chain = [s for s in walk.segments if not (s.unfinished or s.recycled)]
    segments = []
    for seg in walk.segments:
        live = r.segment_live.get(seg.seq, 0)
        segments.append({
            "seq": seg.seq, "file": os.path.basename(seg.path), "size": seg.size,
            "used": seg.used, "live_bytes": live, "first_lsn": seg.first_lsn,
            "last_lsn": seg.last_lsn, "batches": seg.batches, "records": seg.records,
            "state": _segment_state(seg, bool(chain) and seg is chain[-1], live)})
    for name, size in r.free_files:
        segments.append({"seq": None, "file": name, "size": size, "used": 0, "live_bytes": 0,
                         "first_lsn": 0, "last_lsn": 0, "batches": 0, "records": 0,
                         "state": "free"})
    groups = [_group(g, r.index.groups[g], r.group_live[g]) for g in sorted(r.index.groups)]
    referenced = r.index.snapshot_files()
    return {
        "path": os.path.abspath(r.path), "locked_by_pid": r.holder,
        "disk_bytes": sum(s["size"] for s in segments),
        "used_bytes": sum(s["used"] for s in segments),
        "live_bytes": sum(s["live_bytes"] for s in segments),
        "batches": walk.batches, "records": walk.records, "next_lsn": walk.next_lsn,
        "entries": sum(g["entries"] for g in groups),
        "segments": segments, "groups": groups,
        "snapshots": {"files": len(r.snapshot_files),
                      "bytes": sum(f[2] for f in r.snapshot_files),
                      "orphans": sum((f[0], f[1]) not in referenced for f in r.snapshot_files)},
        "problems": [{"file": p.path, "offset": p.offset, "reason": p.reason, "torn_tail": p.torn}
                     for p in walk.problems],
    }


def cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    progress = ProgressLine("inspecting")
    try:
        r = report(args.dir, progress)
    finally:
        progress.done()
    rep = report_dict(r)
    errors = [str(p) for p in r.walk.problems if not p.torn]
    if args.json:
        rep["ok"] = not errors
        json.dump(rep, out, indent=2)
        out.write("\n")
    else:
        _print_report(rep, out)
    if errors:
        _error("inspect", errors[0])
        return 1
    return 0


def _print_report(rep: Dict[str, Any], out: TextIO) -> None:
    held = f" (held by pid {rep['locked_by_pid']})" if rep["locked_by_pid"] else ""
    out.write(f"log {rep['path']}{held}\n")
    segs = rep["segments"]
    free = sum(s["state"] == "free" for s in segs)
    out.write(f"segments: {len(segs) - free} + {free} free, {human(rep['disk_bytes'])} on disk, "
              f"{human(rep['used_bytes'])} used, {human(rep['live_bytes'])} live; "
              f"{rep['batches']} batches, {rep['records']} records, next lsn {rep['next_lsn']}\n")
    rows = [["SEQ", "FILE<", "SIZE", "USED", "LIVE", "FIRST_LSN", "LAST_LSN", "BATCHES",
             "RECORDS", "STATE<"]]
    for s in segs:
        seq = "-" if s["seq"] is None else str(s["seq"])
        rows.append([seq, s["file"], human(s["size"]), human(s["used"]), human(s["live_bytes"]),
                     str(s["first_lsn"]), str(s["last_lsn"]), str(s["batches"]),
                     str(s["records"]), s["state"]])
    _table(rows, out)
    groups = rep["groups"]
    out.write(f"groups: {len(groups)}, {rep['entries']} entries\n")
    rows = [["GROUP", "FIRST", "LAST", "ENTRIES", "SNAPSHOT(i/t)", "TERM", "VOTE", "COMMIT",
             "KV", "LIVE", "VOTERS<"]]
    for g in groups:
        hs, sn = g["hard_state"], g["snapshot"]
        rows.append([str(g["group"]), str(g["first_index"]), str(g["last_index"]),
                     str(g["entries"]), f"{sn['index']}/{sn['term']}", str(hs["term"]),
                     str(hs["vote"]), str(hs["commit"]), str(g["kv_keys"]),
                     human(g["live_bytes"]), ",".join(map(str, sn["voters"])) or "-"])
    _table(rows, out)
    sn = rep["snapshots"]
    out.write(f"snapshot files: {sn['files']}, {human(sn['bytes'])}"
              + (f", {sn['orphans']} not referenced (removed at the next open)"
                 if sn["orphans"] else "") + "\n")
    for p in rep["problems"]:
        kind = "torn tail" if p["torn_tail"] else "problem"
        out.write(f"{kind}: {p['file']}: offset {p['offset']}: {p['reason']}\n")


# -- dump ------------------------------------------------------------------------

class Dumper:
    """A Walker sink printing the records that pass the filters."""

    def __init__(self, args: argparse.Namespace, out: TextIO):
        self.group, self.lo, self.hi = args.group, args.lo, args.hi
        self.json, self.limit, self.out = args.json, args.data_bytes, out
        self.header = not args.json
        self.count = 0
        self.bad: List[Problem] = []  # records whose payload does not decode

    def __call__(self, seg: SegmentSummary, mem: Any, sc: Scanner, nb: int,
                 nr: int) -> Optional[Problem]:
        mask = np.ones(nr, bool)
        if self.group is not None:
            mask &= sc.r_group[:nr] == np.uint64(self.group)
        if self.lo is not None:
            mask &= sc.r_index[:nr] >= np.uint64(self.lo)
        if self.hi is not None:
            mask &= sc.r_index[:nr] <= np.uint64(self.hi)
        picked = np.flatnonzero(mask)
        if not len(picked):
            return None
        lsns = np.repeat(sc.b_lsn[:nb], sc.b_cnt[:nb].astype(np.int64))
        name = os.path.basename(seg.path)
        for k in picked.tolist():
            t, aux = int(sc.r_type[k]), int(sc.r_aux[k])
            g, i, term = int(sc.r_group[k]), int(sc.r_index[k]), int(sc.r_term[k])
            off, ln, lsn = int(sc.r_off[k]), int(sc.r_len[k]), int(lsns[k])
            start = off + R.RECORD_HEADER_SIZE
            cut = ln if self.limit < 0 or t not in (R.ENTRY, R.STAGE) else min(ln, self.limit)
            fields, text = O.describe(t, aux, i, term, bytes(mem[start:start + cut]),
                                      self.limit, ln)
            self.count += 1
            if "payload_error" in fields:
                self.bad.append(Problem(seg.path, off, f"bad {R.NAMES.get(t, t)} payload: "
                                                       f"{fields['payload_error']}"))
            if self.json:
                rec = {"segment": name, "seq": seg.seq, "offset": off, "lsn": lsn,
                       "type": R.NAMES.get(t, str(t)), "group": g, "index": i, "term": term,
                       "len": ln}
                rec.update(fields)
                self.out.write(json.dumps(rec) + "\n")
                continue
            if self.header:
                self.out.write(f"{'SEGMENT':<20} {'OFFSET':>9} {'LSN':>8} {'TYPE':<12} "
                               f"{'GROUP':>6} {'INDEX':>8} {'TERM':>6} {'LEN':>7}  PAYLOAD\n")
                self.header = False
            self.out.write(f"{name:<20} {off:>9} {lsn:>8} {R.NAMES.get(t, str(t)):<12} "
                           f"{g:>6} {i:>8} {term:>6} {ln:>7}  {text}".rstrip() + "\n")
        return None


def cmd_dump(args: argparse.Namespace, out: TextIO) -> int:
    seqs = check_directory(args.dir)
    dumper = Dumper(args, out)
    progress = ProgressLine("dumping") if not out.isatty() else None
    try:
        with RawLog(args.dir) as raw:
            walker = Walker(raw, sink=dumper, keep_going=True,
                            live=lock_holder(args.dir) is not None, progress=progress)
            walk = walker.run(seqs)
    finally:
        if progress:
            progress.done()
    if walker.live:  # a payload read after a live writer recycled its segment is no problem
        dumper.bad = [p for p in dumper.bad if os.path.exists(p.path)]
    problems = [p for p in walk.problems if not p.torn] + dumper.bad
    for p in sorted(walk.problems + dumper.bad, key=lambda p: (p.path, p.offset)):
        _error("dump", str(p) + (" (a torn tail recovery cuts)" if p.torn else ""))
    if not args.json and dumper.count == 0:
        out.write("no records match\n" if walk.records else "no records\n")
    return 1 if problems else 0


# -- verify ----------------------------------------------------------------------

def cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    progress = ProgressLine("verifying")
    try:
        v = verify(args.dir, progress)
    finally:
        progress.done()
    if v.problem:
        _error("verify", str(v.problem))
        return 1
    w = v.walk
    notes = [f"{os.path.basename(s.path)}: unfinished (header never written)"
             for s in w.segments if s.unfinished]
    notes += [f"{os.path.basename(s.path)}: tail still being written"
              for s in w.segments if s.in_flight]
    out.write(f"OK: {_n(len(w.segments), 'segment')}, {_n(w.batches, 'batch')}, "
              f"{_n(w.records, 'record')}, {human(w.bytes)} checked; {_n(v.groups, 'group')}, "
              f"{_n(v.snapshots, 'snapshot file')}"
              + "".join(f"; {n}" for n in notes) + "\n")
    return 0


# -- main ------------------------------------------------------------------------

def _u64(text: str) -> int:
    try:
        v = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= v < 1 << 64:
        raise argparse.ArgumentTypeError(f"out of range (0 .. 2**64-1): {text}")
    return v


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Inspect, dump and verify a pyraftlog "
                                "log directory.  Read-only: takes no lock, changes no file.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    s = sub.add_parser("inspect", help="segments, groups, disk and live bytes",
                       description="Segments (state: active = newest, live = holds records the "
                       "log still needs, empty = holds none (recycled soon), free = a prepared or "
                       "recycled file outside the log, unfinished = a creation a crash "
                       "interrupted, invalid), groups "
                       "with their first/last index, entry counts, disk bytes against live bytes "
                       "(records the recovered state still needs).  Exit 1 on invalid bytes "
                       "other than a torn tail of the newest segment (which recovery cuts).")
    s.add_argument("dir", metavar="DIR", help="log directory")
    s.add_argument("--json", action="store_true", help="one JSON document")
    s.set_defaults(func=cmd_inspect)
    s = sub.add_parser("dump", help="records in log order",
                       description="Every valid record in log order: segment, offset, batch "
                       "lsn, type, group, index, term, payload length, and the payload (decoded "
                       "for non-entry records, the first bytes of entry data).  Invalid bytes "
                       "are skipped, reported on stderr, and make the exit status 1.")
    s.add_argument("dir", metavar="DIR", help="log directory")
    s.add_argument("--group", type=_u64, metavar="G", help="only records of group G")
    s.add_argument("--from", dest="lo", type=_u64, metavar="I",
                   help="only records whose index field is >= I (a hard state's index is its "
                   "commit; key-value and remove records have index 0)")
    s.add_argument("--to", dest="hi", type=_u64, metavar="J",
                   help="only records whose index field is <= J (inclusive)")
    s.add_argument("--data-bytes", type=int, default=16, metavar="N",
                   help="bytes of entry data, keys and values to show (default 16, -1: all)")
    s.add_argument("--json", action="store_true", help="JSON Lines: one object per record")
    s.set_defaults(func=cmd_dump)
    s = sub.add_parser("verify", help="check every record and checksum",
                       description="Reads every record and checks every checksum with strict "
                       "recovery's rules (segment headers, batch checksums, the batch sequence "
                       "across segments, record payloads), then every "
                       "snapshot file the log refers to.  Exit 0 if clean, 1 with the first "
                       "problem's file, offset and reason.")
    s.add_argument("dir", metavar="DIR", help="log directory")
    s.set_defaults(func=cmd_verify)
    return p


def _error(command: str, message: str) -> None:
    sys.stderr.write(f"{PROG} {command}: {message}\n")
    sys.stderr.flush()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "dump" and None not in (args.lo, args.hi) and args.lo > args.hi:
        parser.error(f"dump: --from {args.lo} is above --to {args.hi}")
    out = sys.stdout
    func: Callable[[argparse.Namespace, TextIO], int] = args.func
    try:
        return func(args, out)
    except InspectError as exc:
        _error(args.command, str(exc))
    except (RaftLogError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            return _broken_pipe()
        if isinstance(exc, OSError) and exc.strerror:
            where = f": {exc.filename}" if exc.filename else f" ({args.dir})"
            _error(args.command, f"{exc.strerror}{where}")
        else:
            _error(args.command, f"{args.dir}: {exc}")
    except KeyboardInterrupt:
        _error(args.command, "interrupted")
        return 130
    except Exception as exc:  # one line, never a traceback
        if os.environ.get("PYRAFTLOG_DEBUG"):
            raise
        _error(args.command, f"{args.dir}: internal error: {type(exc).__name__}: {exc}")
    return 1


def _broken_pipe() -> int:
    """`pyraftlog dump DIR | head`: stop quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


__all__ = ["main"]
