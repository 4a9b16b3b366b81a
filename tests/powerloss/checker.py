"""The checker: a crash image opened in a process of its own (a crash in C
is seen as a crash, not the end of the test run).

``check_image`` opens an image with ``recovery_mode="tolerate_tail"``, reads
everything a user can read about every group (as a hash, ``group_digest``),
writes one more batch, closes, reopens and reads again; ``Checker`` runs it
in a child, one JSON request and answer per line.  verdict.py judges the
answers against the model.

Command line (for reproducing a saved failure; recovery changes the
directory, so give it a copy):
    python -m tests.powerloss.checker check IMAGE_DIR [--opts JSON]   open an image, print its state
    python -m tests.powerloss.checker serve                           the child Checker starts
"""
from __future__ import annotations

import argparse
import hashlib
import json
import select
import subprocess
import sys
import tempfile
import traceback
from typing import Any, Dict, List, Optional, Tuple

from tests.common import child_env, python_module
from tests.powerloss.writer import WRITER_DEFAULTS, engine_opts, universe

REOPEN_GROUP = 2**62 + 7   # the checker's own batch after recovery goes here


def group_digest(reader, g: int, keys) -> Tuple[str, Dict[str, Any]]:
    """A hash of everything a user can read about group g, and a summary.
    `reader` is a Model or an Engine."""
    def call(fn, *a):
        try:
            return fn(*a)
        except Exception as exc:  # noqa: BLE001 - part of the state
            return ("raised", type(exc).__name__, str(exc)[:200])

    first, last = call(reader.first_index, g), call(reader.last_index, g)
    t0 = ents = None
    if isinstance(first, int) and isinstance(last, int):
        t0 = call(reader.term, g, first - 1)
        ents = call(reader.entries, g, first, last + 1)
        if isinstance(ents, list):
            ents = tuple((e.index, e.term, e.type, bytes(e.data)) for e in ents)
    init = call(reader.initial_state, g)
    if isinstance(init, tuple) and len(init) == 2:
        init = (tuple(init[0]), tuple(init[1]))
    snap = call(reader.snapshot, g)
    if hasattr(snap, "meta"):
        snap = (snap.meta.index, snap.meta.term, tuple(snap.meta.conf_state),
                hashlib.sha256(bytes(snap.data)).hexdigest())
    kv = tuple(call(reader.get, g, k) for k in keys)
    canon = (first, last, t0, ents, init, snap, kv)
    h = hashlib.sha256(repr(canon).encode()).hexdigest()[:24]
    summary = dict(first=first, last=last, entries=len(ents) if isinstance(ents, tuple) else ents,
                   init=repr(init)[:120], snapshot=repr(snap)[:120],
                   kv={k.hex(): (v[:16].hex() if isinstance(v, bytes) else repr(v)[:60])
                       for k, v in zip(keys, kv) if v is not None})
    return h, summary


def combine(hashes: Dict[int, str]) -> str:
    return hashlib.sha256(repr(sorted(hashes.items())).encode()).hexdigest()


def check_image(image: str, opts: Dict[str, Any], groups, keys) -> Dict[str, Any]:
    """Opens an image, reads every group, writes one batch, reopens, reads
    again.  Runs in the checker process."""
    import pyraftlog
    res: Dict[str, Any] = {"status": "ok"}
    phase = "open"
    try:
        log = pyraftlog.open(image, **opts)
        phase = "read"
        digests = {g: group_digest(log, g, keys) for g in groups}
        res["hashes"] = {str(g): d[0] for g, d in digests.items()}
        res["summary"] = {str(g): d[1] for g, d in digests.items()}
        res["groups"] = [str(g) for g in log.groups()]
        st = log.stats()
        res["stats"] = {k: st.get(k) for k in ("segments", "recovered_batches",
                                               "dropped_tail_bytes", "written_lsn")}
        phase = "write after recovery"
        b = pyraftlog.WriteBatch()
        b.put(REOPEN_GROUP, b"m", b"after-recovery")
        log.write(b).wait()
        log.close()
        phase = "reopen"
        log = pyraftlog.open(image, **opts)
        phase = "read after reopen"
        res["reopen_hashes"] = {str(g): group_digest(log, g, keys)[0] for g in groups}
        res["reopen_marker"] = repr(log.get(REOPEN_GROUP, b"m"))
        res["reopen_groups"] = [str(g) for g in log.groups()]
        log.close()
    except Exception as exc:  # noqa: BLE001 - the verdict
        res = {"status": "error", "phase": phase, "error": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc()[-4000:]}
    return res


def serve() -> None:
    """Checker process: one JSON request per stdin line, one answer per stdout line."""
    for line in sys.stdin:
        req = json.loads(line)
        keys = [bytes.fromhex(k) for k in req["keys"]]
        res = check_image(req["image"], req["opts"], [int(g) for g in req["groups"]], keys)
        res["id"] = req["id"]
        sys.stdout.write(json.dumps(res) + "\n")
        sys.stdout.flush()


class Checker:
    """A checker subprocess (recovery runs there, so a crash in C is seen as
    a crash, not the end of the test); restarted after it dies."""

    def __init__(self, timeout: float = 120.0):
        self.timeout = timeout
        self.proc: Optional[subprocess.Popen] = None
        self.n = 0

    def _start(self) -> None:
        self.errf = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(python_module("tests.powerloss.checker", "serve"),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errf, env=child_env())

    def check(self, image: str, opts, groups, keys) -> Dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.n += 1
        req = {"id": self.n, "image": image, "opts": opts, "groups": [str(g) for g in groups],
               "keys": [k.hex() for k in keys]}
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            if not ready:
                self.proc.kill()
            rc = self.proc.wait()
            self.errf.seek(0)
            err = self.errf.read().decode(errors="replace")[-4000:]
            self.proc = None
            return {"status": "crash", "error": f"checker died (status {rc})"
                    if ready else f"checker hung for {self.timeout}s", "stderr": err}
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait()
            self.proc = None


def main(argv: List[str]) -> int:
    if argv and argv[0] == "serve":
        serve()
        return 0
    if argv and argv[0] == "check":
        ap = argparse.ArgumentParser()
        ap.add_argument("image")
        ap.add_argument("--opts", default=json.dumps(engine_opts(WRITER_DEFAULTS)))
        a = ap.parse_args(argv[1:])
        groups, keys = universe()
        res = check_image(a.image, json.loads(a.opts), list(groups), list(keys))
        print(json.dumps(res, indent=1))
        return 0 if res["status"] == "ok" else 1
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
