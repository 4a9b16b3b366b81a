"""The vote of a PySyncObj journal, as stored in its group (kv ``pysyncobj/voted_for``).

PySyncObj node ids are strings: a vote is stored as ``b"s"`` + the UTF-8 of
the node id, and nothing else is stored (no pickle).  Earlier versions
pickled whatever PySyncObj passed (``b"p"`` + a pickle); those are still
read, by an unpickler that resolves no global (a log directory is not
trusted: SECURITY.md).
"""

from __future__ import annotations

import io
import pickle
from typing import Any

#: kv key of the vote in the journal's group.
KEY_VOTE = b"pysyncobj/voted_for"


def encode_vote(vote: Any) -> bytes | None:
    """The vote as stored: ``b"s"`` + UTF-8 of the node id (PySyncObj node
    ids are strings), or None.  Nothing else is stored: no pickle."""
    if vote is None:
        return None
    if isinstance(vote, str):
        return b"s" + vote.encode("utf-8", "surrogatepass")
    raise TypeError(f"a PySyncObj vote must be a node id (str) or None, "
                    f"not {type(vote).__name__}")


class _VoteUnpickler(pickle.Unpickler):
    """Reads the ``b"p"`` votes of earlier versions, which pickled whatever
    PySyncObj passed.  A log directory is not trusted (SECURITY.md): this
    unpickler resolves no global at all, so a pickle cannot name a callable,
    let alone call it; what it can build (str, numbers, containers) is then
    accepted only if it is a str."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def decode_vote(raw: bytes | None, group: int = 0) -> Any:
    """The vote stored as ``raw`` (None: no vote); a ValueError naming
    ``group`` when it is not a node id."""
    if raw is None:
        return None
    raw = bytes(raw)
    if raw[:1] == b"s":
        return raw[1:].decode("utf-8", "surrogatepass")
    if raw[:1] == b"p":
        try:
            vote = _VoteUnpickler(io.BytesIO(raw[1:])).load()
        except Exception as exc:  # any malformed or hostile pickle
            raise ValueError(f"group {group}: the stored PySyncObj vote ({KEY_VOTE.decode()}) "
                             f"is a pickle this version does not load: {exc}") from None
        if vote is None or isinstance(vote, str):
            return vote
        raise ValueError(f"group {group}: the stored PySyncObj vote ({KEY_VOTE.decode()}) is "
                         f"a pickled {type(vote).__name__}, not a node id (str)")
    raise ValueError(f"group {group}: unknown vote encoding {raw[:1]!r}")
