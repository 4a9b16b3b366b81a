"""Damage every region of every on-disk structure and check what each
recovery mode makes of it (docs/API.md "Opening", pyraftlog/recovery.py):

* strict raises CorruptionError (message: file, offset, reason; attributes
  .path, .offset, .reason) at any break that is not a clean end;
* tolerate_tail cuts only a torn tail of the newest segment and otherwise
  raises;
* tolerate_any keeps every valid batch;
* no open ever crashes the process (every open runs in-process).

The reference log (workload.reference_batches) is written by a child that
waits for every ticket and exits without close: 60 batches in three 16 KiB
segments (first, middle, newest).  Batch i touches only group 100+i and its
own marker key, so the state after any subset of the batches is known
exactly, and "which batches survived" is a plain set compared in full
(entries byte for byte, terms, hard and conf state, snapshots with data, kv,
groups()).  Every batch was acknowledged before the next was written, so
each batch's durability watermark (lsn - sync_lag) covers its predecessor:
damage before the last batch of the newest segment is never a torn tail.

Offsets come from parsing the segments with pyraftlog.record's structs
(workload.parse_log); damage verbs are flip_bit, zero, garbage, truncate,
extend, forge_batch / forge_segment_header (a checksum-valid lie, what a
writer bug would leave)."""

import errno
import os
import shutil

import pytest

import pyraftlog
from pyraftlog import CorruptionError
from pyraftlog import record as R
from pyraftlog.snapshot_store import HEADER as SNAP_HEADER

from tests.crash import workload as W
from tests.crash.workload import (extend, flip_bit, forge_batch, forge_segment_header, garbage,
                                  truncate, zero)

N = 60
SEG = 16 << 10
ALL = frozenset(range(1, N + 1))
RAISE = "raise"
MODES = ("strict", "tolerate_tail", "tolerate_any")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("reference") / "log"
    W.write_reference(d, N, segment_size=SEG)
    segs = W.parse_log(str(d))
    assert len(segs) == 3 and all(len(s.batches) >= 8 for s in segs), segs
    assert [b.lsn for s in segs for b in s.batches] == list(range(1, N + 1))
    return str(d)


