"""Torn tails: the last batch of the newest segment damaged at every byte
offset, and the line between a torn tail and corruption.

A child writes the reference batches (workload.reference_batches), waiting
for each ticket, and exits without close.  The last batch is then cut at
every offset o: bytes [o, end) zeroed, or replaced by garbage, or (what a
kill between the writer's copy of the records and of the header leaves)
only the header lost.  tolerate_tail (and tolerate_any) must drop exactly
that batch and keep every earlier one, counting dropped_tail_bytes when the
damage is visible as a torn batch; strict raises then.  When the damage
makes the header no longer claim the segment (its seq field is gone), the
log simply ends there: every mode agrees, nothing is dropped.  After each
recovery one more batch is written and the directory reopened strict: the
repaired log must be clean.

A flipped bit inside any earlier batch of the newest segment is corruption
(the next batch's durability watermark covers it): strict and tolerate_tail
raise, tolerate_any skips exactly that batch."""

import os
import time
import shutil

import pytest

import pyraftlog
from pyraftlog import CorruptionError, Entry

from tests.crash import workload as W

N = 30
SEG = 16 << 10
ALL = frozenset(range(1, N + 1))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("torn") / "log"
    W.write_reference(d, N, segment_size=SEG)
    segs = W.parse_log(str(d))
    assert len(segs) >= 2 and len(segs[-1].batches) >= 3, segs
    return str(d)


_WANT = {}


def want_state(keep, extra_groups=()):
    key = (frozenset(keep), tuple(extra_groups))
    if key not in _WANT:
        st = dict(W.reference_state(W.reference_model(N, frozenset(keep)), N))
        st["groups"] = sorted(st["groups"] + list(extra_groups))
        _WANT[key] = st
    return _WANT[key]


def _claims_segment(path, batch):
    """Does the (damaged) header at batch.off still name this segment?"""
    raw = W.read_at(path, batch.off, 32)
    return raw != bytes(32) and int.from_bytes(raw[16:24], "little") == batch.seq


def _check_cut(ref, work, batch, damage, label):
    """Copy `ref` to `work`, apply damage(path), and check all three modes
    plus a write after recovery and a strict reopen.  (Default runs sample
    the offsets: every byte of the headers, every 16th byte after them;
    the slow-marked tests take every byte.)  Returns a failure
    message or None."""
    path = os.path.join(work, os.path.basename(batch.path))
    pristine = W.read_at(batch.path, batch.off, batch.len)
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(ref, work)
    damage(path)
    damaged = W.read_at(path, batch.off, batch.len)
    if damaged == pristine:
        keep, torn = ALL, False
    else:
        keep, torn = ALL - {batch.lsn}, _claims_segment(path, batch)
    # strict first, on a copy (an open may repair the directory)
    scopy = work + ".strict"
    shutil.rmtree(scopy, ignore_errors=True)
    shutil.copytree(work, scopy)
    try:
        with pyraftlog.open(scopy, recovery_mode="strict", segment_size=SEG, sync=False) as log:
            if torn:
                return f"{label}: strict accepted a torn batch"
            if W.reference_state(log, N) != want_state(keep):
                return f"{label}: strict recovered a wrong state"
    except CorruptionError as exc:
        if not torn:
            return f"{label}: strict raised on a clean end: {exc}"
        if (os.path.basename(exc.path), exc.offset) != (os.path.basename(path), batch.off):
            return f"{label}: strict blamed {exc} instead of offset {batch.off}"
    for mode in ("tolerate_any", "tolerate_tail"):
        mcopy = work + "." + mode
        shutil.rmtree(mcopy, ignore_errors=True)
        shutil.copytree(work, mcopy)
        with pyraftlog.open(mcopy, recovery_mode=mode, segment_size=SEG, sync=False) as log:
            if W.reference_state(log, N) != want_state(keep):
                present = W.present_batches(log, N)
                return f"{label}: {mode} kept {sorted(ALL - present)} missing"
            dropped = log.stats()["dropped_tail_bytes"]
            if torn and not dropped:
                return f"{label}: {mode} cut a torn batch but dropped_tail_bytes == 0"
            if not torn and dropped:
                return f"{label}: {mode} dropped {dropped} bytes at a clean end"
            if mode == "tolerate_tail":
                b = log.batch()
                b.put(9999, b"k", b"after")
                log.write(b).wait(timeout=30)
        if mode == "tolerate_tail":
            try:
                with pyraftlog.open(mcopy, recovery_mode="strict", segment_size=SEG,
                                    sync=False) as log:
                    if W.reference_state(log, N) != want_state(keep, [9999]) or \
                            log.get(9999, b"k") != b"after":
                        return f"{label}: strict reopen after the repair lost state"
            except CorruptionError as exc:
                return f"{label}: strict reopen after the repair and a clean close: {exc}"
    return None


