"""The simulation: chains of generations, each started from a crash image of
the one before that recovered correctly (so recovery after a power cut is
itself power-cut), every generation checked on many crash images; a failing
image is saved with a report, a minimised image and the recording it came
from.

Command line:
    python -m tests.powerloss.chain [--seed N] [--generations N] [--images N] [--batches N]
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from tests.common import ROOT
from tests.powerloss.checker import Checker
from tests.powerloss.generation import Generation, random_params, run_generation
from tests.powerloss.image import (STYLES, ImagePlan, describe, materialize, minimize, plan_image,
                                   plan_to_dict)
from tests.powerloss.recording import Recording, build_shim
from tests.powerloss.verdict import Expected, Verdict, judge
from tests.powerloss.writer import engine_opts, universe

FAIL_ROOT = os.environ.get("PYRAFTLOG_POWERLOSS_SAVE", "/tmp/pyraftlog-powerloss-failures")


@dataclass
class Failure:
    gen: int
    image: int
    verdict: Verdict
    saved: str = ""      # where the image is, if saved
    minimal: str = ""    # the minimised image's choices, in words


@dataclass
class ChainResult:
    images: int = 0
    counts: Dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failures: List[Failure] = field(default_factory=list)
    generations: List[str] = field(default_factory=list)
    # of the images that recovered correctly: how far past the last
    # acknowledged batch, and how many had a torn tail cut
    beyond_acked: List[int] = field(default_factory=list)
    tails_cut: int = 0

    def summary(self) -> str:
        c = self.counts
        ahead = sum(1 for x in self.beyond_acked if x > 0)
        return (f"{self.images} images: ok {c['ok']}, acknowledged batches lost {c['acked_lost']}, "
                f"partial/not-a-prefix {c['not_prefix']}, recovery errors {c['recovery_error']}, "
                f"process crashes {c['crash']}, reopen failures {c['reopen']}, "
                f"groups() mismatches {c['groups']}; of the ok ones {ahead} kept unacknowledged "
                f"batches (up to {max(self.beyond_acked, default=0)}), {self.tails_cut} had a torn "
                f"tail cut")

    def add(self, other: "ChainResult") -> None:
        self.images += other.images
        for k, n in other.counts.items():
            self.counts[k] += n
        self.failures.extend(other.failures)
        self.generations.extend(other.generations)
        self.beyond_acked.extend(other.beyond_acked)
        self.tails_cut += other.tails_cut


def save_failure(dest_root: str, gen: Generation, gi: int, ii: int, plan: ImagePlan,
                 verdict: Verdict, minimal: Optional[ImagePlan], exp: Expected) -> str:
    """Saves the image (and its minimised form), the choices in words and,
    once per generation, the recording it was built from."""
    gdir = os.path.join(dest_root, f"gen{gi}")
    if not os.path.isdir(os.path.join(gdir, "recording")):
        shutil.copytree(gen.workdir, os.path.join(gdir, "recording"), dirs_exist_ok=True)
        with open(os.path.join(gdir, "batches.pickle"), "wb") as f:
            pickle.dump({"batches": exp.batches, "required": gen.required,
                         "params": gen.params}, f)
    dest = os.path.join(gdir, f"img{ii}-{verdict.kind}")
    os.makedirs(dest, exist_ok=True)
    materialize(gen.rec, plan, os.path.join(dest, "image"))
    if minimal is not None:
        materialize(gen.rec, minimal, os.path.join(dest, "image-minimal"))
    with open(os.path.join(dest, "report.txt"), "w") as f:
        f.write(f"verdict: {verdict.kind} (prefix {verdict.prefix})\n{verdict.detail}\n\n")
        f.write(f"writer seed {gen.seed}, params {json.dumps(gen.params)}, kill {gen.kill}\n")
        f.write(f"batches: {len(gen.base)} at start, {len(gen.batches)} recorded, "
                f"written {gen.written}, acknowledged {gen.acked}, required {gen.required}\n\n")
        f.write("image choices:\n" + describe(gen.rec, plan) + "\n\n")
        if minimal is not None:
            f.write("minimised image choices (image-minimal/):\n" + describe(gen.rec, minimal)
                    + "\n\n")
        f.write("reproduce (on a copy: recovery changes the directory):\n"
                f"  rm -rf /tmp/x && cp -a {dest}/image{'-minimal' if minimal else ''} /tmp/x && "
                f"cd {ROOT} && .venv/bin/python -m tests.powerloss.checker check /tmp/x "
                f"--opts '{json.dumps(engine_opts(gen.params))}'\n"
                f"  (the expected states: {gdir}/batches.pickle, replay with tests/model.py)\n\n")
        f.write("writer output (last 40 lines):\n" + "\n".join(gen.lines[-40:]) + "\n")
    with open(os.path.join(dest, "plan.pickle"), "wb") as f:
        pickle.dump({"plan": plan_to_dict(plan),
                     "minimal": plan_to_dict(minimal) if minimal else None}, f)
    return dest


def run_chain(seed: int, generations: int, images: int, workdir: str, shim: str,
              batches: int = 150, log=lambda s: None, checker: Optional[Checker] = None,
              minimize_budget: int = 60, save_per_kind: int = 2) -> ChainResult:
    """Runs `generations` writer generations, each from a crash image of the
    previous one that recovered correctly, and checks `images` images of each."""
    rng = random.Random(seed)
    result = ChainResult()
    own_checker = checker is None
    checker = checker or Checker()
    groups, keys = universe()
    base: List[list] = []
    start: Optional[Tuple[Recording, ImagePlan]] = None
    dest_root: Optional[str] = None
    try:
        for gi in range(generations):
            params = random_params(rng, batches)
            gen = run_generation(os.path.join(workdir, f"gen{gi}"), shim, rng.getrandbits(31),
                                 params, base, start_from=start[1] if start else None,
                                 start_rec=start[0] if start else None)
            if gen.rec.unmodelled:
                raise AssertionError(f"calls the model does not cover: {gen.rec.unmodelled[:5]}")
            if gen.rec.failed_syncs:
                raise AssertionError(f"syncs failed in the writer: {gen.rec.failed_syncs[:5]}")
            exp = Expected(gen.batches, groups, keys)
            opts = engine_opts(params)
            log(f"gen {gi}: seed {gen.seed}, {len(gen.base)} batches at start, "
                f"{len(gen.batches) - len(gen.base)} recorded, written {gen.written}, "
                f"acked {gen.acked}, {gen.rec.syncs} syncs, kill {gen.kill}, {gen.runtime:.1f}s")
            result.generations.append(f"seed {gen.seed} kill {gen.kill} acked {gen.acked}/"
                                      f"{len(gen.batches)}")
            good: List[Tuple[ImagePlan, int]] = []
            img = os.path.join(workdir, "image")
            for ii in range(images):
                style = STYLES[ii] if ii < 2 else rng.choice(STYLES[2:])
                plan = plan_image(gen.rec, random.Random(rng.getrandbits(64)), style)

                def check_plan(pl: ImagePlan) -> Verdict:
                    materialize(gen.rec, pl, img)
                    return judge(checker.check(img, opts, groups, keys), exp, gen.required)

                v = check_plan(plan)
                result.images += 1
                result.counts[v.kind] += 1
                if v.ok:
                    good.append((plan, v.prefix))
                    result.beyond_acked.append(v.prefix - gen.required)
                    result.tails_cut += bool(v.stats.get("dropped_tail_bytes"))
                    continue
                log(f"gen {gi} image {ii} ({style}): {v.kind}: {v.detail.splitlines()[0]}")
                same = sum(1 for f in result.failures if f.gen == gi and f.verdict.kind == v.kind)
                f = Failure(gi, ii, v)
                result.failures.append(f)
                if same >= save_per_kind:
                    continue   # counted, not saved: the same kind is saved already
                minimal = None
                if minimize_budget and same == 0:
                    minimal = minimize(gen.rec, plan, v.kind, check_plan, minimize_budget)
                    f.minimal = describe(gen.rec, minimal)
                if dest_root is None:
                    dest_root = os.path.join(FAIL_ROOT, time.strftime("%Y%m%d-%H%M%S") +
                                             f"-chain{seed}")
                f.saved = save_failure(dest_root, gen, gi, ii, plan, v, minimal, exp)
                log(f"  saved to {f.saved}")
            shutil.rmtree(img, ignore_errors=True)
            if not good:
                break
            plan, p = rng.choice(good)
            start = (gen.rec, plan)
            base = gen.batches[:p]
    finally:
        if own_checker:
            checker.close()
    return result


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--batches", type=int, default=150)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="powerloss-") as tmp:
        shim = build_shim(tmp)
        res = run_chain(a.seed, a.generations, a.images, os.path.join(tmp, "w"), shim,
                        batches=a.batches, log=print)
    print(res.summary())
    for f in res.failures:
        print(f"FAIL gen {f.gen} image {f.image}: {f.verdict.kind}: {f.saved}")
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