class Log:
    """A fresh copy of the reference and its layout."""

    def __init__(self, path):
        self.path = path
        self.segs = W.parse_log(path)
        self.first, self.middle, self.newest = self.segs

    def ids(self, seg, from_batch=None):
        bs = seg.batches
        if from_batch is not None:
            bs = bs[bs.index(from_batch):]
        return {b.lsn for b in bs}

    @property
    def mid_batch(self):
        """A batch in the middle of the middle segment."""
        bs = self.middle.batches
        return bs[len(bs) // 2]

    @property
    def last_batch(self):
        return self.newest.batches[-1]

    def snapshot_file(self, batch_id):
        g = W.REF_BASE + batch_id
        d = os.path.join(self.path, "snapshots")
        names = [n for n in os.listdir(d) if n.startswith(f"{g:016x}-")]
        assert len(names) == 1, names
        return g, os.path.join(d, names[0])


@pytest.fixture
def log(reference, tmp_path):
    d = tmp_path / "log"
    shutil.copytree(reference, d)
    return Log(str(d))


def _want_state(keep):
    return W.expected_state(N, frozenset(keep))


def _open_copy(log, mode, tag):
    work = log.path + f".{tag}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(log.path, work)
    return work, pyraftlog.open(work, recovery_mode=mode, segment_size=SEG, sync=False)


def _check_error(exc, work, file, offset, reason):
    assert isinstance(exc.path, str) and isinstance(exc.offset, int) and exc.reason, exc
    assert str(exc) == f"{exc.path}: offset {exc.offset}: {exc.reason}"
    assert os.path.dirname(os.path.abspath(exc.path)) == os.path.abspath(work), exc
    if file is not None:
        assert os.path.basename(exc.path) == os.path.basename(file), exc
    if offset is not None:
        assert exc.offset == offset, exc
    if reason is not None:
        reasons = (reason,) if isinstance(reason, str) else reason
        assert any(r in exc.reason for r in reasons), exc


def expect(log, *, strict, tail, any_, file=None, offset=None, reason=None, then_write=True):
    """Open a copy of the damaged log in each mode (None: that mode is not
    tried).  RAISE: CorruptionError at `file` (basename), `offset`, with
    `reason` (or one of a tuple of reasons) in its reason (None: not
    checked).  A set: recovery succeeds holding exactly those batches; then
    (then_write) one more batch is written, and a strict reopen — or, if
    strict itself rejects the damage, a reopen in the same mode — holds them
    plus the new one.  Returns {mode: stats or the exception}."""
    results = {}
    for mode, want in (("strict", strict), ("tolerate_tail", tail), ("tolerate_any", any_)):
        if want is None:
            continue
        if want == RAISE:
            work = log.path + f".{mode}"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(log.path, work)
            with pytest.raises(CorruptionError) as ei:
                pyraftlog.open(work, recovery_mode=mode, segment_size=SEG, sync=False).close()
            _check_error(ei.value, work, file, offset, reason)
            results[mode] = ei.value
            continue
        work, eng = _open_copy(log, mode, mode)
        with eng:
            got = W.reference_state(eng, N)
            results[mode] = eng.stats()
            _assert_batches(got, want, mode)
            if then_write:
                b = eng.batch()
                b.append(9999, [pyraftlog.Entry(1, 1, b"after recovery")])
                eng.write(b).wait(timeout=30)
        if then_write:
            # a strict reopen only where strict accepts this damage at all
            again = "strict" if isinstance(strict, (set, frozenset)) else mode
            with pyraftlog.open(work, recovery_mode=again, segment_size=SEG, sync=False) as eng:
                assert eng.entries(9999, 1, 2)[0].data == b"after recovery"
                _assert_batches(W.reference_state(eng, N), want, f"{mode} then {again}",
                                extra_groups=[9999])
    return results


def _assert_batches(got, want, mode, extra_groups=()):
    want_state = dict(_want_state(want))
    want_state["groups"] = sorted(want_state["groups"] + list(extra_groups))
    if got != want_state:
        present = {i for i, v in got["markers"].items() if v is not None}
        raise AssertionError(
            f"{mode}: batches missing {sorted(set(want) - present)}, unexpected "
            f"{sorted(present - set(want))}; state diff: "
            f"{str(W.diff(got, want_state))[:3000]}")


# ================================================================ sanity

def test_undamaged_reference_opens_identically_in_every_mode(log):
    res = expect(log, strict=ALL, tail=ALL, any_=ALL)
    for st in res.values():
        assert st["dropped_tail_bytes"] == 0 and st["skipped_batches"] == 0


# ======================================================== segment header
# A bad header of a segment that holds batches is never a torn write: the
# header was durable before any batch in the file was acknowledged.  Where
# the damaged segment has a predecessor, the engine reports the break at the
# predecessor's end ("segment ends early; batches from N are missing")
# instead of at the damaged header: these tests check the mode outcomes,
# test_*_is_reported_at_the_damaged_segment the location (an engine bug).

HEADER_FIELDS = {"magic": 0, "version": 8, "header_size": 12, "seq": 16, "first_lsn": 24,
                 "segment_size": 32, "reserved": 45, "crc": 60}


@pytest.mark.parametrize("field", list(HEADER_FIELDS))
def test_segment_header_bit_flip_in_middle_segment(log, field):
    flip_bit(log.middle.path, HEADER_FIELDS[field], 2)
    res = expect(log, strict=RAISE, tail=RAISE, any_=ALL)
    assert res["tolerate_any"]["skipped_batches"] >= 1


def test_segment_header_zeroed_in_middle_segment(log):
    zero(log.middle.path, 0, 64)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL)


def test_segment_header_bit_flip_in_first_segment(log):
    flip_bit(log.first.path, 20)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL, file=log.first.path, offset=0,
           reason="segment header checksum mismatch")


def test_segment_header_bit_flip_in_newest_segment(log):
    flip_bit(log.newest.path, 30)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL)


def test_segment_header_zeroed_in_newest_segment_that_holds_batches(log):
    """Not an unfinished creation: the file holds valid batches."""
    zero(log.newest.path, 0, 64)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL)


@pytest.mark.parametrize("field,value,reason", [
    ("version", 2, "unsupported segment format version"),
    ("header_size", 128, "unsupported segment format version"),
    ("seq", 99, "names another sequence number"),
    ("segment_size", 100, "bad segment size in header"),
])
def test_segment_header_forged_field(log, field, value, reason):
    """Checksum-valid headers with a bad field (the first segment, so that
    the error has no predecessor to land on)."""
    forge_segment_header(log.first, **{field: value})
    expect(log, strict=RAISE, tail=RAISE, any_=ALL, file=log.first.path, offset=0,
           reason=reason)


@pytest.mark.parametrize("field,value", [("version", 2), ("seq", 99), ("segment_size", 100)])
def test_segment_header_forged_field_in_middle_segment(log, field, value):
    forge_segment_header(log.middle, **{field: value})
    expect(log, strict=RAISE, tail=RAISE, any_=ALL)


def test_segment_header_forged_first_lsn(log):
    """The header names the wrong first batch: strict/tail raise where the
    chain breaks."""
    forge_segment_header(log.middle, first_lsn=log.middle.first_lsn + 1)
    expect(log, strict=RAISE, tail=RAISE, any_=None, reason="batches from")


