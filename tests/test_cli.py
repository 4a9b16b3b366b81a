"""The command line (pyraftlog/tools/): inspect, dump
and verify on good, corrupt, empty, missing, foreign and live directories,
always through a subprocess as a user runs it."""
import hashlib
import json
import os
import time
import subprocess
import textwrap

import pytest

import pyraftlog
from pyraftlog import ConfState, Entry, HardState, Snapshot, SnapshotMeta, WriteBatch
from pyraftlog import record as R
from pyraftlog.tools.cli import main

from tests.common import PYTHON, ROOT, child_env, flip_byte
from tests.common import run_cli as run

SEG1 = "0000000000000001.seg"


def one_line_error(p, *words):
    assert p.returncode == 1, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def make_log(path, segment_size=1 << 16, groups=(1, 2, 3), n=30):
    """A small closed log: bootstrap snapshots, entries, hard states, a
    snapshot with data, a compaction, a truncation, key-value records.  Every
    batch is durable before the next (so a damaged batch is acknowledged)."""
    with pyraftlog.open(str(path), sync=False, segment_size=segment_size) as log:
        b = WriteBatch()
        for g in groups:
            b.apply_snapshot(g, Snapshot(SnapshotMeta(0, 0, ConfState(voters=(1, 2, 3)))))
        log.write(b).wait()
        for i in range(1, n + 1):
            b = WriteBatch()
            for g in groups:
                b.append(g, [Entry(i, 1, b"cmd %d/%d" % (g, i))])
                b.set_hard_state(g, HardState(1, 2, i - 1))
            log.write(b).wait()
        b = WriteBatch()
        b.apply_snapshot(groups[1], Snapshot(SnapshotMeta(n // 2, 1, ConfState(voters=(1, 2))),
                                             b"snapshot-data"))
        b.compact(groups[0], 10)
        b.put(groups[0], b"applied", b"10")
        b.truncate(groups[2], n - 1)
        log.write(b).wait()
        expect = {g: (log.first_index(g), log.last_index(g)) for g in groups}
    return expect


def tree(path):
    """Name -> (size, mtime_ns, sha1) of every file below `path`."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            st = os.stat(p)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = (st.st_size, st.st_mtime_ns,
                                                 hashlib.sha1(fh.read()).hexdigest())
    return out


def batches(path):
    """(offset, length, lsn) of the valid batches of a segment file."""
    raw = open(path, "rb").read()
    seq = R.SEGMENT_HEADER.unpack_from(raw)[3]
    off, out = R.SEGMENT_HEADER_SIZE, []
    while off + R.BATCH_HEADER_SIZE <= len(raw):
        _, length, lsn, bseq, _, _ = R.BATCH_HEADER.unpack_from(raw, off)
        if bseq != seq or length == 0:
            break
        out.append((off, length, lsn))
        off += length
    return out


@pytest.fixture
def good(tmp_path):
    d = tmp_path / "log"
    expect = make_log(d)
    return d, expect


# -- the command itself ---------------------------------------------------------------

def test_console_script_exists():
    script = os.path.join(ROOT, ".venv", "bin", "pyraftlog")
    assert os.access(script, os.X_OK)
    p = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    assert "inspect" in p.stdout and "dump" in p.stdout and "verify" in p.stdout


@pytest.mark.parametrize("cmd, words", [("inspect", ["--json"]),
                                        ("dump", ["--group", "--from", "--to", "--json"]),
                                        ("verify", ["DIR"])])
def test_help_on_each_subcommand(cmd, words):
    p = run(cmd, "--help")
    assert p.returncode == 0
    for w in words:
        assert w in p.stdout


@pytest.mark.parametrize("args", [[], ["frobnicate", "x"], ["inspect"], ["dump", "x", "--group",
                                  "-1"], ["dump", "x", "--from", "nine"],
                                  ["dump", "x", "--from", "5", "--to", "2"]])
def test_usage_errors_exit_2(args):
    p = run(*args)
    assert p.returncode == 2
    assert "usage:" in p.stderr


def test_main_returns_an_int(good, capsys):
    d, _ = good
    assert main(["verify", str(d)]) == 0
    assert capsys.readouterr().out.startswith("OK:")
    assert main(["verify", str(d / "missing")]) == 1


# -- a good log -----------------------------------------------------------------------

def test_inspect_text(good):
    d, expect = good
    p = run("inspect", d)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""  # no progress line when stderr is not a terminal
    assert SEG1 in p.stdout and "active" in p.stdout
    assert "groups: 3" in p.stdout
    assert "held by" not in p.stdout


def test_inspect_json(good):
    d, expect = good
    p = run("inspect", d, "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["ok"] is True and rep["problems"] == []
    assert rep["locked_by_pid"] is None
    groups = {g["group"]: g for g in rep["groups"]}
    assert {g: (x["first_index"], x["last_index"]) for g, x in groups.items()} == expect
    assert groups[1]["entries"] == 30 - 10 and groups[1]["kv_keys"] == 1
    assert groups[2]["snapshot"]["index"] == 15 and groups[2]["snapshot"]["data_size"] == 13
    assert groups[3]["hard_state"] == {"term": 1, "vote": 2, "commit": 29}
    segs = [s for s in rep["segments"] if s["state"] != "free"]
    assert [s["file"] for s in segs] == [SEG1] and segs[0]["state"] == "active"
    assert segs[0]["first_lsn"] == 1 and segs[0]["last_lsn"] == 32 and segs[0]["batches"] == 32
    files = {f: os.path.getsize(d / f) for f in os.listdir(d) if f.endswith((".seg", ".free"))}
    assert rep["disk_bytes"] == sum(files.values())
    assert 0 < rep["live_bytes"] < rep["used_bytes"] <= rep["disk_bytes"]
    assert rep["live_bytes"] == sum(g["live_bytes"] for g in rep["groups"])
    assert rep["snapshots"] == {"files": 1, "bytes": 40 + 13, "orphans": 0}


def test_inspect_many_segments(tmp_path):
    d = tmp_path / "log"
    make_log(d, segment_size=4096, n=60)
    rep = json.loads(run("inspect", d, "--json").stdout)
    segs = [s for s in rep["segments"] if s["state"] != "free"]
    assert len(segs) > 3
    assert segs[-1]["state"] == "active"
    assert {s["state"] for s in segs[:-1]} <= {"live", "empty"}
    for a, b in zip(segs, segs[1:]):
        assert b["first_lsn"] == a["last_lsn"] + 1
    assert run("verify", d).returncode == 0


def test_verify_good(good):
    d, _ = good
    p = run("verify", d)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("OK: 1 segment, 32 batches,")
    assert "3 groups, 1 snapshot file" in p.stdout


def test_dump_text(good):
    d, _ = good
    p = run("dump", d)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:4] == ["SEGMENT", "OFFSET", "LSN", "TYPE"]
    body = lines[1:]
    assert len(body) == 3 + 30 * 3 * 2 + 4
    assert body[0].startswith(SEG1) and "snapshot" in body[0] and "voters=[1, 2, 3]" in body[0]
    assert any("hard_state" in x and "vote=2 commit=29" in x for x in body)
    assert any("entry" in x and "data=b'cmd 2/7'" in x for x in body)
    assert any("kv_put" in x and "key=b'applied' value=b'10'" in x for x in body)
    assert any("snapshot" in x and "data_size=13" in x for x in body)
    assert any(" compact " in x for x in body) and any(" truncate " in x for x in body)


def test_dump_json_lines(good):
    d, _ = good
    p = run("dump", d, "--json")
    assert p.returncode == 0, p.stderr
    recs = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(recs) == 3 + 30 * 3 * 2 + 4
    lsns = [r["lsn"] for r in recs]
    assert lsns == sorted(lsns)
    offsets = [r["offset"] for r in recs]
    assert offsets == sorted(offsets)
    e = next(r for r in recs if r["type"] == "entry" and r["group"] == 2 and r["index"] == 7)
    assert bytes.fromhex(e["data_hex"]) == b"cmd 2/7" and e["len"] == 7 and e["term"] == 1
    assert not e["data_truncated"]
    hs = next(r for r in recs if r["type"] == "hard_state" and r["group"] == 1)
    assert hs["vote"] == 2 and hs["commit"] == hs["index"]
    kv = next(r for r in recs if r["type"] == "kv_put")
    assert bytes.fromhex(kv["key_hex"]) == b"applied"


def test_staged_rewrite_records(tmp_path):
    """A purge that rewrites a group in staged batches leaves STAGE records
    and an ADOPT: dump names and decodes them, verify accepts them, inspect
    counts the staged entries as the group's."""
    d = tmp_path / "log"
    with pyraftlog.open(str(d), sync=False, segment_size=1 << 16, purge_batch_bytes=1024) as log:
        log.write(WriteBatch().append(1, [Entry(i, 1, b"y" * 200) for i in range(1, 61)])).wait()
        for k in range(8):  # group 2 fills the segments behind group 1
            b = WriteBatch().append(2, [Entry(i, 1, b"z" * 300)
                                        for i in range(1 + 100 * k, 101 + 100 * k)])
            log.write(b.compact(2, 100 * k) if k else b).wait()
        assert log.purge() > 60 * 232
    p = run("dump", d, "--json", "--group", "1")
    assert p.returncode == 0, p.stderr
    recs = [json.loads(line) for line in p.stdout.splitlines()]
    staged = [r for r in recs if r["type"] == "stage"]
    assert [r["index"] for r in staged] == list(range(1, 61))
    assert bytes.fromhex(staged[0]["data_hex"]) == b"y" * len(bytes.fromhex(staged[0]["data_hex"]))
    assert staged[0]["len"] == 200
    adopt = [r for r in recs if r["type"] == "adopt"]
    assert len(adopt) == 1 and adopt[0]["index"] == 1 and adopt[0]["last"] == 60
    assert adopt[0]["stage_pos"] == staged[0]["seq"] << 32 | staged[0]["offset"]
    assert run("verify", d).returncode == 0
    p = run("inspect", d, "--json")
    assert p.returncode == 0, p.stderr
    g1 = next(g for g in json.loads(p.stdout)["groups"] if g["group"] == 1)
    assert (g1["first_index"], g1["last_index"], g1["entries"]) == (1, 60, 60)
    assert g1["live_bytes"] == 60 * (32 + 200)


def test_dump_filters(good):
    d, _ = good
    recs = [json.loads(x) for x in run("dump", d, "--json", "--group", 2).stdout.splitlines()]
    assert recs and {r["group"] for r in recs} == {2}
    recs = [json.loads(x) for x in
            run("dump", d, "--json", "--group", 1, "--from", 5, "--to", 7).stdout.splitlines()]
    assert {(r["type"], r["index"]) for r in recs} == {
        ("entry", 5), ("entry", 6), ("entry", 7), ("hard_state", 5), ("hard_state", 6),
        ("hard_state", 7)}
    recs = [json.loads(x) for x in run("dump", d, "--json", "--from", 29).stdout.splitlines()]
    assert recs and all(r["index"] >= 29 for r in recs)
    assert {r["type"] for r in recs} >= {"entry", "hard_state", "truncate"}
    p = run("dump", d, "--group", 99)
    assert p.returncode == 0 and p.stdout == "no records match\n"


def test_dump_data_bytes(tmp_path):
    d = tmp_path / "log"
    with pyraftlog.open(str(d), sync=False) as log:
        b = WriteBatch()
        b.append(1, [Entry(1, 1, bytes(range(100)))])
        log.write(b)
    rec = json.loads(run("dump", d, "--json").stdout)
    assert rec["len"] == 100 and rec["data_truncated"] and len(rec["data_hex"]) == 32
    rec = json.loads(run("dump", d, "--json", "--data-bytes", -1).stdout)
    assert bytes.fromhex(rec["data_hex"]) == bytes(range(100))
    assert "...(+84)" in run("dump", d).stdout


def test_dump_into_a_closed_pipe(tmp_path):
    d = tmp_path / "log"
    make_log(d, n=400, segment_size=1 << 20)
    p = subprocess.Popen([*PYTHON, "-m", "pyraftlog", "dump", str(d)], cwd=ROOT,
                         env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()
    assert p.wait(timeout=60) in (0, 1)
    assert b"Traceback" not in p.stderr.read()


# -- corrupt logs ----------------------------------------------------------------------

def test_corrupt_batch_inside_the_log(good):
    d, _ = good
    seg = d / SEG1
    off, length, lsn = batches(seg)[10]
    flip_byte(seg, off + length // 2, 0x5A)
    before = tree(d)

    line = one_line_error(run("verify", d), "verify", SEG1, f"offset {off}:", "checksum")
    assert "acknowledged" in line

    p = run("inspect", d)
    one_line_error(p, "inspect", f"offset {off}:", "checksum")
    assert "problem:" in p.stdout  # the report is still printed
    rep = json.loads(run("inspect", d, "--json").stdout)
    assert rep["ok"] is False and rep["problems"][0]["offset"] == off

    p = run("dump", d, "--json")
    one_line_error(p, "dump", f"offset {off}:")
    recs = [json.loads(x) for x in p.stdout.splitlines()]
    got = {r["lsn"] for r in recs}
    assert lsn not in got and lsn - 1 in got and lsn + 1 in got  # skips only the bad batch
    assert tree(d) == before


def test_torn_tail_is_reported_but_not_fatal_to_inspect(good):
    d, _ = good
    seg = d / SEG1
    off, length, _ = batches(seg)[-1]
    flip_byte(seg, off + length - 4, 0x5A)
    one_line_error(run("verify", d), f"offset {off}:", "torn tail")
    p = run("inspect", d, "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["problems"] == [{"file": str(seg), "offset": off,
                                "reason": "batch checksum mismatch (torn tail: never acknowledged)",
                                "torn_tail": True}]
    # the state is what recovery keeps: the last batch (snapshot, compact, ...) is cut
    with pyraftlog.open(str(d), sync=False) as log:
        engine = {g: (log.first_index(g), log.last_index(g)) for g in (1, 2, 3)}
    # (opening cut the tail for good: a new segment follows; verify is clean again)
    assert {g["group"]: (g["first_index"], g["last_index"]) for g in rep["groups"]} == engine
    assert run("verify", d).returncode == 0


def test_corrupt_non_newest_segment(tmp_path):
    d = tmp_path / "log"
    make_log(d, segment_size=4096, n=60)
    seg = d / SEG1
    off, length, lsn = batches(seg)[2]
    flip_byte(seg, off + 40, 0x5A)
    one_line_error(run("verify", d), SEG1, f"offset {off}:", f"batches from {lsn} are missing")
    one_line_error(run("inspect", d), SEG1)


def test_corrupt_segment_header(good):
    d, _ = good
    flip_byte(d / SEG1, 20, 0x5A)
    for cmd in ("verify", "inspect", "dump"):
        one_line_error(run(cmd, d), SEG1, "offset 0:", "segment header checksum mismatch")


def test_corrupt_snapshot_file(good):
    d, _ = good
    snap = d / "snapshots" / os.listdir(d / "snapshots")[0]
    flip_byte(snap, os.path.getsize(snap) - 1, 0x5A)
    one_line_error(run("verify", d), str(snap), "snapshot data checksum mismatch")
    os.unlink(snap)
    one_line_error(run("verify", d), "snapshot file missing")


def test_unfinished_newest_segment(good):
    """A crash between renaming a free file to the next segment and writing
    its header: the log ends in the segment before; nothing is wrong."""
    d, _ = good
    free = sorted(f for f in os.listdir(d) if f.endswith(".free"))[0]
    os.rename(d / free, d / "0000000000000002.seg")
    p = run("verify", d)
    assert p.returncode == 0, p.stderr
    assert "0000000000000002.seg: unfinished" in p.stdout
    rep = json.loads(run("inspect", d, "--json").stdout)
    states = {s["file"]: s["state"] for s in rep["segments"]}
    assert states[SEG1] == "active" and states["0000000000000002.seg"] == "unfinished"


# -- directories that are no log -----------------------------------------------------------

@pytest.mark.parametrize("cmd", ["inspect", "dump", "verify"])
def test_missing_directory(tmp_path, cmd):
    one_line_error(run(cmd, tmp_path / "nope"), cmd, "no such directory")
    assert not (tmp_path / "nope").exists()


@pytest.mark.parametrize("cmd", ["inspect", "dump", "verify"])
def test_empty_directory(tmp_path, cmd):
    d = tmp_path / "empty"
    d.mkdir()
    one_line_error(run(cmd, d), "no segment files")
    assert os.listdir(d) == []  # no LOCK, nothing created


@pytest.mark.parametrize("cmd", ["inspect", "dump", "verify"])
def test_foreign_directory(tmp_path, cmd):
    d = tmp_path / "foreign"
    d.mkdir()
    (d / "notes.txt").write_text("hello")
    (d / "random.seg").write_bytes(os.urandom(5000))  # not a segment name
    (d / "0000000000000001.free").write_bytes(os.urandom(4096))
    one_line_error(run(cmd, d), "no segment files")
    (d / SEG1).write_bytes(os.urandom(8192))
    before = tree(d)
    one_line_error(run(cmd, d), SEG1, "bad segment magic")
    assert tree(d) == before


@pytest.mark.parametrize("cmd", ["inspect", "dump", "verify"])
def test_odd_files(tmp_path, cmd):
    f = tmp_path / "file"
    f.write_text("x")
    one_line_error(run(cmd, f), "not a directory")
    d = tmp_path / "d"
    (d / SEG1).mkdir(parents=True)
    one_line_error(run(cmd, d), "not a regular file")
    os.rmdir(d / SEG1)
    (d / SEG1).write_bytes(b"")
    p = run(cmd, d)  # an empty newest file is an unfinished creation, not an error
    assert p.returncode == 0, p.stderr


def test_short_and_truncated_files(tmp_path):
    d = tmp_path / "log"
    make_log(d)
    raw = (d / SEG1).read_bytes()
    (d / SEG1).write_bytes(raw[:50])
    one_line_error(run("verify", d), "offset 0:", "shorter than a segment header")
    (d / SEG1).write_bytes(raw[:3000])  # cut in the middle of a batch
    one_line_error(run("verify", d), "offset")
    assert run("inspect", d).returncode == 0  # a torn tail, as a crash leaves it


# -- live directories -------------------------------------------------------------------

def test_engine_open_in_this_process(tmp_path):
    d = tmp_path / "log"
    with pyraftlog.open(str(d), sync=False, segment_size=1 << 16) as log:
        for i in range(1, 50):
            b = WriteBatch()
            b.append(7, [Entry(i, 2, b"x" * i)])
            log.write(b)
        log.sync()
        # the engine's preparer thread makes free segments in the background
        deadline = time.monotonic() + 10
        while log.stats()["free_segments"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        before = tree(d)
        for cmd in ("verify", "inspect", "dump"):
            p = run(cmd, d)
            assert p.returncode == 0, (cmd, p.stderr)
        rep = json.loads(run("inspect", d, "--json").stdout)
        assert rep["locked_by_pid"] == os.getpid()
        assert rep["groups"][0]["last_index"] == 49
        assert "held by pid" in run("inspect", d).stdout
        assert tree(d) == before
        b = WriteBatch()  # the engine is untouched
        b.append(7, [Entry(50, 2, b"y")])
        log.write(b).wait()
        assert log.last_index(7) == 50
        with pytest.raises(pyraftlog.LockedError):
            pyraftlog.open(str(d))
    assert json.loads(run("inspect", d, "--json").stdout)["groups"][0]["last_index"] == 50


WRITER = textwrap.dedent("""
    import sys, pyraftlog
    from pyraftlog import Entry, HardState
    log = pyraftlog.open(sys.argv[1], sync=sys.argv[2] == "1", segment_size=1 << 16)
    i = 0
    while True:
        i += 1
        b = pyraftlog.WriteBatch()
        for g in (1, 2, 3):
            b.append(g, [Entry(i, 1, b"x" * (i % 300))])
            b.set_hard_state(g, HardState(1, 1, i - 1))
            if i % 40 == 0:
                b.compact(g, i - 20)   # empties old segments: they are recycled
        if i % 100 == 0:
            b.put(1, b"k", b"%d" % i)
        log.write(b)
        if i == 200:
            print("ready", flush=True)
""")


@pytest.mark.parametrize("sync", [0, 1])
def test_directory_a_subprocess_keeps_writing(tmp_path, sync):
    d = tmp_path / "log"
    w = subprocess.Popen([*PYTHON, "-c", WRITER, str(d), str(sync)], cwd=ROOT,
                         env=child_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert w.stdout.readline() == "ready\n"
        for _ in range(3):
            p = run("verify", d)
            assert p.returncode == 0, p.stderr
            assert p.stdout.startswith("OK:")
            p = run("inspect", d, "--json")
            assert p.returncode == 0, p.stderr
            rep = json.loads(p.stdout)
            assert rep["locked_by_pid"] == w.pid
            assert {g["group"] for g in rep["groups"]} == {1, 2, 3}
            p = run("dump", d, "--json", "--group", 2)
            assert p.returncode == 0, p.stderr
            recs = [json.loads(x) for x in p.stdout.splitlines()]
            assert all(r["group"] == 2 for r in recs)
            assert w.poll() is None, "the writer must keep running"
    finally:
        w.kill()
        w.wait()
    # the writer was killed mid-write: what it left is a log the engine opens
    assert run("inspect", d).returncode == 0
    with pyraftlog.open(str(d), sync=False, segment_size=1 << 16) as log:
        assert log.last_index(1) >= 200


def test_progress_only_on_a_terminal():
    import io

    from pyraftlog.tools.cli import ProgressLine

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        p = ProgressLine("verifying", stream, delay=0)
        p(1 << 20, 4 << 20)
        p.done()
    assert "verifying  25% (1.0 MiB of 4.0 MiB)" in tty.getvalue()
    assert tty.getvalue().endswith("\r\033[K")
    assert pipe.getvalue() == ""


def test_payload_that_does_not_decode(good):
    """A batch whose checksum is right but whose kv record claims a key
    longer than its payload (a writer bug, not a disk fault)."""
    from pyraftlog._native import ffi, lib

    d, _ = good
    seg = d / SEG1
    raw = bytearray(seg.read_bytes())
    off, length, _ = batches(seg)[-1]
    p = off + R.BATCH_HEADER_SIZE
    while raw[p] != R.KV_PUT:
        p += R.record_size(R.RECORD_HEADER.unpack_from(raw, p)[3])
    raw[p + 32:p + 36] = (1000).to_bytes(4, "little")  # key_len past the payload
    body = ffi.from_buffer(bytes(raw[off + 4:off + length]))
    crc = lib.prl_crc32c(lib.prl_batch_seed_of(1), body, length - 4)
    raw[off:off + 4] = crc.to_bytes(4, "little")
    seg.write_bytes(bytes(raw))
    one_line_error(run("verify", d), f"offset {p}:", "bad kv_put payload")
    one_line_error(run("inspect", d), f"offset {p}:", "bad kv_put payload")
    r = run("dump", d)
    one_line_error(r, f"offset {p}:", "bad kv_put payload")
    assert "<invalid payload: kv key length out of bounds>" in r.stdout