def _offsets(batch, every):
    if every:
        return range(batch.len)
    # every offset of the batch header and the start of the first record
    # header, then every 16th byte, and the last 8 (the last record's padding)
    return sorted(set(range(0, 40)) | set(range(40, batch.len, 16)) |
                  set(range(batch.len - 8, batch.len)))


def _run_offsets(reference, tmp_path, variant, every=False):
    last = W.parse_log(reference)[-1].batches[-1]
    work = str(tmp_path / "work")
    failures = []
    for o in _offsets(last, every):
        if variant == "zero":
            def damage(p, o=o):
                W.zero(p, last.off + o, last.len - o)
        elif variant == "garbage":
            def damage(p, o=o):
                W.garbage(p, last.off + o, last.len - o, seed=o)
        else:  # the kill between the records and the header: header bytes [o, 32) lost
            if o >= 32:
                break

            def damage(p, o=o):
                W.zero(p, last.off + o, 32 - o)
        msg = _check_cut(reference, work, last, damage, f"{variant} from +{o}")
        if msg:
            failures.append(msg)
    assert not failures, f"{len(failures)} offsets failed, e.g.:\n" + "\n".join(failures[:10])


def test_last_batch_zeroed_from_offsets(reference, tmp_path):
    _run_offsets(reference, tmp_path, "zero")


def test_last_batch_garbage_from_offsets(reference, tmp_path):
    _run_offsets(reference, tmp_path, "garbage")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # every byte offset of the last batch
def test_last_batch_zeroed_from_every_offset(reference, tmp_path):
    _run_offsets(reference, tmp_path, "zero", every=True)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # every byte offset of the last batch
def test_last_batch_garbage_from_every_offset(reference, tmp_path):
    _run_offsets(reference, tmp_path, "garbage", every=True)


def test_last_batch_header_lost_records_written(reference, tmp_path):
    _run_offsets(reference, tmp_path, "header")