def test_segment_header_forged_first_lsn_tolerate_any_keeps_every_valid_batch(log):
    """The batches carry their own lsn, and the first batch of the segment
    continues the previous segment's chain: it is valid and must be kept."""
    forge_segment_header(log.middle, first_lsn=log.middle.first_lsn + 1)
    expect(log, strict=None, tail=None, any_=ALL)


def _bad_middle_header(log):
    flip_bit(log.middle.path, 0, 2)
    return log.middle.path, "bad segment magic"


def _bad_newest_header(log):
    zero(log.newest.path, 0, 64)
    return log.newest.path, "bad segment magic"


def _short_middle(log):
    truncate(log.middle.path, 30)
    return log.middle.path, "file shorter than a segment header"


def _forged_middle_seq(log):
    forge_segment_header(log.middle, seq=99)
    return log.middle.path, "names another sequence number"


@pytest.mark.parametrize("damage", [_bad_middle_header, _bad_newest_header, _short_middle,
                                    _forged_middle_seq], ids=lambda f: f.__name__.strip("_"))
def test_header_damage_is_reported_at_the_damaged_segment(log, damage):
    path, reason = damage(log)
    expect(log, strict=RAISE, tail=RAISE, any_=None, file=path, offset=0, reason=reason)


# ========================================================== batch header

BATCH_FIELDS = {"crc": (0, "batch checksum mismatch"), "len_low": (4, "bad batch length"),
                "len_high": (6, "bad batch length"), "lsn": (8, "batch checksum mismatch"),
                "seq": (16, "segment ends early"), "count": (24, "batch checksum mismatch"),
                "sync_lag": (28, "batch checksum mismatch")}


@pytest.mark.parametrize("field", list(BATCH_FIELDS))
def test_batch_header_bit_flip_in_middle_segment(log, field):
    b = log.mid_batch
    off, reason = BATCH_FIELDS[field]
    flip_bit(log.middle.path, b.off + off, 0 if field != "len_high" else 4)
    res = expect(log, strict=RAISE, tail=RAISE, any_=ALL - {b.lsn}, file=log.middle.path,
                 offset=b.off, reason=reason)
    assert res["tolerate_any"]["skipped_batches"] >= 1


def test_batch_header_len_shortened_in_middle_segment(log):
    b = log.mid_batch
    forge_batch(b, len=b.len - 8, crc=b.crc)  # still aligned and in bounds; checksum wrong
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - {b.lsn}, file=log.middle.path,
           offset=b.off, reason="batch checksum mismatch")


def test_batch_header_bit_flip_in_first_segment(log):
    b = log.first.batches[3]
    flip_bit(b.path, b.off + 10)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - {b.lsn}, file=b.path, offset=b.off,
           reason="batch checksum mismatch")


def test_batch_header_forged_lsn(log):
    b = log.mid_batch
    forge_batch(b, lsn=b.lsn + 1)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - {b.lsn}, file=log.middle.path,
           offset=b.off, reason="batch sequence number out of order")


def test_batch_header_forged_lsn_repeated(log):
    """A batch claiming its predecessor's lsn (a replayed write)."""
    b = log.mid_batch
    forge_batch(b, lsn=b.lsn - 1)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - {b.lsn}, file=log.middle.path,
           offset=b.off, reason="batch sequence number out of order")


@pytest.mark.parametrize("delta", [1, -1])
def test_batch_header_forged_count(log, delta):
    b = log.mid_batch
    forge_batch(b, count=b.count + delta)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - {b.lsn}, file=log.middle.path,
           offset=b.off, reason="bad record length")


def test_batch_header_forged_len_cuts_last_record(log):
    b = log.mid_batch
    forge_batch(b, len=b.len - 8)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - {b.lsn}, file=log.middle.path,
           offset=b.off, reason="bad record length")


def test_batch_header_forged_seq(log):
    """A batch of another segment's life: the scanner sees the end of this
    segment's log, but batches follow."""
    b = log.mid_batch
    forge_batch(b, seq=b.seq + 1)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - {b.lsn}, file=log.middle.path,
           offset=b.off, reason="segment ends early")


def test_batch_header_forged_sync_lag_is_harmless_in_the_middle(log):
    for b in log.middle.batches:
        forge_batch(b, sync_lag=0)
    expect(log, strict=ALL, tail=ALL, any_=ALL)


# ========================================================= record header

RECORD_FIELDS = {"type": 0, "aux": 1, "reserved": 2, "len": 4, "group": 8, "index": 16,
                 "term": 24}


