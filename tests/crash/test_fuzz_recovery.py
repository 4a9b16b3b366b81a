"""Hypothesis over the recovery scanner: random byte mutations of a valid
log directory, opened in every mode, in-process (a crash of the scanner
would take the test run down with it).

Mutations: flip a bit, set a byte, zero or garble a range, copy bytes from
elsewhere in the file over a range (plausible-looking headers), truncate or
extend a segment; aimed at structure boundaries (segment, batch and record
header fields, payloads, the end of the log) as often as at random bytes,
in segment files, snapshot files, free files and the lock file.

The reference: workload.reference_batches (batch i touches only group
100+i), so every outcome is "the model of some set of batches".  Checks:

* no mode ever raises anything but CorruptionError, and tolerate_any does
  not raise at all;
* strict either raises or recovers exactly a prefix 1..k of the batches,
  k = N unless a mutation touched a batch (or cut the newest segment);
* a mutation that touches nothing recovery reads (LOCK, free files,
  snapshot files, segment bytes past the end of the log) never makes strict
  or tolerate_tail raise, and strict then keeps every batch;
* tolerate_tail either raises or recovers a prefix that keeps every batch
  before the newest segment;
* tolerate_any recovers exactly the model of the batches it keeps, and
  keeps every batch whose bytes no mutation touched;
* a damaged snapshot file only ever makes snapshot() of its group raise
  CorruptionError;
* after a successful tolerant recovery, a write, a close and a reopen in
  the same mode give the same state plus the new batch.

`make fuzz` runs the slow-marked version with PYRAFTLOG_HYPOTHESIS_EXAMPLES
examples (default 500 here); the unmarked version runs 50."""

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyraftlog
from pyraftlog import CorruptionError

from tests.crash import workload as W

N = 40
SEG = 16 << 10
ALL = frozenset(range(1, N + 1))
SLOW_EXAMPLES = int(os.environ.get("PYRAFTLOG_HYPOTHESIS_EXAMPLES", "500"))
MODES = ("strict", "tolerate_tail", "tolerate_any")


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("fuzzref") / "log")
    W.write_reference(d, N, segment_size=SEG)
    segs = W.parse_log(d)
    assert len(segs) >= 2
    files = {}
    for s in segs:
        name = os.path.basename(s.path)
        offs = {0, 8, 12, 16, 24, 32, 40, 60, s.end, s.end + 8, s.end + 16, s.size - 1}
        for b in s.batches:
            offs |= {b.off + k for k in (0, 4, 8, 16, 24, 28)}
            for r in b.recs:
                offs |= {r.off, r.off + 4, r.off + 8, r.off + 16, r.payload, r.payload + r.len}
        files[name] = sorted(o for o in offs if o < s.size)
    snapdir = os.path.join(d, "snapshots")
    for n in os.listdir(snapdir):
        size = os.path.getsize(os.path.join(snapdir, n))
        files[os.path.join("snapshots", n)] = [0, 8, 16, 24, 32, 36, 40, size - 1]
    for n in os.listdir(d):
        if n.endswith(".free"):
            files[n] = [0, 64]
    files["LOCK"] = [0]
    # which batch owns which byte range, per segment file
    owners = {os.path.basename(s.path): [(b.off, b.end, b.lsn) for b in s.batches] for s in segs}
    newest = segs[-1]
    check = d + ".check"
    shutil.copytree(d, check)
    with pyraftlog.open(check, segment_size=SEG, recovery_mode="strict") as log:
        assert W.reference_state(log, N) == want_state(ALL)
    ends = {os.path.basename(s.path): s.end for s in segs}
    return {"dir": d, "files": files, "owners": owners, "ends": ends,
            "newest": os.path.basename(newest.path),
            "newest_first": newest.first_lsn, "segments": [os.path.basename(s.path) for s in segs]}


def want_state(keep):
    return W.expected_state(N, frozenset(keep))


KINDS = ("flip", "set", "zero", "garbage", "splice", "truncate", "extend")


@st.composite
def mutation(draw, files):
    name = draw(st.sampled_from(sorted(files)))
    kind = draw(st.sampled_from(KINDS if name.endswith(".seg") else KINDS[:5] + ("truncate",)))
    aimed = draw(st.booleans())
    return {"file": name, "kind": kind, "aimed": aimed,
            "pick": draw(st.integers(0, 10**9)), "delta": draw(st.integers(-3, 3)),
            "n": draw(st.sampled_from((1, 2, 4, 8, 16, 31, 32, 33, 64, 200))),
            "bit": draw(st.integers(0, 7)), "byte": draw(st.integers(0, 255)),
            "src": draw(st.integers(0, 10**9))}


