"""The verdict on one image: the recovered state must be exactly the model
state after some prefix of the batches written, at or past the last
acknowledged batch (every batch ends with a unique marker, so the prefix is
unique), byte for byte (every entry, hard state, snapshot with its data, kv
pair of every group), and so must the state after the checker's one more
batch, close and reopen."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from tests.model import Model
from tests.powerloss.checker import REOPEN_GROUP, combine, group_digest


class Expected:
    """The model state after every prefix of `batches`."""

    def __init__(self, batches: List[list], groups, keys):
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
        m = Model()
        for ops in self.batches[:p]:
            m.write(ops)
        return m


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