@pytest.mark.parametrize("field", list(RECORD_FIELDS))
def test_record_header_bit_flip(log, field):
    b = log.mid_batch
    rec = b.recs[0]
    flip_bit(b.path, rec.off + RECORD_FIELDS[field], 1)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - {b.lsn}, file=b.path, offset=b.off,
           reason="batch checksum mismatch")


@pytest.mark.parametrize("rtype", [0, max(R.NAMES) + 1, 255])
def test_record_header_forged_unknown_type(log, rtype):
    b = log.mid_batch
    W.write_at(b.path, b.recs[-1].off, bytes([rtype]))
    W.reseal(b)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - {b.lsn}, file=b.path, offset=b.off,
           reason="unknown record type")


@pytest.mark.parametrize("delta", [8, -8, 1 << 20])
def test_record_header_forged_len(log, delta):
    """The records no longer tile the batch: the next record header is read
    at the wrong place (an unknown type) or runs past the batch's end."""
    b = log.mid_batch
    rec = b.recs[0]
    W.write_at(b.path, rec.off + 4, (rec.len + delta).to_bytes(4, "little"))
    W.reseal(b)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - {b.lsn}, file=b.path, offset=b.off,
           reason=("bad record length", "unknown record type"))


# ========================================================= payload, padding

def test_payload_bit_flip(log):
    b = log.mid_batch
    rec = b.recs[0]
    flip_bit(b.path, rec.payload + rec.len // 2, 5)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - {b.lsn}, file=b.path, offset=b.off,
           reason="batch checksum mismatch")


def test_padding_bit_flip(log):
    b = log.mid_batch
    rec = next(r for r in b.recs if r.len % 8)
    flip_bit(b.path, rec.payload + rec.len, 0)  # the first padding byte
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - {b.lsn}, file=b.path, offset=b.off,
           reason="batch checksum mismatch")


def _forge_payload(log, rtype, at, data):
    """Overwrite bytes `at` of the payload of the first `rtype` record in the
    middle segment and reseal its batch: a checksum-valid batch whose record
    cannot be decoded (a writer bug, not a bit flip)."""
    for b in log.middle.batches:
        for rec in b.recs:
            if rec.type == rtype:
                W.write_at(b.path, rec.payload + at, data)
                W.reseal(b)
                return b, rec
    raise AssertionError(f"no record of type {rtype} in the middle segment")


def _forged_kv(log):
    return _forge_payload(log, R.KV_PUT, 0, (1 << 20).to_bytes(4, "little")), "bad kv_put payload"


def _forged_snapshot(log):
    return (_forge_payload(log, R.SNAPSHOT, 20, (0x7FFFFFFF).to_bytes(4, "little")),
            "bad snapshot payload")


def _forged_hard_state(log):
    """A hard state record whose payload is not 8 bytes: its length field
    and the batch are rewritten consistently (the record keeps its size on
    disk: 8 payload bytes become 7 plus one padding byte)."""
    for b in log.middle.batches:
        rec = next((r for r in b.recs if r.type == R.HARD_STATE), None)
        if rec:
            W.write_at(b.path, rec.off + 4, (7).to_bytes(4, "little"))
            W.write_at(b.path, rec.payload + 7, b"\0")
            W.reseal(b)
            return (b, rec), "bad hard_state payload"
    raise AssertionError("no hard state record")


FORGED_PAYLOADS = [_forged_kv, _forged_snapshot, _forged_hard_state]


@pytest.mark.parametrize("forge", FORGED_PAYLOADS, ids=lambda f: f.__name__.strip("_"))
def test_payload_forged_undecodable(log, forge):
    (b, rec), reason = forge(log)
    expect(log, strict=RAISE, tail=RAISE, any_=None, file=b.path, offset=rec.off, reason=reason)


@pytest.mark.parametrize("forge", FORGED_PAYLOADS, ids=lambda f: f.__name__.strip("_"))
def test_payload_forged_undecodable_is_skipped_by_tolerate_any(log, forge):
    (b, rec), reason = forge(log)
    expect(log, strict=None, tail=None, any_=ALL - {b.lsn})


# ============================================================ zero ranges

def test_zeroed_batch_in_middle_segment(log):
    b = log.mid_batch
    zero(b.path, b.off, b.len)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - {b.lsn}, file=b.path, offset=b.off,
           reason="segment ends early")


def test_zeroed_rest_of_middle_segment(log):
    b = log.mid_batch
    zero(b.path, b.off, log.middle.size - b.off)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - log.ids(log.middle, b), file=b.path,
           offset=b.off, reason="batches from %d are missing" % b.lsn)


