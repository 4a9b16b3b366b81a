"""The replicated state machine of every group: a key-value store whose head
says which writes it applied in which order, and the value of every key.

Also used by tests/test_pysyncobj.py and tests/powerloss/ (through the
package, ``from pysyncobj_demo import Store, value_for``).
"""

from __future__ import annotations

import hashlib
from typing import Any

try:  # the demo needs pysyncobj (main() says so); the tests import Store without it
    from pysyncobj import SyncObjConsumer, replicated  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - reported by main()
    SyncObjConsumer = object

    def replicated(func: Any) -> Any:
        return func

CHAIN0 = b"\0" * 16


def value_for(key: str) -> bytes:
    """The value the demo writes under ``key`` (so any node can check it)."""
    return hashlib.blake2b(key.encode(), digest_size=8).digest()


class Store(SyncObjConsumer):  # type: ignore[misc]
    """A replicated key-value store with an order-sensitive digest.

    ``head`` is ``(number of writes applied, blake2b chain over them)``,
    replaced as one object so other threads can read it safely: two replicas
    with equal heads applied the same writes in the same order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.kv: dict[str, bytes] = {}
        self.head: tuple[int, bytes] = (0, CHAIN0)

    @replicated  # type: ignore[untyped-decorator]
    def set(self, key: str, value: bytes) -> int:
        self.kv[key] = value
        count, chain = self.head
        chain = hashlib.blake2b(chain + key.encode() + b"=" + value, digest_size=16).digest()
        self.head = (count + 1, chain)
        return count + 1

    def get(self, key: str) -> bytes | None:
        return self.kv.get(key)
