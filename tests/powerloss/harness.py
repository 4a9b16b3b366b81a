"""Power-loss simulation: record what each sync made durable, build the disk
images a power cut could leave, and check recovery on every one of them.

A process kill keeps the page cache, so it cannot show a missing fdatasync.
Here the writer child (writer.py) runs under an LD_PRELOAD recorder
(shim.c) that copies a file's whole contents at every fsync/fdatasync/msync
that succeeds, the directory listing at every directory fsync, and every
rename and unlink (with the contents of the file it removes).  The child is
SIGKILLed; what the page cache then holds is the "current" state.

The model (docs/CRASH_SAFETY.md has the long form):

* Data.  A file's durable contents are its last synced copy.  Each 4 KiB
  page that differs between that copy and the current contents may hold the
  old page, the new page, an intermediate version (new up to some 8-byte
  offset: a writeback in the middle of a copy), or a tear: every 512-byte
  sector chosen separately among those, and rarely a tear at 8-byte words
  (sectors not atomic; 8-byte aligned words are, format.h relies on it).
  A file's size is its synced size or its current size.  A file never
  synced has no durable bytes: size 0 or current, every page zeros or new.
* Names.  A directory's durable entries are its listing at its last fsync.
  Every entry change after it (create, rename, unlink) may or may not have
  reached the disk, each independently: a file takes any name it had since
  (or none), a file created since may be missing, a file deleted since may
  be back with its last durable contents.
* Files are followed by inode (and incarnation: an unlinked inode number
  that comes back is a new file), so a rename never loses track of data.

Each image is opened with ``recovery_mode="tolerate_tail"`` in a separate
checker process; the recovered state must be exactly the model state after
some prefix of the batches written, at or past the last acknowledged batch
(every batch ends with a unique marker, so the prefix is unique), byte for
byte (every entry, hard state, snapshot with its data, kv pair of every
group).  The checker then writes one more batch, closes, reopens and checks
again.  A chain of generations continues from a checked image, so recovery
after a power cut is itself power-cut.

Command line (for reproducing a saved failure):
    python harness.py check IMAGE_DIR [--opts JSON]   open an image, print its state
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)   # tests/model.py

PAGE = 4096
SECTOR = 512
WORD = 8
WORDS_PER_SECTOR = SECTOR // WORD
SECTORS_PER_PAGE = PAGE // SECTOR
DT_DIR = 4

SHIM_C = os.path.join(HERE, "shim.c")
WRITER_PY = os.path.join(HERE, "writer.py")
FAIL_ROOT = os.environ.get("PYRAFTLOG_POWERLOSS_SAVE", "/tmp/pyraftlog-powerloss-failures")

WRITER_DEFAULTS = dict(segment_size=64 * 1024, min_sync_interval=0.0, purge_threshold=1 << 20,
                       batches=200, wait_prob=0.04, reopen_prob=0.01, purge_prob=0.02, pause=0.0,
                       exit_without_close=False)
REOPEN_GROUP = 2**62 + 7   # the checker's own batch after recovery goes here


def writer_module():
    """writer.py, imported under a name no other test directory uses."""
    mod = sys.modules.get("powerloss_writer")
    if mod is None:
        spec = importlib.util.spec_from_file_location("powerloss_writer", WRITER_PY)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["powerloss_writer"] = mod
        spec.loader.exec_module(mod)
    return mod


def engine_opts(params: Dict[str, Any]) -> Dict[str, Any]:
    return dict(segment_size=params["segment_size"], purge_threshold=params["purge_threshold"],
                recovery_mode="tolerate_tail")


# --------------------------------------------------------------------- shim

def build_shim(dest_dir: str) -> str:
    """Compiles shim.c into dest_dir; returns the .so path."""
    so = os.path.join(dest_dir, "powerloss_shim.so")
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-Wall", "-o", so, SHIM_C, "-ldl", "-lpthread"],
                   check=True, capture_output=True, text=True)
    return so


# ---------------------------------------------------------------- recording

@dataclass
class Inc:
    """One incarnation of an inode: a file from its creation to its unlink."""
    key: Tuple[int, int]
    synced_k: int = -1
    synced: Optional[str] = None   # path of its last synced copy
    final: Optional[str] = None    # path of its last contents (run dir or a capture)
    label: str = ""                # a name it had, for reports


@dataclass
class Recording:
    """What one generation's child did to its directory, sync by sync."""
    root: str
    out: str
    incs: Dict[Tuple[int, int], Inc] = field(default_factory=dict)
    # dir rel path -> (k, {name: key}) of its last fsync
    durable: Dict[str, Tuple[int, Dict[str, Any]]] = field(default_factory=dict)
    # dir rel path -> [(k, key, name before, name after)]
    events: Dict[str, List[Tuple[int, Any, Optional[str], Optional[str]]]] = field(
        default_factory=lambda: defaultdict(list))
    current: Dict[str, Dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))
    unmodelled: List[str] = field(default_factory=list)
    failed_syncs: List[str] = field(default_factory=list)
    syncs: int = 0
    _cache: Dict[str, bytes] = field(default_factory=dict)

    def rel(self, path: str) -> Tuple[str, str]:
        r = os.path.relpath(path, self.root)
        d, n = os.path.split(r)
        return d, n

    def read(self, path: Optional[str]) -> Optional[bytes]:
        if path is None:
            return None
        b = self._cache.get(path)
        if b is None:
            with open(path, "rb") as f:
                b = f.read()
            self._cache[path] = b
        return b

    def versions(self, key) -> Tuple[Optional[bytes], bytes]:
        """(last synced contents or None, last contents)."""
        inc = self.incs[key]
        old = self.read(inc.synced)
        new = self.read(inc.final)
        if new is None:
            new = old if old is not None else b""
        return old, new

    def histories(self) -> Dict[str, Dict[Any, List[Optional[str]]]]:
        """For each directory: key -> the names it may have on disk, oldest
        (the durable one, None when absent) first, newest last."""
        dirs = set(self.durable) | set(self.events) | set(self.current) | {""}
        out = {}
        for d in sorted(dirs):
            k_d, dur = self.durable.get(d, (0, {}))
            hist: Dict[Any, List[Optional[str]]] = {key: [name] for name, key in dur.items()}
            for k, key, before, after in sorted(self.events.get(d, []), key=lambda e: e[0]):
                if k <= k_d:
                    continue
                h = hist.setdefault(key, [None])
                if before is not None and h[-1] != before:
                    h.append(before)
                if h[-1] != after:
                    h.append(after)
            for name, key in self.current.get(d, {}).items():
                h = hist.setdefault(key, [None])
                if h[-1] != name:
                    h.append(name)
            for key, h in hist.items():
                if key in self.current.get(d, {}).values():
                    continue
                if h[-1] is not None:   # gone without an event we saw: it left this dir
                    h.append(None)
            out[d] = hist
        return out


