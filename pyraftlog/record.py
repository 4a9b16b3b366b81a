"""Record types and payload codecs: the Python view of csrc/format.h.

tests/test_format.py checks these constants against the C ones."""
from __future__ import annotations

import struct
from typing import Tuple, Union

from .types import ConfState, HardState

SEGMENT_MAGIC = b"PRLSEG01"
FORMAT_VERSION = 1
SEGMENT_HEADER_SIZE = 64
BATCH_HEADER_SIZE = 32
RECORD_HEADER_SIZE = 32
ALIGN = 8
MIN_SEGMENT_SIZE = 4096
MAX_SEGMENT_SIZE = 1 << 30

ENTRY = 1
HARD_STATE = 2
SNAPSHOT = 3
COMPACT = 4
TRUNCATE = 5
KV_PUT = 6
KV_DELETE = 7
REMOVE_GROUP = 8
STAGE = 9   # a copy of an entry, staged by a purge rewrite (purge.py)
ADOPT = 10  # a purge rewrite's final batch takes its staged entries
NAMES = {ENTRY: "entry", HARD_STATE: "hard_state", SNAPSHOT: "snapshot", COMPACT: "compact",
         TRUNCATE: "truncate", KV_PUT: "kv_put", KV_DELETE: "kv_delete",
         REMOVE_GROUP: "remove_group", STAGE: "stage", ADOPT: "adopt"}

SEGMENT_HEADER = struct.Struct("<8sIIQQQ20sI")
BATCH_HEADER = struct.Struct("<IIQQII")
RECORD_HEADER = struct.Struct("<BBHIQQQ")
_VOTE = struct.Struct("<Q")
_SNAP = struct.Struct("<QQIIIIII")  # data_size, file_id, data_crc, 4 list lengths, auto_leave
_KEYLEN = struct.Struct("<I")
_ADOPT = struct.Struct("<QQ")  # last adopted index, position of the first staged record


def record_size(payload_len: int) -> int:
    return RECORD_HEADER_SIZE + ((payload_len + 7) & ~7)


def encode_hard_state(hs: HardState) -> bytes:
    return _VOTE.pack(hs.vote)


def decode_hard_state(term: int, commit: int, payload: bytes) -> HardState:
    if len(payload) != _VOTE.size:
        raise ValueError("hard state payload must be 8 bytes")
    return HardState(term, _VOTE.unpack(payload)[0], commit)


def encode_snapshot(cs: ConfState, data_size: int, file_id: int, data_crc: int) -> bytes:
    lists = (cs.voters, cs.learners, cs.voters_outgoing, cs.learners_next)
    ids = [i for lst in lists for i in lst]
    return _SNAP.pack(data_size, file_id, data_crc, *(len(x) for x in lists),
                      int(cs.auto_leave)) + struct.pack(f"<{len(ids)}Q", *ids)


def decode_snapshot(payload: bytes) -> Tuple[ConfState, int, int, int]:
    """(conf_state, data_size, file_id, data_crc); ValueError if malformed."""
    if len(payload) < _SNAP.size:
        raise ValueError("snapshot payload too short")
    size, file_id, crc, n1, n2, n3, n4, auto = _SNAP.unpack_from(payload)
    n = n1 + n2 + n3 + n4
    if len(payload) != _SNAP.size + 8 * n or auto > 1:
        raise ValueError("snapshot payload has a bad length")
    ids = struct.unpack_from(f"<{n}Q", payload, _SNAP.size)
    cuts = [0, n1, n1 + n2, n1 + n2 + n3, n]
    lists = [tuple(ids[cuts[k]:cuts[k + 1]]) for k in range(4)]
    return ConfState(lists[0], lists[1], lists[2], lists[3], bool(auto)), size, file_id, crc


def encode_kv(key: bytes, value: bytes) -> bytes:
    return _KEYLEN.pack(len(key)) + key + value


def decode_kv(payload: Union[bytes, memoryview]) -> Tuple[bytes, bytes]:
    if len(payload) < 4:
        raise ValueError("kv payload too short")
    (n,) = _KEYLEN.unpack_from(payload)
    if n > len(payload) - 4:
        raise ValueError("kv key length out of bounds")
    return bytes(payload[4:4 + n]), bytes(payload[4 + n:])


def encode_adopt(last: int, stage_pos: int) -> bytes:
    return _ADOPT.pack(last, stage_pos)


def decode_adopt(payload: Union[bytes, memoryview]) -> Tuple[int, int]:
    """(last adopted index, position of the first staged record)."""
    if len(payload) != _ADOPT.size:
        raise ValueError("adopt payload must be 16 bytes")
    last, pos = _ADOPT.unpack(payload)
    return int(last), int(pos)
