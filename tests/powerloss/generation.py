"""One generation: the writer child (writer.py) run under the recorder in a
directory (empty, or a crash image of the generation before), killed at a
random moment: while writing, while opening/recovering, or when done."""
from __future__ import annotations

import json
import os
import pickle
import random
import select
import shutil
import signal
import struct
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from tests.common import child_env, python_module
from tests.powerloss.image import ImagePlan, materialize
from tests.powerloss.recording import Recording, parse_journal, recorder_env, seed_journal
from tests.powerloss.writer import WRITER_DEFAULTS


@dataclass
class Generation:
    """One run of the writer child and what it left."""
    workdir: str
    seed: int
    params: Dict[str, Any]
    base: List[list]                 # op lists the directory held at the start
    rec: Recording
    batches: List[list]              # base + every batch the child recorded
    acked: int                       # highest batch id acknowledged (or closed)
    written: int                     # highest batch id whose write returned
    kill: str
    lines: List[str]
    stderr: str
    runtime: float

    @property
    def required(self) -> int:
        """Every batch up to this id must survive."""
        return max(self.acked, len(self.base))


def _read_batches(path: str) -> List[Tuple[int, list]]:
    out = []
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return out
    off = 0
    while off + 4 <= len(data):
        (n,) = struct.unpack_from("<I", data, off)
        if off + 4 + n > len(data):
            break  # cut by the kill: its write never started
        out.append(pickle.loads(data[off + 4:off + 4 + n]))
        off += 4 + n
    return out


def _triggers(kill, kind: str, arg: str, nbase: int) -> bool:
    if kind != kill[0]:
        return False
    if kind == "W":
        return int(arg.split()[0]) - nbase >= kill[1]
    if kind == "O":
        return int(arg) >= kill[1]
    return True


def run_generation(workdir: str, shim: str, seed: int, params: Dict[str, Any],
                   base: List[list], start_image: Optional[str] = None,
                   start_from: Optional[ImagePlan] = None,
                   start_rec: Optional[Recording] = None,
                   extra_env: Optional[Dict[str, str]] = None,
                   kill: Optional[Tuple[str, int, float]] = None) -> Generation:
    """Runs the writer child under the recorder in workdir/root (starting
    from an image if given) and kills it at a random moment."""
    rng = random.Random(seed)
    root, out = os.path.join(workdir, "root"), os.path.join(workdir, "out")
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(out)
    if start_from is not None:
        materialize(start_rec, start_from, root)
    elif start_image is not None:
        shutil.copytree(start_image, root)
    else:
        os.makedirs(root)
    root = os.path.realpath(root)
    k0 = seed_journal(root, out)
    base_file = os.path.join(workdir, "base.pickle")
    with open(base_file, "wb") as f:
        pickle.dump(base, f)
    batches_file = os.path.join(workdir, "batches.bin")
    env = child_env(**recorder_env(shim, root, out, k0), PYTHONUNBUFFERED="1", **(extra_env or {}))
    n = params["batches"]
    r = rng.random()
    if kill is not None:
        pass
    elif r < 0.7:
        kill = ("W", rng.randint(1, n), rng.uniform(0, 0.004))
    elif r < 0.85:
        kill = ("O", 1, rng.uniform(0, 0.03))   # during recovery or start
    else:
        kill = ("D", 0, rng.uniform(0, 0.02))
    t0 = time.monotonic()
    proc = subprocess.Popen(
        python_module("tests.powerloss.writer", "--dir", root, "--batches", batches_file,
                      "--seed", seed, "--base", base_file, "--params", json.dumps(params)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=workdir)
    lines: List[str] = []
    acked = closed = written = 0
    deadline = time.monotonic() + float(os.environ.get("PYRAFTLOG_POWERLOSS_HANG", "120"))
    killed = False
    buf = b""
    while True:
        if time.monotonic() > deadline:
            proc.send_signal(signal.SIGUSR1)   # faulthandler: every thread's stack
            time.sleep(1)
            cstacks = ""
            if shutil.which("gdb"):
                cstacks = subprocess.run(["gdb", "-p", str(proc.pid), "-batch", "-ex",
                                          "thread apply all bt 12"], capture_output=True,
                                         text=True, timeout=60).stdout[-8000:]
            proc.kill()
            proc.wait()
            err = proc.stderr.read().decode(errors="replace")
            raise RuntimeError(f"writer child hung (pid {proc.pid}, {workdir}); output so far: "
                               f"{lines[-5:]}\nstacks:\n{err[-6000:]}\n{cstacks}")
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if not ready:
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            line = raw.decode()
            lines.append(line)
            kind, _, arg = line.partition(" ")
            if kind == "A":
                i = int(arg)
                if i <= acked:
                    lines.append(f"# ticket of batch {i} completed after batch {acked}'s")
                acked = max(acked, i)
            elif kind == "C":
                closed = max(closed, int(arg))
            elif kind == "W":
                written = max(written, int(arg.split()[0]))
            elif kind == "E":
                proc.kill()
            if not killed and (_triggers(kill, kind, arg, len(base)) or kind == "D"):
                time.sleep(kill[2])
                proc.send_signal(signal.SIGKILL)
                killed = True
    proc.wait()
    stderr = proc.stderr.read().decode(errors="replace")
    if any(line.startswith("E") for line in lines) or (proc.returncode not in (-9, 0)):
        raise RuntimeError(f"writer child failed (status {proc.returncode}): "
                           f"{[ln for ln in lines if ln.startswith('E')]}\n{stderr[-3000:]}")
    recorded = _read_batches(batches_file)
    for i, (bid, _) in enumerate(recorded):
        assert bid == len(base) + i + 1, (bid, i)
    rec = Recording(root=root, out=out)
    parse_journal(rec)
    return Generation(workdir=workdir, seed=seed, params=params, base=base, rec=rec,
                      batches=base + [ops for _, ops in recorded], acked=max(acked, closed),
                      written=written, kill=f"{kill[0]}{kill[1]}+{kill[2] * 1000:.1f}ms",
                      lines=lines, stderr=stderr, runtime=time.monotonic() - t0)


def random_params(rng: random.Random, batches: int) -> Dict[str, Any]:
    p = dict(WRITER_DEFAULTS)
    p.update(batches=batches,
             min_sync_interval=rng.choice((0.0, 0.0, 0.001, 0.004, 0.02)),
             pause=rng.choice((0.0, 0.0, 0.0005)),
             exit_without_close=rng.random() < 0.3,
             # low enough to purge now and then; a threshold below the live
             # data plus the free pool makes the purger rewrite forever
             purge_threshold=rng.choice((768 * 1024, 1 << 20, 1 << 30)),
             # small: lagging groups are rewritten in staged batches
             purge_batch_bytes=rng.choice((0, 1024)))
    return p

