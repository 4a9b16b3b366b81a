"""The per-group index: every group's state lives in C (csrc/group_index.c:
one hash table from group id to a compact struct; the rules by which writes
and replay change a group are there too).  This module is its Python face:
`GroupIndex` owns the C index plus what is rare and variable-sized (a
snapshot's metadata and file reference, a group's key-value space, a purge
rewrite's staged entries), and `GroupState` is a read-only view of one
group, taken when asked for (no Python object per group is kept).

A group's entries are contiguous: entry `base_index + 1 + k` lives at a
position ((segment seq mod 2^32) << 32 | offset of its record, 8 bytes; see
`position_seq`).  Terms are stored once per run of equal terms.

Records that stop being needed are released: C collects the ones it drops
(`flush_release` hands them to the log's live-byte accounting); the
changes made here in Python append theirs to the `release` array the
caller passes.  Not thread-safe: the Engine calls it with its lock held."""
from __future__ import annotations

from array import array
from collections.abc import Mapping
from functools import partial
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ._native import check, ffi, lib
from .types import ConfState, HardState, SnapshotMeta

SnapRef = Tuple[int, int, int]  # (data_size, file_id, data_crc)
GUESSED = -1  # base_pos of a base that replay inferred
_C_GUESSED = (1 << 64) - 1
_EMPTY_META = SnapshotMeta(0, 0)
_EMPTY_HS = HardState()
_U64 = (1 << 64) - 1
_HALF = 1 << 63


def position_seq(pos: int, head: int) -> int:
    """The segment seq of a position.  Positions carry it modulo 2^32 (the
    log never stops at a seq), and no record the log still holds is 2^32
    segments behind the head segment `head`."""
    return head - ((head - (pos >> 32)) & 0xFFFFFFFF)


def position_order(pos: int, ref: int) -> int:
    """A key that orders positions by where they are in the log, for
    positions within 2^63 bytes of log of position `ref` (all live ones)."""
    return ((pos - ref) & _U64) ^ _HALF


def _opt(pos: int) -> Optional[int]:
    return None if pos == 0 else GUESSED if pos == _C_GUESSED else pos


def _u64s(values: Any) -> Any:
    """A contiguous uint64 buffer of `values` (numpy array, array('Q'), list)."""
    if isinstance(values, np.ndarray):
        return np.ascontiguousarray(values, dtype=np.uint64)
    if isinstance(values, array) and values.typecode == "Q":
        return values
    return array("Q", values)


class GroupState:
    """One group as it was when the view was taken (`GroupIndex.get`)."""

    __slots__ = ("_ix", "id", "base_index", "base_term", "last_index", "hard_state", "hs_pos",
                 "snap_pos", "base_pos", "snap_meta", "snap_ref", "kv", "first_pos", "n")

    def __init__(self, ix: "GroupIndex", g: int, info: Any) -> None:
        self._ix = ix
        self.id = g
        self.base_index = int(info.base_index)
        self.base_term = int(info.base_term)
        self.last_index = int(info.last_index)
        self.n = int(info.n)
        self.hs_pos = _opt(int(info.hs_pos))
        self.hard_state = (HardState(int(info.hs_term), int(info.hs_vote), int(info.hs_commit))
                           if self.hs_pos is not None else HardState())
        self.snap_pos = _opt(int(info.snap_pos))
        self.base_pos = _opt(int(info.base_pos))
        self.first_pos = int(info.first_pos)
        snap = ix._snaps.get(g)
        self.snap_meta, self.snap_ref = snap if snap is not None else (_EMPTY_META, None)
        self.kv: Optional[Dict[bytes, Tuple[bytes, int]]] = ix._kv.get(g)

    @property
    def first_index(self) -> int:
        return self.base_index + 1

    @property
    def positions(self) -> array[int]:
        """Positions of all entries (a copy)."""
        return self._ix.positions(self.id, self.base_index + 1, self.last_index + 1)

    def term(self, i: int) -> int:
        """Term of entry i; the caller checked base_index <= i <= last_index."""
        if i == self.base_index:
            return self.base_term
        t = self._ix.term(self.id, i)
        assert t is not None
        return t

    def term_array(self, lo: int, hi: int) -> "np.ndarray":
        """Terms of entries [lo, hi) as a numpy uint64 array, checked by the caller."""
        return self._ix.term_array(self.id, lo, hi)

    def pins(self) -> List[int]:
        """Positions of the records other than entries this group still needs."""
        out = [p for p in {self.hs_pos, self.snap_pos, self.base_pos} if p not in (None, GUESSED)]
        if self.kv:
            out.extend(p for _, p in self.kv.values())
        return out

    def oldest_position(self) -> Optional[int]:
        """Position of the oldest record this group needs (None: none)."""
        needed = self.pins()
        if self.n:
            needed.append(self.first_pos)
        if not needed:
            return None
        return min(needed, key=partial(position_order, ref=needed[0]))