def apply_mutation(d, m, files):
    """Apply one mutation; returns (file, lo, hi) of the bytes it may have
    changed (hi None: everything from lo on, for truncation)."""
    path = os.path.join(d, m["file"])
    if not os.path.exists(path):
        return None
    size = os.path.getsize(path)
    if m["aimed"]:
        offs = files[m["file"]]
        off = offs[m["pick"] % len(offs)] + m["delta"]
    else:
        off = m["pick"] % max(size, 1)
    off = max(0, min(off, max(size - 1, 0)))
    kind, n = m["kind"], m["n"]
    if size == 0 and kind not in ("extend",):
        return None
    if kind == "flip":
        W.flip_bit(path, off, m["bit"])
        return (m["file"], off, off + 1)
    if kind == "set":
        W.write_at(path, off, bytes([m["byte"]]))
        return (m["file"], off, off + 1)
    n = min(n, size - off)
    if kind == "zero":
        W.zero(path, off, n)
        return (m["file"], off, off + n)
    if kind == "garbage":
        W.garbage(path, off, n, seed=m["src"])
        return (m["file"], off, off + n)
    if kind == "splice":
        src = (m["src"] // 8 * 8) % max(size - n, 1)
        W.write_at(path, off, W.read_at(path, src, n))
        return (m["file"], off, off + n)
    if kind == "truncate":
        W.truncate(path, off)
        return (m["file"], off, None)
    if kind == "extend":
        W.extend(path, n * 64, fill=bytes([m["byte"]]))
        return (m["file"], size, size + n * 64)
    raise AssertionError(kind)


def harmless(ref, m, change):
    """A change that no mode may call corruption: to a file that is not a
    segment (LOCK, a free file, a snapshot file: a damaged snapshot only
    makes snapshot() raise), or bytes of a segment past the zeroed header
    slot that ends its log (nothing reads there but the search for valid
    batches after a break, and there is no break).  Truncating or extending
    a segment is never counted harmless."""
    if change is None:
        return True
    name, lo, hi = change
    if not name.endswith(".seg"):
        return True
    return m["kind"] not in ("truncate", "extend") and lo >= ref["ends"][name] + 32


def touched_batches(ref, changes):
    """Batches with a byte inside a changed range."""
    out = set()
    for ch in changes:
        if ch is None:
            continue
        name, lo, hi = ch
        for off, end, lsn in ref["owners"].get(name, ()):
            if lo < end and (hi is None or hi > off):
                out.add(lsn)
    return out


def read_state(log):
    """reference_state, with a snapshot that raises CorruptionError recorded
    as such (only damaged snapshot files may do that)."""
    bad = set()
    real = log.snapshot

    def snapshot(g):
        try:
            return real(g)
        except CorruptionError:
            bad.add(g)
            return "corrupt"

    class Reader:
        def __getattr__(self, name):
            return snapshot if name == "snapshot" else getattr(log, name)

    return W.reference_state(Reader(), N), bad


def _compare(got, bad, keep, snap_damaged_groups, label):
    want = want_state(keep)
    assert bad <= snap_damaged_groups, f"{label}: snapshot() raised for undamaged {bad}"
    for g in bad:
        got[g] = dict(got[g], snapshot=want[g]["snapshot"])
    if got != want:
        present = {i for i, v in got["markers"].items() if v is not None}
        raise AssertionError(f"{label}: kept {sorted(present)} but state differs from their "
                             f"model: {str(W.diff(got, want))[:2000]}")


def check_example(ref, muts):
    base = tempfile.mkdtemp(prefix="prl-fuzz-")
    try:
        d = os.path.join(base, "log")
        shutil.copytree(ref["dir"], d)
        changes = [apply_mutation(d, m, ref["files"]) for m in muts]
        touched = touched_batches(ref, changes)
        benign = all(harmless(ref, m, c) for m, c in zip(muts, changes))
        newest_cut = any(c and c[0] == ref["newest"] and c[2] is None for c in changes)
        snap_damaged = {int(os.path.basename(c[0])[:16], 16) for c in changes
                        if c and c[0].startswith("snapshots")}
        for mode in MODES:
            work = os.path.join(base, mode)
            shutil.copytree(d, work)
            try:
                log = pyraftlog.open(work, recovery_mode=mode, segment_size=SEG, sync=False)
            except CorruptionError as exc:
                assert mode != "tolerate_any", f"tolerate_any raised: {exc}"
                assert not benign, f"{mode} raised for changes that touch nothing: {exc}"
                assert os.path.dirname(os.path.abspath(exc.path)) == os.path.abspath(work)
                continue
            with log:
                got, bad = read_state(log)
            present = frozenset(i for i, v in got["markers"].items() if v is not None)
            prefix = frozenset(range(1, len(present) + 1))
            if mode in ("strict", "tolerate_tail"):
                assert present == prefix, f"{mode}: kept {sorted(present)}, not a prefix"
            if mode == "strict" and (benign or not touched and not newest_cut):
                assert present == ALL, f"strict lost untouched batches {sorted(ALL - present)}"
            if mode == "tolerate_tail":
                assert present >= set(range(1, ref["newest_first"])), \
                    f"tolerate_tail cut before the newest segment: {sorted(ALL - present)}"
            if mode == "tolerate_any":
                lost = (ALL - touched) - present
                assert not lost, f"tolerate_any lost untouched batches {sorted(lost)}"
            _compare(got, bad, present, snap_damaged, mode)
            if mode == "strict":
                continue
            # a tolerant recovery leaves a log that stays as it recovered it
            with pyraftlog.open(work, recovery_mode=mode, segment_size=SEG, sync=False) as log:
                b = log.batch()
                b.put(9999, b"k", b"after")
                log.write(b).wait(timeout=30)
            with pyraftlog.open(work, recovery_mode=mode, segment_size=SEG, sync=False) as log:
                again, bad2 = read_state(log)
                assert log.get(9999, b"k") == b"after", mode
            again["groups"] = [g for g in again["groups"] if g != 9999]
            got["groups"] = [g for g in got["groups"] if g != 9999]
            _compare(again, bad2, present, snap_damaged, f"{mode} after write+reopen")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _settings(n):
    return settings(max_examples=n, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def _mutations(ref):
    return st.lists(mutation(ref["files"]), min_size=1, max_size=4)


def test_recovery_fuzz_short(ref):
    @_settings(50)
    @given(st.data())
    def run(data):
        check_example(ref, data.draw(_mutations(ref), label="mutations"))
    run()


@pytest.mark.slow
@pytest.mark.timeout(3600)  # scales with PYRAFTLOG_HYPOTHESIS_EXAMPLES
def test_recovery_fuzz_long(ref):
    @_settings(SLOW_EXAMPLES)
    @given(st.data())
    def run(data):
        check_example(ref, data.draw(_mutations(ref), label="mutations"))
    run()
