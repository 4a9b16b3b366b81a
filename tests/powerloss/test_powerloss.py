"""Power-loss simulation (issue 5, item 2): recovery on every disk image a
power cut could leave, not only on what a process kill leaves.

See tests/powerloss/__init__.py for the pieces and docs/CRASH_SAFETY.md for
the model and its assumptions.
The short run is part of ``make test``; the long one is ``slow``:

    PYRAFTLOG_POWERLOSS_IMAGES=200 PYRAFTLOG_POWERLOSS_RUNS=6 \\
        .venv/bin/python -m pytest -q -m slow tests/powerloss

``PYRAFTLOG_POWERLOSS_SEED`` picks the chain seed (default: fixed).  A failing
image is saved under /tmp/pyraftlog-powerloss-failures (or
``PYRAFTLOG_POWERLOSS_SAVE``) with a report, its minimised form and the
recording it came from.
"""
from __future__ import annotations

import os
import random
import subprocess
import textwrap

import pytest

from tests.common import PYTHON, child_env
from tests.powerloss.chain import ChainResult, run_chain
from tests.powerloss.checker import Checker
from tests.powerloss.generation import run_generation
from tests.powerloss.image import PAGE, file_bytes, materialize, page_mask, plan_image
from tests.powerloss.recording import (Recording, build_shim, parse_journal, recorder_env,
                                       seed_journal)
from tests.powerloss.verdict import Expected, judge
from tests.powerloss.writer import WRITER_DEFAULTS, engine_opts, universe

SEED = int(os.environ.get("PYRAFTLOG_POWERLOSS_SEED", "20240605"))


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    return build_shim(str(tmp_path_factory.mktemp("shim")))


@pytest.fixture(scope="module")
def checker():
    c = Checker()
    yield c
    c.close()


def _failure_message(res) -> str:
    lines = [res.summary()]
    for f in res.failures[:6]:
        lines.append(f"gen {f.gen} image {f.image}: {f.verdict.kind} "
                     f"(saved: {f.saved or 'no, same kind saved already'})")
        detail = f.verdict.detail.split("\nTraceback")[0]
        lines.extend("    " + ln for ln in detail.splitlines()[:8])
        if f.minimal:
            lines.append("  minimised image:")
            lines.extend("    " + ln for ln in f.minimal.splitlines()[:20])
    return "\n".join(lines)


# ------------------------------------------------------------ the recorder

def test_shim_records_syncs_listings_renames_unlinks(shim, tmp_path):
    """The recorder's view of a small scripted program: what is durable
    when, which names a file may have, what an unlink removes."""
    root, out = tmp_path / "root", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    k0 = seed_journal(str(root), str(out))
    script = textwrap.dedent("""
        import mmap, os
        d = os.environ["PRL_PL_ROOT"]
        def fsync_dir(p):
            fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY); os.fsync(fd); os.close(fd)
        # a: written, fdatasynced, then written again (second write not durable)
        fd = os.open(d + "/a", os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, b"A" * 5000); os.fdatasync(fd)
        os.pwrite(fd, b"B" * 100, 4096)
        fsync_dir(d)
        # b: through a shared mapping, msync(MS_SYNC)
        fb = os.open(d + "/b", os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(fb, 8192)
        m = mmap.mmap(fb, 8192)
        m[0:3] = b"xyz"; m.flush()          # msync(MS_SYNC)
        m[4096:4099] = b"qqq"              # not synced
        # c: renamed after the last directory fsync, then d unlinked
        fc = os.open(d + "/c.tmp", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fc, b"C" * 10); os.fsync(fc); os.close(fc)
        os.rename(d + "/c.tmp", d + "/c")
        os.unlink(d + "/a")
    """)
    env = child_env(**recorder_env(shim, str(root), str(out), k0))
    subprocess.run([*PYTHON, "-c", script], env=env, check=True)
    rec = Recording(root=os.path.realpath(root), out=str(out))
    parse_journal(rec)
    assert not rec.unmodelled and not rec.failed_syncs
    by_label = {inc.label: inc for inc in rec.incs.values()}
    a, b, c = by_label["a"], by_label["b"], by_label["c.tmp"]
    old, new = rec.versions(a.key)
    assert old == b"A" * 5000
    assert new == b"A" * 4096 + b"B" * 100 + b"A" * 804   # captured at the unlink
    old, new = rec.versions(b.key)
    assert old[:3] == b"xyz" and old[4096:4099] == bytes(3) and new[4096:4099] == b"qqq"
    assert rec.versions(c.key) == (b"C" * 10, b"C" * 10)
    hist = rec.histories()[""]
    assert hist[a.key] == ["a", None]               # durable in the listing, unlinked since
    assert hist[b.key] == [None, "b"]               # created after the directory fsync
    assert hist[c.key] == [None, "c.tmp", "c"]      # created and renamed after it
    # the durable image has only a, as synced; the current one b and c
    durable = plan_image(rec, random.Random(1), "durable")
    current = plan_image(rec, random.Random(1), "current")
    assert sorted(w[1] for w in durable.names.values() if w) == ["a"]
    assert file_bytes(rec, durable, a.key) == b"A" * 5000
    assert sorted(w[1] for w in current.names.values() if w) == ["b", "c"]
    assert file_bytes(rec, current, b.key)[4096:4099] == b"qqq"
    # some image has b with its synced bytes only
    for seed in range(200):
        p = plan_image(rec, random.Random(seed), "random")
        if p.names.get(b.key) and file_bytes(rec, p, b.key)[4096:4099] == bytes(3) \
                and p.sizes[b.key] == 8192:
            assert file_bytes(rec, p, b.key)[:3] in (b"xyz", bytes(3))
            break
    else:
        raise AssertionError("no image keeps b's synced page and drops the unsynced one")


