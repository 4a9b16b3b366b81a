"""stats() against something other than the engine's own counters (README
"stats()"): disk_bytes against the directory itself, skipped_bytes against
the damaged batch's length parsed from the file, the latency percentiles
against their histogram and the latencies the caller saw, sync_seconds
against the wall clock."""
import os
import struct
import time

from pyraftlog import Entry, WriteBatch

from tests.common import append, wait_until

SEG = 1 << 16


def dir_segment_files(path):
    """{name: (size, allocated bytes)} of the segment and free files, or
    None if a file was renamed or deleted while it was listed."""
    out = {}
    try:
        for e in os.scandir(path):
            if e.name.endswith((".seg", ".free")):
                st = e.stat(follow_symlinks=False)
                out[e.name] = (st.st_size, st.st_blocks * 512)
    except FileNotFoundError:
        return None
    return out


def quiescent_match(log, path):
    """True once stats() and the directory agree (the preparer and the purger
    may still be creating or recycling files: retried until they settle).
    Compared: disk_bytes with the files' sizes, and the numbers of segment and
    free files with `segments` and `free_segments`."""
    s1 = log.stats()
    files = dir_segment_files(path)
    s2 = log.stats()
    keys = ("disk_bytes", "segments", "free_segments")
    if files is None or any(s1[k] != s2[k] for k in keys):
        return False
    segs = [n for n in files if n.endswith(".seg")]
    return (s1["disk_bytes"] == sum(size for size, _ in files.values()) and
            s1["segments"] == len(segs) and s1["free_segments"] == len(files) - len(segs))


def check_disk_bytes(log, path, what):
    assert wait_until(lambda: quiescent_match(log, path)), (
        what, {k: log.stats()[k] for k in ("disk_bytes", "segments", "free_segments")},
        dir_segment_files(path))
    listed = []
    assert wait_until(lambda: listed.append(dir_segment_files(path)) or listed[-1] is not None)
    for name, (size, allocated) in listed[-1].items():
        assert allocated >= size, f"{what}: {name} is sparse"  # never a hole to SIGBUS on


def test_disk_bytes_is_the_size_of_the_segment_files(open_log, log_dir):
    """At every quiescent point of a life with rotations, recycling, deletion
    beyond max_free_segments, a purge rewrite, group removal and reopen."""
    path = str(log_dir)
    log = open_log(segment_size=SEG, prepare_ahead=2, max_free_segments=3,
                   purge_threshold=8 * SEG)
    assert wait_until(lambda: log.stats()["free_segments"] == 2)
    check_disk_bytes(log, path, "fresh")
    last = 0
    for k in range(30):                       # group 1 turns over: compacts as it goes
        append(log, 1, last + 1, 40, size=300, compact_to=(last - 40) if last > 40 else None)
        last += 40
    log.sync()
    check_disk_bytes(log, path, "rotations and recycling")
    for k in range(8):                        # group 2 never compacts: pins old segments
        append(log, 2, 1 + 40 * k, 40, size=300).wait()
        append(log, 1, last + 1, 40, size=300, compact_to=last - 40).wait()
        last += 40
    log.purge()
    log.sync()
    check_disk_bytes(log, path, "after a purge")
    log.write(WriteBatch().remove_group(2).compact(1, last - 1)).wait()
    append(log, 1, last + 1, 1).wait()
    check_disk_bytes(log, path, "after removing the pinning group")
    assert log.stats()["segments_recycled"] + log.stats()["segments_deleted"] > 0
    log.close()
    log = open_log(segment_size=SEG, prepare_ahead=2, max_free_segments=3)
    check_disk_bytes(log, path, "reopened")
    log.close()
    log = open_log(segment_size=2 * SEG)     # free files of the old size are deleted
    check_disk_bytes(log, path, "reopened with another segment_size")


def test_skipped_bytes_is_the_damaged_batch(open_log, log_dir):
    """tolerate_any skips a damaged batch in a middle segment: skipped_batches
    1 and skipped_bytes its length, as the file's batch header says."""
    path = str(log_dir)
    log = open_log(segment_size=16 << 10, sync=True)
    for i in range(1, 31):
        log.write(WriteBatch().append(1, [Entry(i, 1, b"x" * 1500)])).wait()
    log.close()
    segs = sorted(n for n in os.listdir(path) if n.endswith(".seg"))
    assert len(segs) >= 3
    log = open_log(segment_size=16 << 10)  # nothing skipped while healthy
    assert (log.stats()["skipped_batches"], log.stats()["skipped_bytes"]) == (0, 0)
    log.close()
    first = os.path.join(path, segs[0])
    with open(first, "r+b") as f:
        raw = f.read()
        off = 64
        _, blen1 = struct.unpack_from("<II", raw, off)            # keep batch 1
        off2 = off + blen1
        _, blen2 = struct.unpack_from("<II", raw, off2)           # damage batch 2's payload
        f.seek(off2 + blen2 - 8)
        f.write(bytes([raw[off2 + blen2 - 8] ^ 0xFF]))
    log = open_log(segment_size=16 << 10, recovery_mode="tolerate_any")
    s = log.stats()
    assert (s["skipped_batches"], s["skipped_bytes"]) == (1, blen2)
    assert s["recovered_batches"] == 29 and s["dropped_tail_bytes"] == 0


def _percentile(hist, q):
    """Written here from the README's words: the upper bound of the
    power-of-two bucket that holds quantile q."""
    total = sum(hist.values())
    acc = 0
    for lower in sorted(hist):
        acc += hist[lower]
        if acc >= q * total:
            return 2 * lower
    raise AssertionError("empty histogram")


def test_durable_latency_percentiles_and_sync_seconds(open_log):
    log = open_log(segment_size=1 << 20, sync=True)
    s0 = log.stats()
    assert s0["durable_latency_p50_us"] is None and s0["durable_latency_p99_us"] is None
    assert s0["sync_seconds"] == 0
    seen = []  # latency each write's caller saw, write() to wait() returning
    t_start = time.monotonic()
    for i in range(200):
        t0 = time.monotonic()
        append(log, 1 + i % 4, 1 + i // 4, 1).wait()
        seen.append(time.monotonic() - t0)
    elapsed = time.monotonic() - t_start
    s = log.stats()
    hist = s["durable_latency_us"]
    assert sum(hist.values()) == s["writes"] == 200
    assert all(b & (b - 1) == 0 for b in hist)  # power-of-two buckets
    p50, p99 = s["durable_latency_p50_us"], s["durable_latency_p99_us"]
    assert (p50, p99) == (_percentile(hist, 0.5), _percentile(hist, 0.99))
    assert 0 < p50 <= p99
    # a bucket's lower bound is a latency the engine measured; the caller, who
    # waited from before write() until after completion, saw at least that much
    seen_us = sorted(x * 1e6 for x in seen)
    assert p50 // 2 <= seen_us[-1] and p99 // 2 <= seen_us[-1]
    # sync_seconds: time spent in fdatasync, within the time the writes took
    assert 0 < s["sync_seconds"] <= elapsed
    assert s["syncs"] >= 1
    append(log, 9, 1, 1).wait()
    assert log.stats()["sync_seconds"] > s["sync_seconds"]

