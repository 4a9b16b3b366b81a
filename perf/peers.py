"""Peer stores: what a server would use instead of pyraftlog, measured in the
same run as ours on the same workload (shown as extra rows, never as the
reference a target is checked against).

Write path (the multi-group Ready loop: every write puts 1 entry of 256 B for
each of 64 groups and blocks until it is durable; none of these can pipeline):

* :class:`SQLiteWrite` — stdlib ``sqlite3``, ``journal_mode=WAL``,
  ``synchronous=FULL``, one table ``log(grp, idx, term, data)`` keyed by
  ``(grp, idx)`` (``WITHOUT ROWID``); one transaction of 64 ``INSERT``s per
  write (``executemany``), ``COMMIT`` syncs the WAL.  SQLite's automatic
  checkpoints (every 1000 WAL pages) run inside commits, as they would.
* :class:`LMDBWrite` — ``lmdb`` (py-lmdb), ``sync=True`` (LMDB's default:
  every commit ``fdatasync``s the data file and writes the meta page); key
  ``(group, index)`` big-endian, value ``term (8 B) + data``; one write
  transaction of 64 puts per write.  Optional (``pip install lmdb``).
* RocksDB (``rocksdict``): ``bench_ready_loop.RocksSide``, optional.
* :class:`AppendFileWrite` — the hand-written WAL: records encoded in Python
  (``struct`` header group/index/term/length + data, one CRC-32 per batch),
  ``os.write`` to a file opened ``O_APPEND`` (it grows, so every
  ``fdatasync`` also commits the new size), then ``os.fdatasync``.

Between runs (untimed) every peer drops what it holds, as ours compacts, so
disk use stays bounded.

Reads (``entries(g, lo, lo + 100)`` over random groups; the same entries as
ours, loaded untimed): :class:`SQLiteRead` (``SELECT ... WHERE grp=? AND idx
BETWEEN``), :class:`LMDBRead` (a read transaction and a cursor per call),
:class:`RocksRead` (``items(from_key=...)``), :class:`AppendFileRead` (the
hand-written log: a per-group array of record offsets in memory, data sliced
out of an ``mmap`` of the file).  Every one returns the same list of
``pyraftlog.Entry`` that ``log.entries`` does.
"""
from __future__ import annotations

import mmap
import os
import sqlite3
import struct
import time
import zlib
from array import array

from harness import Side
from sides import ENTRY_BYTES, TERM, payload

KEY = struct.Struct(">QQ")  # (group, index): sorts like (group, index)
TERM8 = struct.Struct("<Q")
REC_HEADER = struct.Struct("<QQQI")  # group, index, term, length
BATCH_HEADER = struct.Struct("<II")  # length, crc32 of the records
TABLE = ("CREATE TABLE log (grp INTEGER NOT NULL, idx INTEGER NOT NULL, term INTEGER NOT NULL, "
         "data BLOB NOT NULL, PRIMARY KEY (grp, idx)) WITHOUT ROWID")


def optional(module: str):
    """``import module`` or None (the peer is then skipped with a message)."""
    try:
        return __import__(module)
    except ImportError:
        return None


def skip_message(label: str, package: str) -> str:
    return f"{label} peer skipped: .venv/bin/pip install {package}"


# --------------------------------------------------------------------------
# Write path
# --------------------------------------------------------------------------

class StoreWrite(Side):
    """Blocking Ready loop against a store: ``commit(rows)`` must return durable.

    ``windows`` is the cycle of group windows of the Ready-loop workload; every
    write appends 1 entry to each group of the next window.
    """

    op_name = "write"

    def __init__(self, workdir: str, windows: list):
        self.workdir, self.windows = workdir, windows
        self.per_write = len(windows[0])
        groups = sorted({g for w in windows for g in w})
        self.next_index = dict.fromkeys(groups, 1)
        self.data = payload()
        self.w = 0
        self.syncs = 0
        self.sync_seconds = None

    def commit(self, rows: list) -> None:  # rows: [(group, index, term, data)]
        raise NotImplementedError

    def run(self, seconds, rec):
        nxt, data, windows, commit = self.next_index, self.data, self.windows, self.commit
        clock, lat, w = time.perf_counter, [], self.w
        s0 = self.syncs
        now = clock()
        deadline = now + seconds
        while now < deadline:
            rows = []
            for g in windows[w]:
                i = nxt[g]
                nxt[g] = i + 1
                rows.append((g, i, TERM, data))
            w = (w + 1) % len(windows)
            commit(rows)
            end = clock()
            lat.append(end - now)
            now = end
        self.w = w
        ops = len(lat)
        rec.add(ops, ops * self.per_write, ops * self.per_write * ENTRY_BYTES, lat)
        if self.syncs != s0 or self.sync_seconds is not None:
            rec.syncs = self.syncs - s0
            rec.writes = ops