def test_zeroed_batch_in_newest_segment_covered_by_a_later_watermark(log):
    """An acknowledged batch (a later batch's lsn - sync_lag covers it) is
    damaged: not a torn tail, even in the newest segment."""
    b = log.newest.batches[-3]
    zero(b.path, b.off, b.len)
    res = expect(log, strict=RAISE, tail=RAISE, any_=ALL - {b.lsn}, file=b.path, offset=b.off,
                 reason="valid batches follow the end of the log")
    assert res["tolerate_any"]["skipped_batches"] >= 1


def test_bit_flip_in_newest_segment_covered_by_a_later_watermark(log):
    b = log.newest.batches[-2]
    flip_bit(b.path, b.off + b.len - 1, 7)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - {b.lsn}, file=b.path, offset=b.off,
           reason="batch checksum mismatch")


def test_zeroed_last_batch_reads_as_never_written(log):
    """All zeros where the last batch was is indistinguishable from a batch
    never written: every mode ends the log there (documented limit: the
    acknowledgement of the very last batch has no later witness)."""
    b = log.last_batch
    zero(b.path, b.off, b.len)
    res = expect(log, strict=ALL - {b.lsn}, tail=ALL - {b.lsn}, any_=ALL - {b.lsn})
    assert res["strict"]["dropped_tail_bytes"] == 0


# ============================================================== torn tail

def test_torn_last_batch_bit_flip(log):
    b = log.last_batch
    flip_bit(b.path, b.off + b.len // 2, 3)
    res = expect(log, strict=RAISE, tail=ALL - {b.lsn}, any_=ALL - {b.lsn}, file=b.path,
                 offset=b.off, reason="batch checksum mismatch")
    assert res["tolerate_tail"]["dropped_tail_bytes"] >= b.len
    assert res["tolerate_any"]["dropped_tail_bytes"] >= b.len


def test_torn_last_batch_zeroed_after_its_header(log):
    b = log.last_batch
    zero(b.path, b.off + 32, b.len - 32)
    res = expect(log, strict=RAISE, tail=ALL - {b.lsn}, any_=ALL - {b.lsn}, file=b.path,
                 offset=b.off, reason="batch checksum mismatch")
    assert res["tolerate_tail"]["dropped_tail_bytes"] > 0


def test_torn_last_two_batches(log):
    """Both unacknowledged-looking: the last batch's watermark does not
    cover the one before it only if sync_lag says so; here it does, so the
    damage of the second-to-last is corruption even though the last one is
    torn too."""
    b1, b2 = log.newest.batches[-2:]
    flip_bit(b1.path, b1.off + 40)
    flip_bit(b2.path, b2.off + 40)
    expect(log, strict=RAISE, tail=ALL - {b1.lsn, b2.lsn}, any_=ALL - {b1.lsn, b2.lsn},
           file=b1.path, offset=b1.off, reason="batch checksum mismatch")


# ===================================================== bytes after the end

def test_garbage_right_after_log_end(log):
    garbage(log.newest.path, log.newest.end, 100, seed=1)
    expect(log, strict=ALL, tail=ALL, any_=ALL)


def test_bit_flip_far_after_log_end(log):
    flip_bit(log.newest.path, log.newest.size - 1, 6)
    expect(log, strict=ALL, tail=ALL, any_=ALL)


def test_garbage_in_unused_tail_of_full_segment(log):
    m = log.middle
    garbage(m.path, m.end, m.size - m.end, seed=2)
    expect(log, strict=ALL, tail=ALL, any_=ALL)


# ============================================================ whole files

def test_truncate_middle_segment_inside_a_batch(log):
    b = log.mid_batch
    truncate(b.path, b.off + 5)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - log.ids(log.middle, b), file=b.path,
           offset=b.off, reason="batches from %d are missing" % b.lsn)


def test_truncate_middle_segment_to_zero(log):
    truncate(log.middle.path, 0)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - log.ids(log.middle))


def test_truncate_middle_segment_inside_its_header(log):
    truncate(log.middle.path, 30)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - log.ids(log.middle))


def test_truncate_newest_segment_inside_last_batch(log):
    b = log.last_batch
    truncate(b.path, b.off + b.len - 8)
    expect(log, strict=RAISE, tail=ALL - {b.lsn}, any_=ALL - {b.lsn}, file=b.path,
           offset=b.off, reason="bad batch length")


def test_truncate_newest_segment_right_after_last_batch(log):
    truncate(log.newest.path, log.newest.end)
    expect(log, strict=ALL, tail=ALL, any_=ALL)


