"""The segment table (csrc/table.c) over a long life: its size follows the
segments that exist, not how many there ever were, and nothing stops at any
segment sequence number (positions carry the seq modulo 2^32)."""
import os
import struct

import pyraftlog
from pyraftlog import Entry, HardState, WriteBatch
from pyraftlog.engine import crc32c

from tests.common import seg_files, wait_until

SEG = 4096
SEGMENT_HEADER = struct.Struct("<8sIIQQQ20sI")  # docs/FORMAT.md, segment header


def plant_empty_segment(path, seq):
    """A segment file holding only its header (docs/FORMAT.md): a log that
    was created and never written, whose next segment will be seq + 1."""
    os.makedirs(path, exist_ok=True)
    head = SEGMENT_HEADER.pack(b"PRLSEG01", 1, 64, seq, 1, SEG, bytes(20), 0)
    head = head[:60] + struct.pack("<I", crc32c(head[:60]))
    with open(os.path.join(path, f"{seq:016x}.seg"), "wb") as f:
        f.write(head + bytes(SEG - len(head)))


def open_fds():
    return len(os.listdir("/proc/self/fd"))


class Model:
    """What every group must read back: entries from its first index on."""

    def __init__(self):
        self.groups = {}  # group -> (first index, {index: (term, data)}, hard state)

    def check(self, log):
        assert log.groups() == sorted(self.groups)
        for g, (first, entries, hs) in self.groups.items():
            last = max(entries, default=first - 1)
            assert (log.first_index(g), log.last_index(g)) == (first, last)
            got = log.entries(g, first, last + 1)
            assert [(e.index, e.term, e.data) for e in got] == \
                [(i, *entries[i]) for i in range(first, last + 1)]
            assert log.initial_state(g)[0] == hs


def run_groups(log, model, rounds, start_round, lagging=7):
    """Rounds of writes: groups 1..4 append and compact behind their head,
    group `lagging` appends once in a while and never compacts, so the purge
    rewrites it forward."""
    for r in range(start_round, start_round + rounds):
        b = WriteBatch()
        for g in (1, 2, 3, 4):
            first, entries, _ = model.groups.setdefault(g, (1, {}, HardState()))
            i = max(entries, default=first - 1) + 1
            data = bytes([r % 251]) * (300 + 50 * g)
            b.append(g, [Entry(i, 1 + r // 50, data)])
            entries[i] = (1 + r // 50, data)
            hs = HardState(1 + r // 50, g, i)
            if i - first > 3:  # keep three entries
                b.compact(g, i - 3)
                for k in range(first, i - 2):
                    del entries[k]
                first = i - 2
            b.set_hard_state(g, hs)
            model.groups[g] = (first, entries, hs)
        if r % 40 == 0:
            first, entries, hs = model.groups.setdefault(lagging, (1, {}, HardState()))
            i = max(entries, default=0) + 1
            b.append(lagging, [Entry(i, 1, b"lag %d" % i)])
            entries[i] = (1, b"lag %d" % i)
        log.write(b)


def test_seqs_near_2_to_the_40_through_rotation_recycling_purge_and_reopen(tmp_path):
    """The log starts at seq 2^40 - 40: its low 32 bits wrap to 0 within the
    first rotations, and the log keeps working through recycling, a purge of
    a lagging group and reopens, with a model as the oracle."""
    path = str(tmp_path / "log")
    base = (1 << 40) - 40
    plant_empty_segment(path, base)
    model = Model()
    opts = dict(segment_size=SEG, sync=False, purge_threshold=16 * SEG, prepare_ahead=2)
    r = 0
    for reopen in range(3):
        log = pyraftlog.open(path, **opts)
        run_groups(log, model, 400, r)
        r += 400
        log.sync()
        assert wait_until(lambda: log.stats()["segments"] <= 20)
        s = log.stats()
        assert s["segments_recycled"] > 0 and s["purge_rewritten_groups"] > 0
        assert s["table_slots"] <= 64
        model.check(log)
        log.close()
    seqs = [int(n[:-4], 16) for n in seg_files(path)]
    assert min(seqs) > 1 << 40  # past the wrap of the low 32 bits
    log = pyraftlog.open(path, **opts)
    model.check(log)
    log.close()


def test_table_and_descriptors_stay_bounded_over_100000_rotations(tmp_path):
    """The short soak: 100,000 rotations of 4 KiB segments (one batch each),
    every emptied segment recycled; the segment table and the open file
    descriptors stay as small as the segments that exist."""
    log = pyraftlog.open(str(tmp_path / "log"), segment_size=SEG, sync=False)
    data = b"x" * (SEG - 200)  # one batch fills a segment
    fds0 = None
    slots = []
    for i in range(1, 100_001):
        b = WriteBatch().append(1, [Entry(i, 1, data)])
        if i > 1:
            b.compact(1, i - 1)
        log.write(b)
        if i % 10_000 == 0:
            s = log.stats()
            slots.append(s["table_slots"])
            if fds0 is None:
                fds0 = open_fds()
            assert open_fds() <= fds0 + 4, (i, open_fds(), fds0)
    s = log.stats()
    assert s["rotations"] >= 99_000
    assert s["segments_recycled"] >= 90_000
    assert max(slots) <= 64, slots
    assert s["segments"] + s["free_segments"] <= 16
    assert log.last_index(1) == 100_000 and log.entries(1, 100_000, 100_001)[0].data == data
    log.close()
