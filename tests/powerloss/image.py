"""Crash images: the disk states a power cut could leave, drawn from a
recording (docs/CRASH_SAFETY.md has the long form of the model).

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

An ``ImagePlan`` holds every choice of one image; ``materialize`` writes it
out, ``describe`` says it in words, ``minimize`` turns choices back to the
durable state while a failure stays.
"""
from __future__ import annotations

import os
import random
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from tests.powerloss.recording import Recording

PAGE = 4096
SECTOR = 512
WORD = 8
WORDS_PER_SECTOR = SECTOR // WORD
SECTORS_PER_PAGE = PAGE // SECTOR


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


def page_mask(choice: tuple) -> np.ndarray:
    """Per byte of a page: True where the image holds the new contents."""
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
        out[sl] = np.where(page_mask(choice), n[sl], o[sl])
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