def _parse_journal(rec: Recording) -> None:
    gen: Dict[int, int] = defaultdict(int)

    def inc_of(ino: int, back: int = 0) -> Inc:
        key = (ino, max(0, gen[ino] - back))
        inc = rec.incs.get(key)
        if inc is None:
            inc = rec.incs[key] = Inc(key)
        return inc

    lines = []
    with open(os.path.join(rec.out, "journal")) as f:
        for line in f:
            if not line.endswith("\n"):
                continue  # the child died while writing it: its event never returned
            parts = line.rstrip("\n").split(" ", 2)
            lines.append((int(parts[1]), parts[0], parts[2]))
    lines.sort(key=lambda t: t[0])
    for k, kind, rest in lines:
        if kind == "S":
            op, ino, nlink, size, path = rest.split(" ", 4)
            rec.syncs += 1
            inc = inc_of(int(ino), back=1 if int(nlink) == 0 else 0)
            if k > inc.synced_k:
                inc.synced_k, inc.synced = k, os.path.join(rec.out, f"{k}.data")
            inc.label = inc.label or rec.rel(path)[1]
        elif kind == "L":
            op, ino, path = rest.split(" ", 2)
            d = os.path.relpath(path, rec.root)
            d = "" if d == "." else d
            listing = {}
            with open(os.path.join(rec.out, f"{k}.list")) as f:
                for ent in f:
                    e_ino, e_type, name = ent.rstrip("\n").split(" ", 2)
                    if int(e_type) == DT_DIR:
                        listing[name] = ("dir", os.path.join(d, name))
                    else:
                        inc = inc_of(int(e_ino))
                        inc.label = inc.label or name
                        listing[name] = inc.key
            if k > rec.durable.get(d, (-1, None))[0]:
                rec.durable[d] = (k, listing)
        elif kind == "R":
            ino, rep, paths = rest.split(" ", 2)
            src, dst = paths.split("\t")
            (sd, sn), (dd, dn) = rec.rel(src), rec.rel(dst)
            if int(rep):
                r = inc_of(int(rep))
                r.final = os.path.join(rec.out, f"{k}.data")
                rec.events[dd].append((k, r.key, dn, None))
                gen[int(rep)] += 1
            inc = inc_of(int(ino))
            inc.label = inc.label or sn
            if sd == dd:
                rec.events[sd].append((k, inc.key, sn, dn))
            else:
                rec.events[sd].append((k, inc.key, sn, None))
                rec.events[dd].append((k, inc.key, None, dn))
        elif kind == "D":
            ino, path = rest.split(" ", 1)
            d, n = rec.rel(path)
            inc = inc_of(int(ino))
            inc.label = inc.label or n
            inc.final = os.path.join(rec.out, f"{k}.data")
            rec.events[d].append((k, inc.key, n, None))
            gen[int(ino)] += 1
        elif kind == "F":
            rec.failed_syncs.append(rest)
        elif kind == "U":
            rec.unmodelled.append(f"{k} {rest}")
    # what the page cache holds now
    for dirpath, dirnames, filenames in os.walk(rec.root):
        d = os.path.relpath(dirpath, rec.root)
        d = "" if d == "." else d
        for name in dirnames:
            rec.current[d][name] = ("dir", os.path.join(d, name))
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            inc = inc_of(st.st_ino)
            inc.final = path
            inc.label = inc.label or name
            rec.current[d][name] = inc.key


