"""The walker's rules: where the chain of batches breaks, what the break is.

The log is one chain of batches, lsn 1, 2, 3, ... across segments (each
segment header names the lsn its first batch carries).  Recovery
(pyraftlog/recovery.py, per recovery mode) and the offline tools
(pyraftlog/tools/inspector.py: verify, inspect, dump) walk it the same way
and meet the same breaks; this module holds what a break *is*, once, and
each of them holds only its policy — what it does with each kind:

* CHAIN: the successor segment starts where this segment's valid batches
  end.  In a segment that has a successor, the writer made every batch
  durable before it wrote the successor (csrc/log.c, rotate), so whatever
  follows is a tail an earlier recovery already cut.
* END: the newest segment ends cleanly (a zero header, or a recycled file's
  previous life) and no valid batch follows.
* TORN: the newest segment breaks (damage, or a clean end with valid
  batches after it) and no valid batch after the break carries a durability
  watermark (lsn - sync_lag) at or past it: batches written but never
  acknowledged, which a crash may tear (their pages reach the disk in any
  order).
* ACKED: the newest segment breaks, and a later batch shows the damaged one
  had been acknowledged: corruption, even at the end of the log.
* FOLLOWS: the newest segment ends cleanly, and valid batches that were
  acknowledged follow: corruption.
* MISSING: a segment with a successor ends before the successor's first
  batch: batches are missing.

And, for whole segments: `unfinished` (a newest segment whose header never
became durable and in which nothing was acknowledged: a creation or
rotation a crash interrupted) and `chain_gap` (a segment that does not start
where its predecessor ended)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, List, Optional

from . import record as R
from ._native import REASONS, check, ffi, is_clean_end, lib
from .directory import check_regular

CHAIN, END, TORN, ACKED, FOLLOWS, MISSING = "chain", "end", "torn", "acked", "follows", "missing"
_SEGMENT_NAME = re.compile(r"^([0-9a-f]{16})\.seg$")
_FREE_NAME = re.compile(r"^([0-9a-f]{16})\.free$")


def segment_name(seq: int) -> str:
    return f"{seq:016x}.seg"


def list_segments(path: str) -> List[int]:
    """Sequence numbers of the segment files in `path`, ascending; a name of
    the format that is not a regular file is a CorruptionError."""
    return _list(path, _SEGMENT_NAME)


def list_free(path: str) -> List[int]:
    """Ids of the free (prepared or recycled) segment files in `path`."""
    return _list(path, _FREE_NAME)


def _list(path: str, pattern: "re.Pattern[str]") -> List[int]:
    out = []
    for name in os.listdir(path):
        m = pattern.match(name)
        # only names of the format are looked at; a file gone meanwhile (a
        # live writer recycled it, for the CLI) is left out
        if m and check_regular(os.path.join(path, name)):
            out.append(int(m.group(1), 16))
    return sorted(out)


@dataclass
class Found:
    offset: int
    lsn: int
    length: int
    watermark: int  # every batch up to this lsn had been durable when it was written


def probe(base: Any, size: int, seq: int, offset: int, min_lsn: int) -> Optional[Found]:
    """The first valid batch of segment `seq` at or after `offset` with an
    lsn >= min_lsn, or None."""
    out = ffi.new("uint64_t[2]")
    out32 = ffi.new("uint32_t[2]")
    check(lib.prl_scan_probe(base, size, seq, offset, min_lsn, out, out + 1, out32, out32 + 1),
          "probe")
    if not out[0]:
        return None
    return Found(int(out[0]), int(out[1]), int(out32[0]), int(out[1]) - int(out32[1]))


def following_batches(base: Any, size: int, seq: int, offset: int, lsn: int) -> List[Found]:
    """Every valid batch of segment `seq` at or after `offset`, in order, each
    with an lsn above the previous one: what follows a break in the log."""
    out: List[Found] = []
    while True:
        f = probe(base, size, seq, offset, lsn)
        if f is None:
            return out
        out.append(f)
        offset, lsn = f.offset + f.length, f.lsn + 1


@dataclass
class Break:
    """Where the valid batches of a segment stop (`offset`, the next lsn
    expected there: `lsn`), why (`reason`: the scanner's code), and what."""
    kind: str
    offset: int
    lsn: int
    reason: int
    bad_len: int = 0           # bytes of the invalid batch at `offset` (0: unknown)
    following: List[Found] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return is_clean_end(self.reason)

    @property
    def why(self) -> str:
        return REASONS.get(self.reason, "?")

    def text(self) -> str:
        """The one wording of this break (CorruptionError's reason, a tool's
        problem line)."""
        if self.kind == FOLLOWS:
            return "valid batches follow the end of the log"
        if self.kind == MISSING:
            return (self.why if not self.clean else "segment ends early") + \
                f"; batches from {self.lsn} are missing"
        if self.kind == ACKED:
            return self.why + "; a later batch shows it was acknowledged"
        if self.kind == TORN:
            return ("valid batches follow the end of the log" if self.clean else self.why) + \
                " (torn tail: never acknowledged)"
        return self.why

    def span(self) -> int:
        """Bytes from the break to the end of what follows it (a torn tail cut)."""
        return max([self.bad_len] + [f.offset + f.length - self.offset for f in self.following])


def classify(base: Any, size: int, seq: int, offset: int, lsn: int, reason: int, bad_len: int,
             newest: bool, next_first: Optional[int], chain_on_clean: bool = False) -> Break:
    """What the break at `offset` of segment `seq` is (see the module doc).
    `next_first`: the first lsn of the successor (None: no successor, or its
    header is invalid); `chain_on_clean`: a clean end before a successor
    whose header is invalid counts as CHAIN (the successor's header is the
    problem, found when it is walked)."""
    b = Break(END, offset, lsn, reason, bad_len)
    if not newest and (next_first == lsn or (chain_on_clean and next_first is None and b.clean)):
        b.kind = CHAIN
    elif newest:
        b.following = following_batches(base, size, seq, offset + R.ALIGN, lsn)
        if b.clean and not b.following:
            b.kind = END
        elif not acknowledged(b):
            b.kind = TORN  # a clean end included: what follows it was never acknowledged
        else:
            b.kind = FOLLOWS if b.clean else ACKED
    else:
        nxt = probe(base, size, seq, offset + R.ALIGN, lsn)
        b.following = [nxt] if nxt else []
        b.kind = MISSING
    return b


def acknowledged(b: Break) -> bool:
    """A later batch's watermark covers the break: what is there had been
    acknowledged."""
    return max((f.watermark for f in b.following), default=0) >= b.lsn


def unfinished(base: Any, size: int, seq: int, reason: int, strict: bool) -> Optional[List[Found]]:
    """If the newest segment (header check result `reason`) is a creation or
    rotation a crash interrupted, the batches found in it (none were
    acknowledged; an empty list if there are none); else None.  Its header
    is synced with its first batches (one fdatasync covers the file), so if
    any batch in it had been acknowledged, a later one's watermark says so.
    `strict` accepts only a segment without batches whose header is all zero
    or a recycled file's old one; otherwise any invalid header qualifies."""
    if not reason:
        return None
    found = following_batches(base, size, seq, R.SEGMENT_HEADER_SIZE, 0) if size else []
    if found:
        first = min(f.lsn for f in found)
        if strict or any(f.watermark >= first for f in found):
            return None
        return found
    if not strict or zero_header(base, size) or reason == lib.PRL_R_SEQ_MISMATCH:
        return []
    return None


def chain_gap(first_lsn: int, expect: int) -> str:
    """The wording of a segment that does not start where its predecessor ended."""
    return (f"segment starts at batch {first_lsn}, but the previous segment ends before "
            f"batch {expect}")


def first_batch_lsn(base: Any, size: int, seq: int) -> Optional[int]:
    """The lsn in the header slot of a segment's first batch if that slot names
    this segment's seq (unchecked: a cheap filter before a probe)."""
    end = R.SEGMENT_HEADER_SIZE + R.BATCH_HEADER_SIZE
    if size < end:
        return None
    h = R.BATCH_HEADER.unpack(ffi.buffer(base, end)[R.SEGMENT_HEADER_SIZE:end])
    return int(h[2]) if h[3] == seq else None


def header_size(base: Any) -> int:
    """segment_size from a valid segment header."""
    return int(R.SEGMENT_HEADER.unpack(ffi.buffer(base, R.SEGMENT_HEADER_SIZE))[5])


def zero_header(base: Any, size: int) -> bool:
    n = min(size, R.SEGMENT_HEADER_SIZE)
    return n == 0 or bytes(ffi.buffer(base, n)) == bytes(n)