def test_truncate_newest_segment_to_zero(log):
    """Indistinguishable from an unfinished creation: either the log opens
    with the batches before the newest segment, or it is refused; never a
    crash, never a partial or reordered state."""
    truncate(log.newest.path, 0)
    for mode in MODES:
        work = log.path + "." + mode
        shutil.copytree(log.path, work)
        try:
            with pyraftlog.open(work, recovery_mode=mode, segment_size=SEG) as eng:
                _assert_batches(W.reference_state(eng, N), ALL - log.ids(log.newest), mode)
        except CorruptionError as exc:
            _check_error(exc, work, None, None, None)


def test_segment_before_an_unfinished_newest_cut_short(log):
    """The newest segment never got its header (an unfinished creation, so
    it is removed), and the one before it is cut down to its header.  That
    one had a successor, so all its batches were durable: losing them is
    corruption, not a torn tail (found by test_fuzz_recovery)."""
    truncate(log.newest.path, 0)
    truncate(log.middle.path, 64)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - log.ids(log.middle) - log.ids(log.newest),
           file=log.middle.path, offset=64, reason="the file is cut short")


def test_extend_newest_segment_with_zeros(log):
    extend(log.newest.path, 8192)
    expect(log, strict=ALL, tail=ALL, any_=ALL)


def test_extend_newest_segment_with_garbage(log):
    extend(log.newest.path, 5000, fill=b"\xa5\x17\x00\x01\xff")
    expect(log, strict=ALL, tail=ALL, any_=ALL)


def test_extend_middle_segment_with_garbage(log):
    extend(log.middle.path, 4096, fill=b"\x5a\x01")
    expect(log, strict=ALL, tail=ALL, any_=ALL)


def test_swap_two_segments(log):
    tmp = log.middle.path + ".swap"
    os.rename(log.middle.path, tmp)
    os.rename(log.newest.path, log.middle.path)
    os.rename(tmp, log.newest.path)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - log.ids(log.middle) - log.ids(log.newest),
           then_write=False)


def test_delete_middle_segment(log):
    """Reported where the chain breaks: the end of the segment before."""
    os.unlink(log.middle.path)
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - log.ids(log.middle), file=log.first.path,
           offset=log.first.end, reason="batches from %d are missing" % log.middle.first_lsn)


def test_rename_middle_segment_away(log):
    os.rename(log.middle.path, log.middle.path + ".bak")
    expect(log, strict=RAISE, tail=RAISE, any_=ALL - log.ids(log.middle), file=log.first.path,
           offset=log.first.end, reason="batches from %d are missing" % log.middle.first_lsn)


def test_delete_first_segment_leaves_a_suffix(log):
    """The log is a suffix of its history (the ring recycles the oldest
    segments), so a missing oldest segment is not detectable."""
    os.unlink(log.first.path)
    expect(log, strict=ALL - log.ids(log.first), tail=ALL - log.ids(log.first),
           any_=ALL - log.ids(log.first))


def test_delete_newest_segment_leaves_a_prefix(log):
    """Undetectable without a manifest: the log ends where the previous
    segment ends."""
    os.unlink(log.newest.path)
    expect(log, strict=ALL - log.ids(log.newest), tail=ALL - log.ids(log.newest),
           any_=ALL - log.ids(log.newest))


# =========================== what a crash in creating or rotating leaves
# These are states a SIGKILL really produces (test_kill hit the first one):
# segment files are created with openat(O_CREAT) then posix_fallocate, and
# rotation renames a prepared or recycled `.free` file to `<seq>.seg` before
# it writes the header through the mapping.  Nothing in such a file was
# acknowledged; recovery removes it and every mode opens the log.  (Until
# commit 10f85ec the segment before it raised "segment ends early".)

def _next_seg(log):
    return os.path.join(log.path, "%016x.seg" % (log.newest.seq + 1))


def test_crash_in_segment_create_before_fallocate(log):
    open(_next_seg(log), "wb").close()
    expect(log, strict=ALL, tail=ALL, any_=ALL)


def test_crash_in_rotation_before_header_of_prepared_file(log):
    with open(_next_seg(log), "wb") as f:
        f.truncate(SEG)
    expect(log, strict=ALL, tail=ALL, any_=ALL)


def test_crash_in_rotation_before_header_of_recycled_file(log):
    shutil.copyfile(log.first.path, _next_seg(log))
    expect(log, strict=ALL, tail=ALL, any_=ALL)


def test_crash_in_rotation_after_header_before_first_batch(log):
    """The new segment's header is there, no batch yet: a clean, empty
    newest segment that writing resumes in."""
    with open(_next_seg(log), "wb") as f:
        f.truncate(SEG)
    seg = W.Seg(_next_seg(log), log.newest.seq + 1, None, [], 64, SEG)
    forge_segment_header(seg, magic=R.SEGMENT_MAGIC, version=R.FORMAT_VERSION, header_size=64,
                         seq=log.newest.seq + 1, first_lsn=N + 1, segment_size=SEG,
                         reserved=bytes(20))
    expect(log, strict=ALL, tail=ALL, any_=ALL)