def test_bit_flip_in_every_earlier_batch_of_newest_segment(reference, tmp_path):
    """Each batch before the last is covered by its successor's watermark:
    its damage is corruption, never a torn tail."""
    segs = W.parse_log(reference)
    newest = segs[-1]
    for b in newest.batches[:-1]:
        assert b.sync_lag == 1  # the child waited for every ticket
    for b in newest.batches[:-1]:
        for where in (b.off + 2, b.off + b.len // 2, b.off + b.len - 1):
            work = str(tmp_path / f"flip{where}")
            shutil.copytree(reference, work)
            path = os.path.join(work, os.path.basename(b.path))
            W.flip_bit(path, where, 3)
            for mode in ("strict", "tolerate_tail"):
                with pytest.raises(CorruptionError) as ei:
                    pyraftlog.open(work, recovery_mode=mode, segment_size=SEG).close()
                assert (os.path.basename(ei.value.path), ei.value.offset) == \
                    (os.path.basename(path), b.off), ei.value
            with pyraftlog.open(work, recovery_mode="tolerate_any", segment_size=SEG) as log:
                assert W.reference_state(log, N) == want_state(ALL - {b.lsn})
                assert log.stats()["skipped_batches"] >= 1
            shutil.rmtree(work)


def test_damage_in_an_unacknowledged_burst_is_a_torn_tail(tmp_path):
    """Batches written back to back carry sync_lag > 1: a batch no later
    watermark covers was never acknowledged when anything after it was
    written.  Damage there is cut as a torn tail (with everything after it);
    damage a later watermark covers raises.  The expectation is computed
    from the sync_lag values on disk."""
    path = tmp_path / "log"
    out = W.write_and_exit(path, 4242, 120, wait_prob=0.0, segment_size=1 << 20, finish="sync")
    assert out.max_written(0) == 120
    seg = W.parse_log(str(path))[-1]
    bs = seg.batches
    assert any(b.sync_lag > 1 for b in bs), "no burst: every batch was durable before the next"
    exp = W.Expected(4242, 0)
    cases = 0
    for k, b in enumerate(bs[:-1]):
        covered = any(later.lsn - later.sync_lag >= b.lsn for later in bs[k + 1:])
        if covered and cases % 3:
            cases += 1
            continue
        cases += 1
        work = str(tmp_path / f"w{k}")
        shutil.copytree(path, work)
        W.flip_bit(os.path.join(work, os.path.basename(seg.path)), b.off + b.len // 2, 1)
        if covered:
            with pytest.raises(CorruptionError):
                pyraftlog.open(work, segment_size=1 << 20).close()
        else:
            with pyraftlog.open(work, segment_size=1 << 20) as log:
                # cut from b on: exactly the prefix before it
                (_, st), = exp.states(b.lsn - 1, b.lsn - 1).values()
                for g, want in st.items():
                    assert W.group_state(log, g) == want, (k, g)
                assert log.get(W.MARKER, W.marker_key(0)) == (b"%d" % (b.lsn - 1)
                                                              if b.lsn > 1 else None)
                assert log.stats()["dropped_tail_bytes"] >= sum(x.len for x in bs[k:])
        shutil.rmtree(work)


def test_resume_over_torn_leftovers_then_clean_close_is_strict_clean(tmp_path):
    """Minimal reproducer.  Batch 2 = [kv put (payload 40 B), entry index 1
    of group 9 (64 B)]; a kill after its records were copied but before its
    header leaves the header zero.  Recovery ends the log at batch 2 (clean)
    and resumes there; a new 104-byte batch ends exactly on the old entry
    record, whose index field (1) sits where a batch header keeps its seq (1)."""
    d = str(tmp_path / "log")
    with pyraftlog.open(d) as log:
        b = log.batch()
        b.append(7, [Entry(1, 1, b"a" * 10)])
        log.write(b).wait(timeout=30)
        b = log.batch()
        b.put(5, b"k", b"v" * 35)
        b.append(9, [Entry(1, 1, b"x" * 64)])
        log.write(b).wait(timeout=30)
    (seg,) = W.parse_log(d)
    b2 = seg.batches[1]
    W.zero(b2.path, b2.off, 32)
    with pyraftlog.open(d) as log:
        assert (log.last_index(7), log.last_index(9), log.get(5, b"k")) == (1, 0, None)
        b = log.batch()
        b.put(5, b"k", b"w" * 35)
        log.write(b).wait(timeout=30)
    with pyraftlog.open(d, recovery_mode="strict") as log:       # raises today
        assert log.get(5, b"k") == b"w" * 35
    with pyraftlog.open(d) as log:
        assert log.stats()["dropped_tail_bytes"] == 0


def test_recycled_segment_old_bytes_after_clean_close_are_strict_clean(tmp_path):
    """Minimal reproducer, no crash at all.  The free files the engine
    prepared stand in for recycled segments whose previous life stored entry
    data full of the little-endian u64 2 -- the seq the next rotation gives
    the file.  After a rotation into it and a clean close, the bytes after
    the last batch read as a batch header of segment 2."""
    d = str(tmp_path / "log")
    seg = 8192
    with pyraftlog.open(d, segment_size=seg) as log:
        b = log.batch()
        b.append(1, [Entry(1, 1, b"x" * 100)])
        log.write(b).wait(timeout=30)
        deadline = time.monotonic() + 10  # the preparer thread makes them in the background
        while log.stats()["free_segments"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    frees = [n for n in os.listdir(d) if n.endswith(".free")]
    assert frees
    for n in frees:
        with open(os.path.join(d, n), "wb") as f:
            f.write((2).to_bytes(8, "little") * (seg // 8))
    with pyraftlog.open(d, segment_size=seg) as log:
        i = 2
        while log.stats()["rotations"] == 0:
            b = log.batch()
            b.append(1, [Entry(i, 1, b"y" * 1000)])
            log.write(b).wait(timeout=30)
            i += 1
        assert log.stats()["segments_reused"] == 1
    with pyraftlog.open(d, segment_size=seg, recovery_mode="strict") as log:   # raises today
        assert log.last_index(1) == i - 1
    with pyraftlog.open(d, segment_size=seg) as log:
        assert log.stats()["dropped_tail_bytes"] == 0
