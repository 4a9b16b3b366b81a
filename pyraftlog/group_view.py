"""GroupView: one group's reads without the group argument."""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Tuple

from .types import ConfState, Entry, HardState, Snapshot

if TYPE_CHECKING:
    from .engine import Engine


class GroupView:
    """One group's reads without the group argument: what a Raft library's
    storage adapter wraps."""

    __slots__ = ("engine", "id")

    def __init__(self, engine: Engine, group: int):
        self.engine = engine
        self.id = group

    def __repr__(self) -> str:
        return f"<GroupView {self.id} of {self.engine!r}>"

    def entries(self, lo: int, hi: int, max_size: Optional[int] = None) -> List[Entry]:
        return self.engine.entries(self.id, lo, hi, max_size)

    def term(self, index: int) -> int:
        return self.engine.term(self.id, index)

    def first_index(self) -> int:
        return self.engine.first_index(self.id)

    def last_index(self) -> int:
        return self.engine.last_index(self.id)

    def initial_state(self) -> Tuple[HardState, ConfState]:
        return self.engine.initial_state(self.id)

    def snapshot(self) -> Snapshot:
        return self.engine.snapshot(self.id)

    def get(self, key: bytes) -> Optional[bytes]:
        return self.engine.get(self.id, key)