def test_image_page_choices():
    """Torn pages mix old and new per 512-byte sector, cut pages at an
    8-byte boundary; nothing outside the differing pages changes."""
    m = page_mask(("sec", (64, 0, 3, 64, 0, 0, 0, 0)))
    assert m[:512].all() and not m[512:1024].any()
    assert m[1024:1048].all() and not m[1048:1536].any()
    assert m[1536:2048].all() and not m[2048:].any()
    m = page_mask(("words", 7, 0.5))
    assert len(m) == PAGE and 0 < m.sum() < PAGE
    assert (m.reshape(-1, 8).all(axis=1) == m.reshape(-1, 8).any(axis=1)).all()


# ------------------------------------------------ the test of the test

@pytest.mark.parametrize("forget", ["file", "dir"])
def test_simulation_sees_a_missing_sync(shim, checker, tmp_path, forget):
    """With the recorder told to forget every file fdatasync (or every
    directory fsync), as if the engine never called it, the image of what
    was durable must lose acknowledged batches: the simulation has teeth."""
    params = dict(WRITER_DEFAULTS, batches=40, purge_threshold=1 << 30, reopen_prob=0,
                purge_prob=0)
    # killed once the last batch is written: most batches are acknowledged by then
    gen = run_generation(str(tmp_path / "g"), shim, 1000, params, [],
                         extra_env={"PRL_PL_FORGET": forget}, kill=("D", 0, 0.0))
    assert gen.acked >= 10, gen.lines[-10:]
    groups, keys = universe()
    exp = Expected(gen.batches, groups, keys)
    img = str(tmp_path / "image")
    materialize(gen.rec, plan_image(gen.rec, random.Random(0), "durable"), img)
    v = judge(checker.check(img, engine_opts(params), groups, keys), exp, gen.required)
    assert not v.ok, f"a forgotten {forget} sync went unnoticed (acked {gen.acked})"


# ------------------------------------------------------ the simulation

def test_power_loss(shim, checker, tmp_path):
    """3 writer runs (each starts from a crash image of the one before) x 25
    crash images each; every image must recover to exactly a prefix of the
    batches written that holds every acknowledged batch."""
    res = run_chain(SEED, generations=3, images=25, workdir=str(tmp_path / "w"), shim=shim,
                    batches=200, checker=checker, minimize_budget=40, save_per_kind=1)
    if res.failures:
        pytest.fail(_failure_message(res), pytrace=False)
    assert res.images == 75


@pytest.mark.slow
@pytest.mark.timeout(7200)  # scales with PYRAFTLOG_POWERLOSS_RUNS x _IMAGES
def test_power_loss_long(shim, checker, tmp_path):
    """PYRAFTLOG_POWERLOSS_RUNS chains of 4 writer runs, each checked on
    PYRAFTLOG_POWERLOSS_IMAGES crash images."""
    images = int(os.environ.get("PYRAFTLOG_POWERLOSS_IMAGES", "100"))
    runs = int(os.environ.get("PYRAFTLOG_POWERLOSS_RUNS", "4"))
    total = ChainResult()
    for r in range(runs):
        total.add(run_chain(SEED + 1 + r, generations=4, images=images,
                            workdir=str(tmp_path / f"chain{r}"), shim=shim, batches=250,
                            checker=checker, minimize_budget=60, save_per_kind=2))
    print(total.summary())
    if total.failures:
        pytest.fail(_failure_message(total), pytrace=False)