def test_unfinished_free_files_are_dropped(log):
    """Free files the preparer left half-made (empty, short) are deleted or
    ignored; a full-size one with garbage or an old segment's batches is
    adopted and its stale bytes never replay."""
    open(os.path.join(log.path, "00000000000000f0.free"), "wb").close()
    with open(os.path.join(log.path, "00000000000000f1.free"), "wb") as f:
        f.write(b"\x01" * 100)
    shutil.copyfile(log.middle.path, os.path.join(log.path, "00000000000000f2.free"))
    with open(os.path.join(log.path, "00000000000000f3.free"), "wb") as f:
        f.write(os.urandom(SEG))
    work, eng = _open_copy(log, "strict", "free")
    with eng:
        _assert_batches(W.reference_state(eng, N), ALL, "strict")
        # write enough to rotate through every free file
        for i in range(1, 80):
            b = eng.batch()
            b.append(9999, [pyraftlog.Entry(i, 1, bytes([i]) * 700)])
            eng.write(b).wait(timeout=30)
        assert eng.stats()["rotations"] >= 3
    for mode in MODES:
        with pyraftlog.open(work, recovery_mode=mode, segment_size=SEG) as eng:
            _assert_batches(W.reference_state(eng, N), ALL, mode, extra_groups=[9999])
            assert [e.data for e in eng.entries(9999, 1, 80)] == \
                [bytes([i]) * 700 for i in range(1, 80)]


# ============================================================ other files

def test_unrelated_files_are_ignored(log):
    for name in ("README", "x.seg", "0000000000000001.seg.tmp", "00000000000000zz.seg",
                 "000000000000001.seg"):
        with open(os.path.join(log.path, name), "wb") as f:
            f.write(b"not a segment" * 100)
    expect(log, strict=ALL, tail=ALL, any_=ALL)


def test_directory_named_like_a_segment_is_a_clean_error(log):
    os.mkdir(os.path.join(log.path, "00000000000000ff.seg"))
    for mode in MODES:
        with pytest.raises((CorruptionError, OSError)):
            pyraftlog.open(log.path, recovery_mode=mode, segment_size=SEG).close()


def test_lock_file_deleted(log):
    os.unlink(os.path.join(log.path, "LOCK"))
    expect(log, strict=ALL, tail=ALL, any_=ALL)


def test_lock_file_garbage(log):
    with open(os.path.join(log.path, "LOCK"), "wb") as f:
        f.write(os.urandom(5000))
    expect(log, strict=ALL, tail=ALL, any_=ALL)


def test_lock_file_truncated_after_garbage(log):
    p = os.path.join(log.path, "LOCK")
    with open(p, "wb") as f:
        f.write(b"pid 12345\n")
    truncate(p, 3)
    expect(log, strict=ALL, tail=ALL, any_=ALL)


def test_lock_file_is_a_directory_is_a_clean_error(log):
    p = os.path.join(log.path, "LOCK")
    os.unlink(p)
    os.mkdir(p)
    with pytest.raises(OSError) as ei:
        pyraftlog.open(log.path, segment_size=SEG).close()
    assert ei.value.errno in (errno.EISDIR, errno.EACCES, errno.EPERM)


# ========================================================== snapshot files
# Snapshot data lives in its own file; the log record carries its size and
# CRC.  Damage is found when the snapshot is read, never at open.

SNAP_BATCH = 27      # batch 27 (middle segment) stored a snapshot with data

SNAP_REGIONS = {"magic": (0, "bad snapshot magic"),
                "group": (8, "snapshot header checksum mismatch"),
                "file_id": (16, "snapshot header checksum mismatch"),
                "size": (24, "snapshot header checksum mismatch"),
                "data_crc": (32, "snapshot header checksum mismatch"),
                "header_crc": (36, "snapshot header checksum mismatch"),
                "data_first": (SNAP_HEADER.size, "snapshot data checksum mismatch"),
                "data_last": (-1, "snapshot data checksum mismatch")}


