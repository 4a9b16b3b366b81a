"""What each node checks at the end: every write that any node saw
acknowledged is in this node's store, with its value.

The coordinator compares the nodes' store heads (same writes, same order)
first; then each node runs :func:`check_acknowledged` on every node's
acknowledgement file.
"""

from __future__ import annotations

from typing import Any

from .store import Store, value_for


def check_acknowledged(stores: list[Store], ack_files: list[str]) -> dict[str, Any]:
    """``{"checked", "missing", "wrong", "examples"}`` over the lines
    ``"<group> <key>"`` of ``ack_files`` (a missing file counts nothing)."""
    checked = missing = wrong = 0
    examples: list[list[Any]] = []
    for path in ack_files:
        try:
            with open(path) as f:
                lines = f.read().split("\n")
        except FileNotFoundError:
            continue
        for line in lines[:-1]:      # the last one may be torn by SIGKILL
            g, key = line.split(" ", 1)
            got = stores[int(g)].get(key)
            checked += 1
            if got is None:
                missing += 1
            elif got != value_for(key):
                wrong += 1
            else:
                continue
            if len(examples) < 5:
                examples.append([int(g), key])
    return {"checked": checked, "missing": missing, "wrong": wrong, "examples": examples}
