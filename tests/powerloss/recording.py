"""The recorder: shim.c, an LD_PRELOAD library, and what it recorded.

A process kill keeps the page cache, so it cannot show a missing fdatasync.
The child under test runs with shim.c preloaded: it copies a file's whole
contents at every fsync/fdatasync/msync that succeeds, the directory listing
at every directory fsync, and every rename and unlink (with the contents of
the file it removes), for every file under $PRL_PL_ROOT, into a journal in
$PRL_PL_OUT.  The child is SIGKILLed; what the page cache then holds is the
"current" state.  ``Recording`` reads the journal back: per file (followed by
inode and incarnation: an unlinked inode number that comes back is a new
file, so a rename never loses track of data) its last synced and its last
contents, per directory its durable listing and every name change since.
"""
from __future__ import annotations

import os
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from tests.common import build_preload, preloaded

SHIM_C = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim.c")
DT_DIR = 4


def build_shim(dest_dir: str) -> str:
    """Compiles shim.c into dest_dir; returns the .so path."""
    return build_preload(SHIM_C, dest_dir)


def recorder_env(shim: str, root: str, out: str, k0: int) -> Dict[str, str]:
    """The environment variables that run a child under the recorder: files
    under `root` recorded into `out`, journal numbers from `k0` (see
    seed_journal)."""
    return dict(LD_PRELOAD=preloaded(shim), PRL_PL_ROOT=root, PRL_PL_OUT=out, PRL_PL_K0=str(k0))


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


def parse_journal(rec: Recording) -> None:
    """Reads rec.out/journal and the page cache's current state of rec.root into rec."""
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