class _Groups(Mapping[int, GroupState]):
    """group id -> GroupState, as a read-only mapping over the C index."""

    def __init__(self, ix: "GroupIndex") -> None:
        self._ix = ix

    def __len__(self) -> int:
        return self._ix.count()

    def __iter__(self) -> Iterator[int]:
        return iter(self._ix.ids())

    def __contains__(self, g: object) -> bool:
        return isinstance(g, int) and self._ix.get(g) is not None

    def __getitem__(self, g: int) -> GroupState:
        st = self._ix.get(g)
        if st is None:
            raise KeyError(g)
        return st


class GroupIndex:
    """All groups; and the entries a purge rewrite has staged for a group but
    not yet adopted (purge.py)."""

    def __init__(self) -> None:
        hp = ffi.new("prl_index **")
        check(lib.prl_index_new(hp), "group index")
        self.h = ffi.gc(hp[0], lib.prl_index_free)
        self._info = ffi.new("prl_group_info *")
        self._stats = ffi.new("prl_index_stats_t *")
        self._u64 = ffi.new("uint64_t *")
        self._one = ffi.new("uint64_t[2]")  # term and position of append_one
        self._b3 = ffi.new("uint64_t[3]")
        self._unpack = ffi.unpack
        self._snaps: Dict[int, Tuple[SnapshotMeta, Optional[SnapRef]]] = {}
        self._kv: Dict[int, Dict[bytes, Tuple[bytes, int]]] = {}
        self.groups = _Groups(self)
        # group -> runs of STAGE records: (first index, terms, positions)
        self.staged: Dict[int, List[Tuple[int, "np.ndarray", "np.ndarray"]]] = {}

    # -- reading -----------------------------------------------------------

    def get(self, g: int) -> Optional[GroupState]:
        rc = lib.prl_index_info(self.h, g, self._info)
        if rc == lib.PRL_E_NO_GROUP:
            return None
        check(rc, "index info")
        return GroupState(self, g, self._info)

    def bounds(self, g: int) -> Optional[Tuple[int, int, int]]:
        """(base_index, base_term, last_index) of group g, or None: what the
        hot paths need, without a GroupState."""
        if lib.prl_index_bounds(self.h, g, self._b3):
            return None
        return self._unpack(self._b3, 3)  # type: ignore[no-any-return]

    def initial_state(self, g: int) -> Tuple[HardState, ConfState]:
        """(hard state, conf state) of group g, without a GroupState view
        (HardState() and ConfState() for a group without them, or none)."""
        info = self._info
        if lib.prl_index_info(self.h, g, info) or not info.hs_pos:
            hs = _EMPTY_HS
        else:
            hs = HardState(info.hs_term, info.hs_vote, info.hs_commit)
        snap = self._snaps.get(g)
        return hs, snap[0].conf_state if snap is not None else _EMPTY_META.conf_state

    def term_array(self, g: int, lo: int, hi: int) -> "np.ndarray":
        """Terms of entries [lo, hi) as a numpy uint64 array, checked by the caller."""
        out = np.empty(hi - lo, np.uint64)
        if hi > lo:
            check(lib.prl_index_range(self.h, g, lo, hi, ffi.from_buffer("uint64_t[]", out),
                                      ffi.NULL), "index range")
        return out

    def count(self) -> int:
        lib.prl_index_stats(self.h, self._stats)
        return int(self._stats.groups)

    def ids(self) -> List[int]:
        return self.id_array().tolist()  # type: ignore[no-any-return]

    def id_array(self) -> "np.ndarray":
        """Every group id, in no order, as a numpy uint64 array."""
        n = self.count()
        out = np.empty(n, np.uint64)
        check(lib.prl_index_ids(self.h, ffi.from_buffer("uint64_t[]", out), n), "index ids")
        return out

    def term(self, g: int, i: int) -> Optional[int]:
        """Term of entry i of group g (base_index <= i <= last_index), or
        None outside that range."""
        if lib.prl_index_term(self.h, g, i, self._u64):
            return None
        return self._u64[0]  # type: ignore[no-any-return]

    def positions(self, g: int, lo: int, hi: int) -> array[int]:
        """Positions of entries [lo, hi) of group g, checked by the caller."""
        out = array("Q", bytes(8 * (hi - lo)))
        if hi > lo:
            check(lib.prl_index_range(self.h, g, lo, hi, ffi.NULL,
                                      ffi.from_buffer("uint64_t[]", out)), "index range")
        return out

    def terms_and_positions(self, g: int, lo: int, hi: int) -> Tuple["np.ndarray", array[int]]:
        """Terms and positions of entries [lo, hi) of group g in one C call,
        checked by the caller (hi > lo)."""
        terms = np.empty(hi - lo, np.uint64)
        pos = array("Q", bytes(8 * (hi - lo)))
        check(lib.prl_index_range(self.h, g, lo, hi, ffi.from_buffer("uint64_t[]", terms),
                                  ffi.from_buffer("uint64_t[]", pos)), "index range")
        return terms, pos

    def snapshot_files(self) -> set[Tuple[int, int]]:
        """(group, file id) of every snapshot file the index refers to."""
        return {(g, ref[1]) for g, (_, ref) in self._snaps.items() if ref}

    def kv_spaces(self) -> Iterator[Tuple[int, Dict[bytes, Tuple[bytes, int]]]]:
        """(group, {key: (value, position)}) of every group with key-value pairs."""
        return iter(self._kv.items())

    def kv_positions(self) -> array[int]:
        """Positions of every key-value record the index holds."""
        return array("Q", [p for d in self._kv.values() for _, p in d.values()])

    def entry_count(self) -> int:
        lib.prl_index_stats(self.h, self._stats)
        return int(self._stats.entries)

    def nbytes(self) -> int:
        """Memory of the index: the C structures, plus the Python-side
        snapshot metadata and key-value spaces (estimated)."""
        lib.prl_index_stats(self.h, self._stats)
        kv = sum(100 + sum(len(k) + len(v) + 100 for k, (v, _) in d.items())
                 for d in self._kv.values())
        return int(self._stats.nbytes) + 200 * len(self._snaps) + kv

    # -- changes (the same for writes and replay) ----------------------------

    def append(self, g: int, start: int, terms: Any, positions: Any) -> None:
        """Entries start.. of group g (terms and positions: sequences of the
        same length, any uint64 buffer or list)."""
        t, p = _u64s(terms), _u64s(positions)
        check(lib.prl_index_append(self.h, g, start, len(t), ffi.from_buffer("uint64_t[]", t),
                                   ffi.from_buffer("uint64_t[]", p)), "index append")

    def append_one(self, g: int, index: int, term: int, position: int) -> None:
        one = self._one
        one[0] = term
        one[1] = position
        check(lib.prl_index_append(self.h, g, index, 1, one, one + 1), "index append")

    def truncate(self, g: int, index: int) -> None:
        check(lib.prl_index_truncate(self.h, g, index), "index truncate")

    def compact(self, g: int, index: int, term: int, pos: int) -> None:
        check(lib.prl_index_compact(self.h, g, index, term, pos), "index compact")

    def apply_snapshot(self, g: int, meta: SnapshotMeta, ref: Optional[SnapRef],
                       pos: int) -> Optional[SnapRef]:
        """Returns the snapshot file reference this one superseded."""
        check(lib.prl_index_snapshot(self.h, g, meta.index, meta.term, pos), "index snapshot")
        return self.set_snapshot(g, meta, ref)

    def set_snapshot(self, g: int, meta: SnapshotMeta,
                     ref: Optional[SnapRef]) -> Optional[SnapRef]:
        """The Python half of a snapshot (metadata, file reference); returns
        the file reference it superseded."""
        old = self._snaps.get(g)
        self._snaps[g] = (meta, ref)
        return old[1] if old is not None else None

    def set_hard_state(self, g: int, hs: HardState, pos: int) -> None:
        check(lib.prl_index_hard_state(self.h, g, hs.term, hs.vote, hs.commit, pos),
              "index hard state")

    def create(self, g: int) -> None:
        check(lib.prl_index_create(self.h, g), "index create")

    def put(self, g: int, key: bytes, value: bytes, pos: int, release: array[int]) -> None:
        self.create(g)
        self.kv_put(g, key, value, pos, release)

    def kv_put(self, g: int, key: bytes, value: bytes, pos: int, release: array[int]) -> None:
        """The key-value half of a put (the group exists in C already)."""
        kv = self._kv.setdefault(g, {})
        old = kv.get(key)
        if old is not None:
            release.append(old[1])
        kv[key] = (value, pos)

    def delete(self, g: int, key: bytes, release: array[int]) -> None:
        self.kv_delete(g, key, release)

    def kv_delete(self, g: int, key: bytes, release: array[int]) -> None:
        kv = self._kv.get(g)
        old = kv.pop(key, None) if kv else None
        if old is not None:
            release.append(old[1])
        if kv is not None and not kv:
            del self._kv[g]

    def remove(self, g: int, release: array[int]) -> Optional[SnapRef]:
        """Forgets group g; returns its snapshot file reference."""
        if lib.prl_index_remove(self.h, g) == lib.PRL_E_NO_GROUP:
            return None
        return self.forget(g, release)

    def forget(self, g: int, release: array[int]) -> Optional[SnapRef]:
        """The Python half of a removal: the key-value space and the snapshot
        metadata; returns the snapshot file reference."""
        for _, p in self._kv.pop(g, {}).values():
            release.append(p)
        snap = self._snaps.pop(g, None)
        return snap[1] if snap is not None else None

    def flush_release(self, log_handle: Any) -> None:
        """Hands the records C released to the log's live-byte accounting."""
        lst = ffi.new("const uint64_t **")
        n = self._u64
        lib.prl_index_release_list(self.h, lst, n)
        if n[0]:
            check(lib.prl_log_release(log_handle, n[0], lst[0]), "release")
        lib.prl_index_release_clear(self.h)

    def discard_release(self) -> None:
        """Replay does no live accounting (recovery retains at the end)."""
        lib.prl_index_release_clear(self.h)

    # -- purge rewrites: staged entries ----------------------------------------

    def stage(self, group: int, start: int, terms: "np.ndarray", positions: "np.ndarray") -> None:
        self.staged.setdefault(group, []).append((start, terms, positions))

    def staged_from(self, group: int) -> int:
        """Position of the first staged record of `group`."""
        return int(self.staged[group][0][2][0])

    def adopt(self, group: int, first: int, last: int, stage_pos: int,
              release: array[int]) -> None:
        """An ADOPT record: entries first..last of `group` (just removed and
        given its base by the same batch) are the STAGE records at positions
        >= stage_pos.  Every other staged record of the group is released.

        Replay may find only some of them: a STAGE record's segment is
        recycled once the entry it holds is gone (compacted, say, by a later
        record), oldest first.  Then the longest run up to `last` is
        adopted above a guessed base (see csrc/group_index.c); the records
        that removed the rest follow in the log."""
        runs = self.staged.pop(group, [])
        if not runs:
            return
        idx = np.concatenate([np.arange(s, s + len(t), dtype=np.uint64) for s, t, _ in runs])
        terms = np.concatenate([t for _, t, _ in runs])
        pos = np.concatenate([p for _, _, p in runs])
        # pos >= stage_pos, in log order (positions wrap with the seq: see position_seq)
        after = (pos - np.uint64(stage_pos)).view(np.int64) >= 0
        take = after & (idx >= np.uint64(first)) & (idx <= np.uint64(last))
        k = np.flatnonzero(take)
        if len(k) and int(idx[k[-1]]) == last:
            gaps = np.flatnonzero(idx[k[1:]] != idx[k[:-1]] + np.uint64(1))
            k = k[int(gaps[-1]) + 1:] if len(gaps) else k
            take[:] = False
            take[k] = True
            self.append(group, int(idx[k[0]]), terms[k], pos[k])
        else:
            take[:] = False
        release.extend(pos[~take].tolist())

    def drop_staged(self, group: int) -> List[int]:
        """Forgets the group's staged records (a rewrite given up); returns
        their positions."""
        return [int(p) for _, _, ps in self.staged.pop(group, []) for p in ps]