class SQLiteWrite(StoreWrite):
    label = "SQLite WAL sync=FULL"

    def setup(self):
        path = os.path.join(self.workdir, "sqlite.db")
        self.con = con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"SQLite refused WAL mode ({mode})")
        con.execute("PRAGMA synchronous=FULL")
        con.execute(TABLE.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
        self.insert = "INSERT INTO log (grp, idx, term, data) VALUES (?, ?, ?, ?)"

    def commit(self, rows):
        con = self.con
        con.execute("BEGIN")
        con.executemany(self.insert, rows)
        con.execute("COMMIT")

    def maintain(self):
        self.con.execute("DELETE FROM log")
        self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self):
        self.con.close()


class LMDBWrite(StoreWrite):
    label = "LMDB sync"

    def __init__(self, workdir, windows, lmdb):
        super().__init__(workdir, windows)
        self.lmdb = lmdb

    def setup(self):
        path = os.path.join(self.workdir, "lmdb")
        # map_size is address space, not disk: the file grows as pages are used
        self.env = self.lmdb.open(path, map_size=16 << 30, sync=True, metasync=True,
                                  writemap=False, readahead=False)

    def commit(self, rows):
        pack, term8 = KEY.pack, TERM8.pack
        with self.env.begin(write=True) as txn:
            put = txn.put
            for g, i, t, d in rows:
                put(pack(g, i), term8(t) + d)

    def maintain(self):
        with self.env.begin(write=True) as txn:
            txn.drop(self.env.open_db(), delete=False)

    def close(self):
        self.env.close()


class AppendFileWrite(StoreWrite):
    """The hand-written WAL: encode in Python, append, fdatasync."""

    label = "Python append+fdatasync"

    def setup(self):
        self.path = os.path.join(self.workdir, "append.wal")
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self.sync_seconds = 0.0

    def commit(self, rows):
        hdr = REC_HEADER.pack
        body = b"".join([hdr(g, i, t, len(d)) + d for g, i, t, d in rows])
        os.write(self.fd, BATCH_HEADER.pack(len(body), zlib.crc32(body)) + body)
        t0 = time.perf_counter()
        os.fdatasync(self.fd)
        self.sync_seconds += time.perf_counter() - t0
        self.syncs += 1

    def run(self, seconds, rec):
        s0 = self.sync_seconds
        super().run(seconds, rec)
        rec.sync_seconds = self.sync_seconds - s0

    def maintain(self):
        os.ftruncate(self.fd, 0)

    def close(self):
        os.close(self.fd)
        try:
            os.unlink(self.path)
        except OSError:
            pass


def write_peers(workdir: str, windows: list, rocks_side=None, notes: list = None) -> list:
    """The write-path peers that can run here; a message for each one that cannot."""
    notes = notes if notes is not None else []
    out = [SQLiteWrite(workdir, windows)]
    lmdb = optional("lmdb")
    if lmdb is None:
        notes.append(skip_message("LMDB", "lmdb"))
        print("   " + notes[-1])
    else:
        out.append(LMDBWrite(workdir, windows, lmdb))
    if rocks_side is not None:
        out.append(rocks_side)
    out.append(AppendFileWrite(workdir, windows))
    return out


# --------------------------------------------------------------------------
# Reads
# --------------------------------------------------------------------------