def seed_journal(root: str, out: str) -> int:
    """Records the starting contents of `root` as durable (as if synced, with
    every directory fsynced); returns the next free k."""
    k = 1
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            shutil.copyfile(path, os.path.join(out, f"{k}.data"))
            lines.append(f"S {k} initial {st.st_ino} {st.st_nlink} {st.st_size} {path}\n")
            k += 1
        with open(os.path.join(out, f"{k}.list"), "w") as f:
            for name in sorted(dirnames):
                f.write(f"{os.lstat(os.path.join(dirpath, name)).st_ino} {DT_DIR} {name}\n")
            for name in sorted(filenames):
                f.write(f"{os.lstat(os.path.join(dirpath, name)).st_ino} 8 {name}\n")
        lines.append(f"L {k} initial {os.lstat(dirpath).st_ino} {dirpath}\n")
        k += 1
    with open(os.path.join(out, "journal"), "w") as f:
        f.writelines(lines)
    return k


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
                   start_from: Optional["ImagePlan"] = None,
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
    preload = " ".join(x for x in (os.environ.get("LD_PRELOAD"), shim) if x)  # ASan stays first
    env = dict(os.environ, LD_PRELOAD=preload, PRL_PL_ROOT=root, PRL_PL_OUT=out, PRL_PL_K0=str(k0),
               PYTHONUNBUFFERED="1", **(extra_env or {}))
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
        [sys.executable, WRITER_PY, "--dir", root, "--batches", batches_file, "--seed", str(seed),
         "--base", base_file, "--params", json.dumps(params)],
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
    _parse_journal(rec)
    return Generation(workdir=workdir, seed=seed, params=params, base=base, rec=rec,
                      batches=base + [ops for _, ops in recorded], acked=max(acked, closed),
                      written=written, kill=f"{kill[0]}{kill[1]}+{kill[2] * 1000:.1f}ms",
                      lines=lines, stderr=stderr, runtime=time.monotonic() - t0)


# ------------------------------------------------------------ crash images

@dataclass
class ImagePlan:
    """Every choice one crash image makes (materialize() builds it)."""
    names: Dict[Any, Optional[Tuple[str, str]]] = field(default_factory=dict)  # key -> (dir, name)
    sizes: Dict[Any, int] = field(default_factory=dict)
    # (key, page) -> ("sec", (leading new words per sector) * 8) | ("words", seed, p)
    pages: Dict[Tuple[Any, int], tuple] = field(default_factory=dict)
    style: str = ""

    def copy(self) -> "ImagePlan":
        return ImagePlan(dict(self.names), dict(self.sizes), dict(self.pages), self.style)


STYLES = ("durable", "current", "random", "random", "random", "torn", "old-names", "new-names")