def _expect_snapshot_error(log, damaged, reason):
    """damaged: {group: snapshot file path}.  Every mode opens; every read
    but those snapshots answers as before; each damaged snapshot raises
    CorruptionError naming its file."""
    want = _want_state(ALL)
    for mode in MODES:
        with pyraftlog.open(log.path, recovery_mode=mode, segment_size=SEG) as eng:
            for g in range(W.REF_BASE + 1, W.REF_BASE + N + 1):
                if g not in damaged:
                    assert W.group_state(eng, g) == want[g], g
                    continue
                first, last = eng.first_index(g), eng.last_index(g)
                assert (first, last) == (want[g]["first_index"], want[g]["last_index"])
                assert eng.entries(g, first, last + 1) == want[g]["entries"]
                assert eng.initial_state(g) == want[g]["initial_state"]
                assert eng.get(g, b"a") == want[g]["kv"][b"a"]
                for call in (lambda: eng.snapshot(g), lambda: eng.group(g).snapshot()):
                    with pytest.raises(CorruptionError) as ei:
                        call()
                    exc = ei.value
                    assert os.path.abspath(exc.path) == os.path.abspath(damaged[g]), exc
                    assert reason in exc.reason, exc
                    assert str(exc) == f"{exc.path}: offset {exc.offset}: {exc.reason}"


@pytest.mark.parametrize("region", list(SNAP_REGIONS))
def test_snapshot_file_bit_flip(log, region):
    g, p = log.snapshot_file(SNAP_BATCH)
    off, reason = SNAP_REGIONS[region]
    flip_bit(p, off if off >= 0 else os.path.getsize(p) + off, 4)
    _expect_snapshot_error(log, {g: p}, reason)


def test_snapshot_file_missing(log):
    g, p = log.snapshot_file(SNAP_BATCH)
    os.unlink(p)
    _expect_snapshot_error(log, {g: p}, "snapshot file missing")


def test_snapshot_directory_missing(log):
    d = os.path.join(log.path, "snapshots")
    damaged = {int(n[:16], 16): os.path.join(d, n) for n in os.listdir(d)}
    assert len(damaged) >= 4
    shutil.rmtree(d)
    _expect_snapshot_error(log, damaged, "snapshot file missing")


@pytest.mark.parametrize("size,reason", [(0, "shorter than its header"),
                                         (20, "shorter than its header"),
                                         (SNAP_HEADER.size, "bad length"),
                                         (-1, "bad length")])
def test_snapshot_file_truncated(log, size, reason):
    g, p = log.snapshot_file(SNAP_BATCH)
    truncate(p, size if size >= 0 else os.path.getsize(p) + size)
    _expect_snapshot_error(log, {g: p}, reason)


def test_snapshot_file_extended(log):
    g, p = log.snapshot_file(SNAP_BATCH)
    extend(p, 1)
    _expect_snapshot_error(log, {g: p}, "bad length")


def test_snapshot_file_zeroed(log):
    g, p = log.snapshot_file(SNAP_BATCH)
    zero(p, 0, os.path.getsize(p))
    _expect_snapshot_error(log, {g: p}, "bad snapshot magic")


def test_snapshot_file_replaced_by_another_groups_file(log):
    g, p = log.snapshot_file(SNAP_BATCH)
    _, other = log.snapshot_file(SNAP_BATCH + 12)
    shutil.copyfile(other, p)
    _expect_snapshot_error(log, {g: p}, "does not match the log record")


def test_snapshot_leftovers_are_removed_at_open(log):
    """A temp file (crash inside the atomic write) and an unreferenced file
    (crash before its record became durable) are deleted; the rest stays."""
    d = os.path.join(log.path, "snapshots")
    before = set(os.listdir(d))
    g, p = log.snapshot_file(SNAP_BATCH)
    with open(p + ".tmp", "wb") as f:
        f.write(b"half")
    shutil.copyfile(p, os.path.join(d, f"{g:016x}-{0xabcdef:016x}.snap"))
    expect(log, strict=ALL, tail=ALL, any_=ALL, then_write=False)
    with pyraftlog.open(log.path, segment_size=SEG):
        pass
    assert set(os.listdir(d)) == before


def test_a_refused_open_keeps_no_descriptor(tmp_path):
    """An open that recovery refuses closes every file it opened (found by
    make test-crash: a registry kept each refused open's log handle, and its
    mapped segments, alive until the process ran out of descriptors)."""
    path = tmp_path / "log"
    with pyraftlog.open(str(path), segment_size=1 << 16) as log:
        for i in range(1, 30):
            log.write(log.batch().append(1, [pyraftlog.Entry(i, 1, b"x" * 1000)])).wait()
    seg = sorted(n for n in os.listdir(path) if n.endswith(".seg"))[-1]
    with open(path / seg, "r+b") as f:  # damage an acknowledged batch: corruption
        f.seek(R.SEGMENT_HEADER_SIZE + 40)
        byte = f.read(1)
        f.seek(R.SEGMENT_HEADER_SIZE + 40)
        f.write(bytes([byte[0] ^ 0xFF]))
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        with pytest.raises(CorruptionError):
            pyraftlog.open(str(path), segment_size=1 << 16, recovery_mode="strict")
    assert len(os.listdir("/proc/self/fd")) <= before