class Dataset:
    """The entries every read side holds: groups 1..G, indexes 1..N, 256 B each.

    ``blob`` is all the data in one ``bytes`` (group-major: entry i of group g at
    ``((g-1)*N + i-1) * 256``); ``terms[g][i]`` is entry i's term (terms change
    every 97 entries, so a group has a few term runs).  ``order`` is the write
    order: rounds of ``chunk`` entries per group, like Ready loops interleave
    groups in one log.
    """

    def __init__(self, groups: int, per_group: int, chunk: int = 25, seed: int = 7):
        import random

        self.groups, self.n, self.size, self.chunk = groups, per_group, ENTRY_BYTES, chunk
        rnd = random.Random(seed)
        self.blob = rnd.randbytes(groups * per_group * ENTRY_BYTES)
        self.terms = {g: [0] + [TERM + (i + g) // 97 for i in range(1, per_group + 1)]
                      for g in range(1, groups + 1)}

    def data(self, g: int, i: int) -> memoryview:
        off = ((g - 1) * self.n + i - 1) * self.size
        return memoryview(self.blob)[off:off + self.size]

    def rounds(self):
        """[(g, lo, hi)] in write order."""
        for lo in range(1, self.n + 1, self.chunk):
            hi = min(self.n + 1, lo + self.chunk)
            for g in range(1, self.groups + 1):
                yield g, lo, hi

    def by_key(self):
        """(g, i, term, data) sorted by (g, i)."""
        for g in range(1, self.groups + 1):
            tl = self.terms[g]
            for i in range(1, self.n + 1):
                yield g, i, tl[i], self.data(g, i)


class ReadSide(Side):
    """``read(g, lo, hi) -> list[Entry]`` over a fixed random sequence of (g, lo)."""

    op_name = "read"

    def __init__(self, ds: Dataset, queries: list, span: int, Entry):
        self.ds, self.queries, self.span, self.Entry = ds, queries, span, Entry
        self.q = 0

    def read(self, g, lo, hi):
        raise NotImplementedError

    def run(self, seconds, rec):
        read, qs, span, clock = self.read, self.queries, self.span, time.perf_counter
        nq, q, ops = len(qs), self.q, 0
        now = clock()
        deadline = now + seconds
        # latency per call is not kept (a clock read costs as much as a read here)
        while now < deadline:
            for _ in range(64):
                g, lo = qs[q]
                read(g, lo, lo + span)
                q += 1
                if q == nq:
                    q = 0
            ops += 64
            now = clock()
        self.q = q
        rec.add(ops, ops * span, ops * span * self.ds.size)


class PythonBlobRead(ReadSide):
    """The reference: the same Entry list built in pure Python from one in-memory bytes."""

    label = "pure Python from one bytes"

    def read(self, g, lo, hi):
        ds, Entry, size = self.ds, self.Entry, self.ds.size
        tl, blob = ds.terms[g], ds.blob
        base = ((g - 1) * ds.n + lo - 1) * size
        return [Entry(i, tl[i], blob[o:o + size])
                for i, o in zip(range(lo, hi), range(base, base + (hi - lo) * size, size))]


class SQLiteRead(ReadSide):
    label = "SQLite WAL"

    def __init__(self, ds, queries, span, Entry, workdir):
        super().__init__(ds, queries, span, Entry)
        self.path = os.path.join(workdir, "reads-sqlite.db")

    def setup(self):
        self.con = con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute(TABLE)
        con.execute("BEGIN")
        con.executemany("INSERT INTO log VALUES (?, ?, ?, ?)",
                        ((g, i, t, bytes(d)) for g, i, t, d in self.ds.by_key()))
        con.execute("COMMIT")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.sql = ("SELECT idx, term, data FROM log WHERE grp = ? AND idx >= ? AND idx < ? "
                    "ORDER BY idx")

    def read(self, g, lo, hi):
        Entry = self.Entry
        return [Entry(i, t, d) for i, t, d in self.con.execute(self.sql, (g, lo, hi))]

    def close(self):
        self.con.close()


class LMDBRead(ReadSide):
    label = "LMDB"

    def __init__(self, ds, queries, span, Entry, workdir, lmdb):
        super().__init__(ds, queries, span, Entry)
        self.path, self.lmdb = os.path.join(workdir, "reads-lmdb"), lmdb

    def setup(self):
        self.env = env = self.lmdb.open(self.path, map_size=16 << 30, sync=True, readahead=False)
        pack, term8 = KEY.pack, TERM8.pack
        with env.begin(write=True) as txn:
            items = ((pack(g, i), term8(t) + bytes(d)) for g, i, t, d in self.ds.by_key())
            txn.cursor().putmulti(items, append=True)

    def read(self, g, lo, hi):
        Entry, unpack = self.Entry, TERM8.unpack_from
        out = []
        with self.env.begin() as txn:
            cur = txn.cursor()
            if cur.set_range(KEY.pack(g, lo)):
                for i, v in zip(range(lo, hi), cur.iternext(keys=False, values=True)):
                    out.append(Entry(i, unpack(v)[0], v[8:]))
        return out

    def close(self):
        self.env.close()


class RocksRead(ReadSide):
    label = "RocksDB"

    def __init__(self, ds, queries, span, Entry, workdir, rocksdict):
        super().__init__(ds, queries, span, Entry)
        self.path, self.rd = os.path.join(workdir, "reads-rocksdb"), rocksdict

    def setup(self):
        rd = self.rd
        opts = rd.Options(raw_mode=True)
        opts.create_if_missing(True)
        self.db = db = rd.Rdict(self.path, opts)
        pack, term8 = KEY.pack, TERM8.pack
        wb = rd.WriteBatch(raw_mode=True)
        for n, (g, i, t, d) in enumerate(self.ds.by_key(), 1):
            wb.put(pack(g, i), term8(t) + bytes(d))
            if n % 10000 == 0:
                db.write(wb)
                wb = rd.WriteBatch(raw_mode=True)
        db.write(wb)
        db.flush()

    def read(self, g, lo, hi):
        Entry, unpack = self.Entry, TERM8.unpack_from
        return [Entry(i, unpack(v)[0], v[8:]) for i, (_k, v) in
                zip(range(lo, hi), self.db.items(from_key=KEY.pack(g, lo)))]

    def close(self):
        self.db.close()


class AppendFileRead(ReadSide):
    """The hand-written log: records appended in write order, an in-memory
    array of record offsets per group, data sliced out of an mmap."""

    label = "Python append file + mmap"

    def __init__(self, ds, queries, span, Entry, workdir):
        super().__init__(ds, queries, span, Entry)
        self.path = os.path.join(workdir, "reads-append.wal")

    def setup(self):
        ds, hdr = self.ds, REC_HEADER
        self.offsets = {g: array("Q", [0]) for g in range(1, ds.groups + 1)}  # [0]: 1-based
        with open(self.path, "wb") as f:
            pos = 0
            for g, lo, hi in ds.rounds():
                tl, offs = ds.terms[g], self.offsets[g]
                parts = []
                for i in range(lo, hi):
                    parts.append(hdr.pack(g, i, tl[i], ds.size))
                    parts.append(ds.data(g, i))
                    offs.append(pos + hdr.size)
                    pos += hdr.size + ds.size
                f.write(b"".join(parts))
            f.flush()
            os.fsync(f.fileno())
        self.f = open(self.path, "rb")
        self.mm = mmap.mmap(self.f.fileno(), 0, prot=mmap.PROT_READ)

    def read(self, g, lo, hi):
        Entry, mm, size = self.Entry, self.mm, self.ds.size
        tl, offs = self.ds.terms[g], self.offsets[g]
        return [Entry(i, tl[i], mm[o:o + size]) for i, o in zip(range(lo, hi), offs[lo:hi])]

    def close(self):
        self.mm.close()
        self.f.close()
        os.unlink(self.path)


def read_peers(ds, queries, span, Entry, workdir, notes: list) -> list:
    out = [SQLiteRead(ds, queries, span, Entry, workdir)]
    for module, cls, label in (("lmdb", LMDBRead, "LMDB"), ("rocksdict", RocksRead, "RocksDB")):
        mod = optional(module)
        if mod is None:
            notes.append(skip_message(label, module))
            print("   " + notes[-1])
        else:
            out.append(cls(ds, queries, span, Entry, workdir, mod))
    out.append(AppendFileRead(ds, queries, span, Entry, workdir))
    return out


__all__ = ["SQLiteWrite", "LMDBWrite", "AppendFileWrite", "write_peers", "Dataset", "ReadSide",
           "PythonBlobRead", "SQLiteRead", "LMDBRead", "RocksRead", "AppendFileRead", "read_peers"]