def _padded(b: Optional[bytes], size: int) -> np.ndarray:
    n = -(-size // PAGE) * PAGE
    a = np.zeros(n, np.uint8)
    if b:
        m = min(len(b), size)
        a[:m] = np.frombuffer(b, np.uint8, m)
    return a


def diff_pages(rec: Recording, key, size: int) -> List[int]:
    old, new = rec.versions(key)
    o, n = _padded(old, size), _padded(new, size)
    if not len(o):
        return []
    return np.flatnonzero((o != n).reshape(-1, PAGE).any(axis=1)).tolist()


def _page_choice(rng: random.Random, style: Dict[str, float]) -> Optional[tuple]:
    r = rng.random()
    if r < style["words"]:
        return ("words", rng.getrandbits(32), rng.random())
    r -= style["words"]
    if r < style["torn"]:
        secs = []
        for _ in range(SECTORS_PER_PAGE):
            x = rng.random()
            secs.append(0 if x < 0.45 else WORDS_PER_SECTOR if x < 0.9
                        else rng.randint(1, WORDS_PER_SECTOR - 1))
        return ("sec", tuple(secs))
    r -= style["torn"]
    if r < style["cut"]:
        w = rng.randint(1, PAGE // WORD - 1)
        return ("sec", tuple(max(0, min(WORDS_PER_SECTOR, w - s * WORDS_PER_SECTOR))
                             for s in range(SECTORS_PER_PAGE)))
    if rng.random() < style["new"]:
        return ("sec", (WORDS_PER_SECTOR,) * SECTORS_PER_PAGE)
    return None   # old


def plan_image(rec: Recording, rng: random.Random, style_name: str) -> ImagePlan:
    """Draws one crash image."""
    if style_name == "durable":
        st = dict(words=0, torn=0, cut=0, new=0, last=0.0, first=1.0, size=0.0)
    elif style_name == "current":
        st = dict(words=0, torn=0, cut=0, new=1, last=1.0, first=0.0, size=1.0)
    else:
        st = dict(words=rng.choice((0, 0.02, 0.05)), torn=rng.choice((0, 0.1, 0.25)),
                  cut=rng.choice((0, 0.1, 0.2)), new=rng.choice((0.1, 0.5, 0.9, 1.0)),
                  last=rng.choice((0.3, 0.6, 0.9)), first=0.0, size=rng.choice((0.0, 0.5, 1.0)))
        st["first"] = (1 - st["last"]) / 2
        if style_name == "torn":
            st.update(words=0.15, torn=0.6, cut=0.15, new=0.5)
        elif style_name == "old-names":
            st.update(last=0.0, first=1.0)
        elif style_name == "new-names":
            st.update(last=1.0, first=0.0)
    plan = ImagePlan(style=style_name)
    hists = rec.histories()
    present_dirs = {""}
    for d in sorted(hists, key=lambda x: (x.count(os.sep) + (x != ""), x)):
        if d not in present_dirs:
            continue
        chosen: Dict[str, List[Any]] = defaultdict(list)
        for key, h in sorted(hists[d].items(), key=lambda kv: repr(kv[0])):
            r = rng.random()
            name = h[-1] if r < st["last"] else h[0] if r < st["last"] + st["first"] \
                else rng.choice(h)
            if name is not None:
                chosen[name].append(key)
        for name, keys in chosen.items():
            key = keys[0] if len(keys) == 1 else rng.choice(keys)
            if isinstance(key, tuple) and key and key[0] == "dir":
                present_dirs.add(key[1])
            plan.names[key] = (d, name)
    for key in plan.names:
        if isinstance(key, tuple) and key and key[0] == "dir":
            continue
        old, new = rec.versions(key)
        sizes = [len(old) if old is not None else 0, len(new)]
        size = sizes[1] if sizes[0] == sizes[1] or rng.random() < st["size"] else sizes[0]
        plan.sizes[key] = size
        for pg in diff_pages(rec, key, size):
            c = _page_choice(rng, st)
            if c is not None:
                plan.pages[(key, pg)] = c
    return plan


def _mask(choice: tuple) -> np.ndarray:
    if choice[0] == "words":
        m = np.random.default_rng(choice[1]).random(PAGE // WORD) < choice[2]
    else:
        m = np.zeros(PAGE // WORD, bool)
        for s, c in enumerate(choice[1]):
            m[s * WORDS_PER_SECTOR:s * WORDS_PER_SECTOR + c] = True
    return np.repeat(m, WORD)


def file_bytes(rec: Recording, plan: ImagePlan, key) -> bytes:
    size = plan.sizes[key]
    old, new = rec.versions(key)
    o, n = _padded(old, size), _padded(new, size)
    out = o.copy()
    for (k, pg), choice in plan.pages.items():
        if k != key or pg * PAGE >= len(out):
            continue   # not this file, or past its chosen size
        sl = slice(pg * PAGE, (pg + 1) * PAGE)
        out[sl] = np.where(_mask(choice), n[sl], o[sl])
    return out[:size].tobytes()


def materialize(rec: Recording, plan: ImagePlan, dest: str) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    for key, where in sorted(plan.names.items(), key=lambda kv: len(kv[1][0]) if kv[1] else 0):
        if where is None:
            continue
        d, name = where
        path = os.path.join(dest, d, name)
        if isinstance(key, tuple) and key and key[0] == "dir":
            os.makedirs(path, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(file_bytes(rec, plan, key))


def describe(rec: Recording, plan: ImagePlan) -> str:
    """The plan's choices, in words."""
    hists = rec.histories()
    lines = [f"style: {plan.style}"]
    for d, hist in sorted(hists.items()):
        for key, h in sorted(hist.items(), key=lambda kv: repr(kv[0])):
            where = plan.names.get(key)
            name = where[1] if where and where[0] == d else None
            if name != h[0]:
                lines.append(f"name  {d or '.'}/ {key}: {name!r}, not the durable {h[0]!r} "
                             f"(names since the last directory fsync: {h})")
    for key in sorted((k for k in plan.sizes), key=repr):
        old, new = rec.versions(key)
        where = plan.names[key]
        label = os.path.join(*where) if where else "?"
        ol = len(old) if old is not None else None
        pages = sorted((pg, c) for (k, pg), c in plan.pages.items() if k == key)
        dp = diff_pages(rec, key, plan.sizes[key])
        if plan.sizes[key] != (ol or 0) or dp:
            lines.append(f"file  {label} (inode {key[0]}.{key[1]}): size {plan.sizes[key]} "
                         f"(synced {ol}, current {len(new)}); pages differing from the synced "
                         f"copy: {dp}")
        for pg, c in pages:
            if c[0] == "words":
                what = f"8-byte words new with probability {c[2]:.2f} (seed {c[1]})"
            elif all(x == WORDS_PER_SECTOR for x in c[1]):
                what = "new"
            else:
                what = "sectors " + " ".join(
                    "new" if x == WORDS_PER_SECTOR else "old" if x == 0 else f"new<{x * WORD}B"
                    for x in c[1])
            lines.append(f"      page {pg} (offset {pg * PAGE}): {what}")
        for pg in dp:
            if (key, pg) not in plan.pages:
                lines.append(f"      page {pg} (offset {pg * PAGE}): old (synced)")
    return "\n".join(lines)


# ------------------------------------------------------------------- model

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


class Expected:
    """The model state after every prefix of `batches`."""

    def __init__(self, batches: List[list], groups, keys):
        from model import Model
        self.groups, self.keys = list(groups), list(keys)
        m = Model()
        cur = {g: group_digest(m, g, self.keys)[0] for g in self.groups}
        self.prefix_hashes = [dict(cur)]
        self.group_bounds = [(m.groups(), m.groups_upper_bound())]
        self.table: Dict[str, List[int]] = defaultdict(list)
        self.table[combine(cur)].append(0)
        self.models_at: Dict[int, Any] = {}
        for i, ops in enumerate(batches, 1):
            m.write(ops)
            for g in {op[1] for op in ops}:
                cur[g] = group_digest(m, g, self.keys)[0]
            self.prefix_hashes.append(dict(cur))
            self.group_bounds.append((m.groups(), m.groups_upper_bound()))
            self.table[combine(cur)].append(i)
        self.batches = batches

    def model_at(self, p: int):
        from model import Model
        m = Model()
        for ops in self.batches[:p]:
            m.write(ops)
        return m


# ----------------------------------------------------------------- checker

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
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errf, cwd=HERE)

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


# ----------------------------------------------------------------- verdicts

@dataclass
class Verdict:
    kind: str             # ok | acked_lost | not_prefix | recovery_error | crash | reopen | groups
    prefix: Optional[int] = None
    detail: str = ""
    stats: Dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


def judge(res: Dict[str, Any], exp: Expected, required: int) -> Verdict:
    if res["status"] == "crash":
        return Verdict("crash", detail=res["error"] + "\n" + res.get("stderr", ""))
    if res["status"] == "error":
        return Verdict("recovery_error", detail=f"{res['phase']}: {res['error']}\n"
                                                 f"{res.get('traceback', '')}")
    hashes = {int(g): h for g, h in res["hashes"].items()}
    ps = exp.table.get(combine(hashes), [])
    if not ps:
        # the prefix with the most equal groups, as a hint
        best = max(range(len(exp.prefix_hashes)),
                   key=lambda p: (sum(exp.prefix_hashes[p][g] == h for g, h in hashes.items()), p))
        bad = [g for g, h in hashes.items() if exp.prefix_hashes[best][g] != h]
        m = exp.model_at(best)
        lines = [f"recovered state is no prefix of the batches written (required >= {required}, "
                 f"{len(exp.batches)} recorded); closest prefix {best}; groups differing: {bad}"]
        for g in bad:
            lines.append(f"  group {g}: recovered {res['summary'][str(g)]}")
            lines.append(f"  group {g}: model     {group_digest(m, g, exp.keys)[1]}")
        return Verdict("not_prefix", best, "\n".join(lines))
    ok_ps = [p for p in ps if p >= required]
    if not ok_ps:
        p = max(ps)
        return Verdict("acked_lost", p, f"recovered exactly the first {p} batches, but batches "
                                        f"{p + 1}..{required} were acknowledged (or held by the "
                                        f"starting image)")
    p = min(ok_ps)
    lo, hi = exp.group_bounds[p]
    got = sorted(int(g) for g in res["groups"])
    if not set(lo) <= set(got) <= set(hi):
        return Verdict("groups", p, f"groups() = {got}; must contain {lo} and lie within {hi}")
    re_hashes = {int(g): h for g, h in res["reopen_hashes"].items()}
    if re_hashes != exp.prefix_hashes[p] or res["reopen_marker"] != repr(b"after-recovery"):
        bad = [g for g in re_hashes if re_hashes[g] != exp.prefix_hashes[p][g]]
        return Verdict("reopen", p, f"after recovery to prefix {p}, one more batch, close and "
                                    f"reopen: groups differing {bad}, marker "
                                    f"{res['reopen_marker']}")
    if str(REOPEN_GROUP) not in res["reopen_groups"]:
        return Verdict("reopen", p, f"reopened groups() lacks {REOPEN_GROUP}")
    return Verdict("ok", p, stats=res.get("stats", {}))


# ------------------------------------------------------------ orchestration

@dataclass
class Failure:
    gen: int
    image: int
    verdict: Verdict
    saved: str = ""      # where the image is, if saved
    minimal: str = ""    # the minimised image's choices, in words


@dataclass
class ChainResult:
    images: int = 0
    counts: Dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failures: List[Failure] = field(default_factory=list)
    generations: List[str] = field(default_factory=list)
    # of the images that recovered correctly: how far past the last
    # acknowledged batch, and how many had a torn tail cut
    beyond_acked: List[int] = field(default_factory=list)
    tails_cut: int = 0

    def summary(self) -> str:
        c = self.counts
        ahead = sum(1 for x in self.beyond_acked if x > 0)
        return (f"{self.images} images: ok {c['ok']}, acknowledged batches lost {c['acked_lost']}, "
                f"partial/not-a-prefix {c['not_prefix']}, recovery errors {c['recovery_error']}, "
                f"process crashes {c['crash']}, reopen failures {c['reopen']}, "
                f"groups() mismatches {c['groups']}; of the ok ones {ahead} kept unacknowledged "
                f"batches (up to {max(self.beyond_acked, default=0)}), {self.tails_cut} had a torn "
                f"tail cut")

    def add(self, other: "ChainResult") -> None:
        self.images += other.images
        for k, n in other.counts.items():
            self.counts[k] += n
        self.failures.extend(other.failures)
        self.generations.extend(other.generations)
        self.beyond_acked.extend(other.beyond_acked)
        self.tails_cut += other.tails_cut


def minimize(rec: Recording, plan: ImagePlan, kind: str, check_fn, budget: int = 80) -> ImagePlan:
    """Greedy: turn each page choice back to 'old' and each name back to its
    durable one, keeping a change whenever the failure stays; repeated while
    something changes (at most `budget` checks)."""
    cur = plan.copy()
    tries = 0
    hists = rec.histories()
    changed = True
    while changed and tries < budget:
        changed = False
        for kp in sorted(cur.pages, key=repr):
            if tries >= budget:
                break
            cand = cur.copy()
            del cand.pages[kp]
            tries += 1
            if check_fn(cand).kind == kind:
                cur, changed = cand, True
        for key in sorted(cur.sizes, key=repr):
            old, _ = rec.versions(key)
            want_size = len(old) if old is not None else 0
            if tries >= budget or cur.sizes[key] == want_size:
                continue
            cand = cur.copy()
            cand.sizes[key] = want_size
            tries += 1
            if check_fn(cand).kind == kind:
                cur, changed = cand, True
        for d, hist in sorted(hists.items()):
            for key, h in sorted(hist.items(), key=lambda kv: repr(kv[0])):
                if tries >= budget:
                    break
                want = (d, h[0]) if h[0] is not None else None
                if cur.names.get(key) == want:
                    continue
                cand = cur.copy()
                if want is None:
                    del cand.names[key]
                    cand.sizes.pop(key, None)
                    cand.pages = {kp: c for kp, c in cand.pages.items() if kp[0] != key}
                else:
                    if want in cand.names.values():
                        continue
                    if key not in cand.sizes and not (isinstance(key, tuple) and key[0] == "dir"):
                        old, _ = rec.versions(key)
                        cand.sizes[key] = len(old) if old is not None else 0
                    cand.names[key] = want
                tries += 1
                if check_fn(cand).kind == kind:
                    cur, changed = cand, True
    return cur


def plan_to_dict(plan: ImagePlan) -> Dict[str, Any]:
    return {"names": plan.names, "sizes": plan.sizes, "pages": plan.pages, "style": plan.style}


def plan_from_dict(d: Dict[str, Any]) -> ImagePlan:
    return ImagePlan(d["names"], d["sizes"], d["pages"], d["style"])


def save_failure(dest_root: str, gen: Generation, gi: int, ii: int, plan: ImagePlan,
                 verdict: Verdict, minimal: Optional[ImagePlan], exp: Expected) -> str:
    """Saves the image (and its minimised form), the choices in words and,
    once per generation, the recording it was built from."""
    gdir = os.path.join(dest_root, f"gen{gi}")
    if not os.path.isdir(os.path.join(gdir, "recording")):
        shutil.copytree(gen.workdir, os.path.join(gdir, "recording"), dirs_exist_ok=True)
        with open(os.path.join(gdir, "batches.pickle"), "wb") as f:
            pickle.dump({"batches": exp.batches, "required": gen.required,
                         "params": gen.params}, f)
    dest = os.path.join(gdir, f"img{ii}-{verdict.kind}")
    os.makedirs(dest, exist_ok=True)
    materialize(gen.rec, plan, os.path.join(dest, "image"))
    if minimal is not None:
        materialize(gen.rec, minimal, os.path.join(dest, "image-minimal"))
    with open(os.path.join(dest, "report.txt"), "w") as f:
        f.write(f"verdict: {verdict.kind} (prefix {verdict.prefix})\n{verdict.detail}\n\n")
        f.write(f"writer seed {gen.seed}, params {json.dumps(gen.params)}, kill {gen.kill}\n")
        f.write(f"batches: {len(gen.base)} at start, {len(gen.batches)} recorded, "
                f"written {gen.written}, acknowledged {gen.acked}, required {gen.required}\n\n")
        f.write("image choices:\n" + describe(gen.rec, plan) + "\n\n")
        if minimal is not None:
            f.write("minimised image choices (image-minimal/):\n" + describe(gen.rec, minimal)
                    + "\n\n")
        f.write("reproduce (on a copy: recovery changes the directory):\n"
                f"  rm -rf /tmp/x && cp -a {dest}/image{'-minimal' if minimal else ''} /tmp/x && "
                f"cd /work/main && .venv/bin/python tests/powerloss/harness.py check /tmp/x "
                f"--opts '{json.dumps(engine_opts(gen.params))}'\n"
                f"  (the expected states: {gdir}/batches.pickle, replay with tests/model.py)\n\n")
        f.write("writer output (last 40 lines):\n" + "\n".join(gen.lines[-40:]) + "\n")
    with open(os.path.join(dest, "plan.pickle"), "wb") as f:
        pickle.dump({"plan": plan_to_dict(plan),
                     "minimal": plan_to_dict(minimal) if minimal else None}, f)
    return dest


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


def run_chain(seed: int, generations: int, images: int, workdir: str, shim: str,
              batches: int = 150, log=lambda s: None, checker: Optional[Checker] = None,
              minimize_budget: int = 60, save_per_kind: int = 2) -> ChainResult:
    """Runs `generations` writer generations, each from a crash image of the
    previous one that recovered correctly, and checks `images` images of each."""
    universe = writer_module().universe
    rng = random.Random(seed)
    result = ChainResult()
    own_checker = checker is None
    checker = checker or Checker()
    groups, keys = universe()
    base: List[list] = []
    start: Optional[Tuple[Recording, ImagePlan]] = None
    dest_root: Optional[str] = None
    try:
        for gi in range(generations):
            params = random_params(rng, batches)
            gen = run_generation(os.path.join(workdir, f"gen{gi}"), shim, rng.getrandbits(31),
                                 params, base, start_from=start[1] if start else None,
                                 start_rec=start[0] if start else None)
            if gen.rec.unmodelled:
                raise AssertionError(f"calls the model does not cover: {gen.rec.unmodelled[:5]}")
            if gen.rec.failed_syncs:
                raise AssertionError(f"syncs failed in the writer: {gen.rec.failed_syncs[:5]}")
            exp = Expected(gen.batches, groups, keys)
            opts = engine_opts(params)
            log(f"gen {gi}: seed {gen.seed}, {len(gen.base)} batches at start, "
                f"{len(gen.batches) - len(gen.base)} recorded, written {gen.written}, "
                f"acked {gen.acked}, {gen.rec.syncs} syncs, kill {gen.kill}, {gen.runtime:.1f}s")
            result.generations.append(f"seed {gen.seed} kill {gen.kill} acked {gen.acked}/"
                                      f"{len(gen.batches)}")
            good: List[Tuple[ImagePlan, int]] = []
            img = os.path.join(workdir, "image")
            for ii in range(images):
                style = STYLES[ii] if ii < 2 else rng.choice(STYLES[2:])
                plan = plan_image(gen.rec, random.Random(rng.getrandbits(64)), style)

                def check_plan(pl: ImagePlan) -> Verdict:
                    materialize(gen.rec, pl, img)
                    return judge(checker.check(img, opts, groups, keys), exp, gen.required)

                v = check_plan(plan)
                result.images += 1
                result.counts[v.kind] += 1
                if v.ok:
                    good.append((plan, v.prefix))
                    result.beyond_acked.append(v.prefix - gen.required)
                    result.tails_cut += bool(v.stats.get("dropped_tail_bytes"))
                    continue
                log(f"gen {gi} image {ii} ({style}): {v.kind}: {v.detail.splitlines()[0]}")
                same = sum(1 for f in result.failures if f.gen == gi and f.verdict.kind == v.kind)
                f = Failure(gi, ii, v)
                result.failures.append(f)
                if same >= save_per_kind:
                    continue   # counted, not saved: the same kind is saved already
                minimal = None
                if minimize_budget and same == 0:
                    minimal = minimize(gen.rec, plan, v.kind, check_plan, minimize_budget)
                    f.minimal = describe(gen.rec, minimal)
                if dest_root is None:
                    dest_root = os.path.join(FAIL_ROOT, time.strftime("%Y%m%d-%H%M%S") +
                                             f"-chain{seed}")
                f.saved = save_failure(dest_root, gen, gi, ii, plan, v, minimal, exp)
                log(f"  saved to {f.saved}")
            shutil.rmtree(img, ignore_errors=True)
            if not good:
                break
            plan, p = rng.choice(good)
            start = (gen.rec, plan)
            base = gen.batches[:p]
    finally:
        if own_checker:
            checker.close()
    return result


def main(argv: List[str]) -> int:
    if argv and argv[0] == "serve":
        serve()
        return 0
    if argv and argv[0] == "check":
        import argparse
        ap = argparse.ArgumentParser()
        ap.add_argument("image")
        ap.add_argument("--opts", default=json.dumps(engine_opts(WRITER_DEFAULTS)))
        a = ap.parse_args(argv[1:])
        groups, keys = writer_module().universe()
        res = check_image(a.image, json.loads(a.opts), list(groups), list(keys))
        print(json.dumps(res, indent=1))
        return 0 if res["status"] == "ok" else 1
    if argv and argv[0] == "run":
        import argparse
        ap = argparse.ArgumentParser()
        ap.add_argument("--seed", type=int, default=1)
        ap.add_argument("--generations", type=int, default=2)
        ap.add_argument("--images", type=int, default=20)
        ap.add_argument("--batches", type=int, default=150)
        a = ap.parse_args(argv[1:])
        with tempfile.TemporaryDirectory(prefix="powerloss-") as tmp:
            shim = build_shim(tmp)
            res = run_chain(a.seed, a.generations, a.images, os.path.join(tmp, "w"), shim,
                            batches=a.batches, log=print)
        print(res.summary())
        for f in res.failures:
            print(f"FAIL gen {f.gen} image {f.image}: {f.verdict.kind}: {f.saved}")
        return 1 if res.failures else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
