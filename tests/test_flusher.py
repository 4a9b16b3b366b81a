"""The durability pipeline: concurrent writers, the flusher's group commit,
poisoning on a failed sync, close() under load, fork().

docs/API.md, "Writing: batches and tickets": batches apply in the order ``write``
returned and are visible at once; a ticket completes once its batch is
durable, tickets of one engine complete in write order; one fdatasync covers
every batch written before it; a failed fdatasync poisons the log (every
pending and later ticket fails with ``PoisonedError``, later writes raise it,
reads keep working, reopening recovers what was durable).

Every wait is bounded so that an engine hang fails a test instead of hanging
the run; nothing asserts a duration (only counts with generous bounds)."""

import errno
import os
import random
import threading
import time
from collections import defaultdict

import pytest

import pyraftlog
from pyraftlog import (ClosedError, Entry, HardState, PoisonedError, RaftLogError, WriteBatch,
                       failpoint)

SEG = 1 << 20
WAIT = 30  # bound on every wait that is expected to succeed


@pytest.fixture(autouse=True)
def _no_failpoints():
    yield
    failpoint.clear_all()


def run_threads(targets, timeout=WAIT * 2):
    """Start one thread per callable, join them all (bounded); re-raise the
    first exception a thread raised."""
    errors = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # reported below
                errors.append(exc)
        return run

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for th in threads:
        th.start()
    deadline = time.monotonic() + timeout
    for th in threads:
        th.join(max(0.0, deadline - time.monotonic()))
    assert not any(th.is_alive() for th in threads), "a thread hung"
    if errors:
        raise errors[0]


def data_of(g, idx, term):
    return b"%d:%d:%d" % (g, idx, term)


def check_group_entries(es, g):
    """Entries read back in one call: contiguous from 1, terms non-decreasing,
    data as written."""
    for k, e in enumerate(es):
        assert e.index == k + 1, (g, [x.index for x in es])
        assert e.data == data_of(g, e.index, e.term), (g, e)
        if k:
            assert e.term >= es[k - 1].term, (g, es[k - 1], e)


# ---------------------------------------------------------------- concurrency


N_THREADS = 16
SHARED = (1, 2, 3, 4)


def owned_groups(k):
    return (1000 + 2 * k, 1001 + 2 * k)


def test_concurrent_writers_are_consistent_and_recovered(log_dir):
    """16 threads write multi-group batches: appends (and conflicting
    re-appends) to groups each thread owns, hard states and kv pairs to groups
    every thread writes.  Readers check consistency during the run; after
    close + reopen the log equals a model built from the tickets' lsns."""
    iters = 250
    log = pyraftlog.open(log_dir, segment_size=SEG, sync=True)
    own_model = {}  # group -> list of terms (entry i has index i+1)
    shared_ops = []  # (lsn, [(op, group, *args)])
    shared_lock = threading.Lock()
    all_tickets = []
    stop_readers = threading.Event()
    reads = [0]

    def writer(k):
        rnd = random.Random(k)
        mine = {g: [] for g in owned_groups(k)}
        term = 1
        tickets = []
        for i in range(iters):
            b = WriteBatch()
            for g in owned_groups(k) if i % 4 == 0 else (owned_groups(k)[i % 2],):
                terms = mine[g]
                if i % 15 == 14 and len(terms) >= 3:
                    # conflicting suffix: re-append from last-1 with a newer term
                    term += 1
                    start = len(terms) - 1
                    n = 4
                else:
                    start = len(terms) + 1
                    n = rnd.randint(1, 3)
                es = [Entry(start + j, term, data_of(g, start + j, term)) for j in range(n)]
                b.append(g, es)
                del terms[start - 1:]
                terms.extend([term] * n)
            ops = []
            if i % 3 == 0:
                s = SHARED[(k + i) % len(SHARED)]
                hs = HardState(term=k + 1, vote=k, commit=i)
                b.set_hard_state(s, hs)
                b.put(s, b"last", b"%d:%d" % (k, i))
                b.put(s, b"t%d" % k, b"%d" % i)
                ops += [("hs", s, hs), ("put", s, b"last", b"%d:%d" % (k, i)),
                        ("put", s, b"t%d" % k, b"%d" % i)]
            if i % 7 == 6:
                s = SHARED[(k * 3 + i) % len(SHARED)]
                b.delete(s, b"t%d" % k)
                ops.append(("del", s, b"t%d" % k))
            t = log.write(b)
            tickets.append(t)
            if ops:
                with shared_lock:
                    shared_ops.append((t.lsn, ops))
            if i % 10 == 9:
                t.wait(timeout=WAIT)
        for t in tickets:
            t.wait(timeout=WAIT)
        with shared_lock:
            own_model.update(mine)
            all_tickets.extend(tickets)

    def reader(seed):
        rnd = random.Random(1000 + seed)
        while not stop_readers.is_set():
            g = owned_groups(rnd.randrange(N_THREADS))[rnd.randrange(2)]
            assert log.first_index(g) == 1
            last = log.last_index(g)
            if last:
                es = log.entries(g, 1, last + 1)
                assert len(es) == last
                check_group_entries(es, g)
                assert log.term(g, last) >= es[0].term
            s = rnd.choice(SHARED)
            v = log.get(s, b"last")
            assert v is None or v.count(b":") == 1
            log.initial_state(s)
            reads[0] += 1

    reader_errors = []
    readers = [threading.Thread(target=_catching, args=(reader, s, reader_errors), daemon=True)
               for s in range(2)]
    for th in readers:
        th.start()
    try:
        run_threads([lambda k=k: writer(k) for k in range(N_THREADS)])
    finally:
        stop_readers.set()
        for th in readers:
            th.join(WAIT)
    assert not reader_errors, reader_errors[0]
    assert reads[0] > 0

    # every ticket completed, without error, in distinct lsns
    assert len(all_tickets) == N_THREADS * iters
    assert all(t.done() and t.exception() is None for t in all_tickets)
    assert len({t.lsn for t in all_tickets}) == len(all_tickets)

    # the model of the shared groups: ops applied in lsn order
    hs_model = {}
    kv_model = defaultdict(dict)
    for _, ops in sorted(shared_ops, key=lambda x: x[0]):
        for op in ops:
            if op[0] == "hs":
                hs_model[op[1]] = op[2]
            elif op[0] == "put":
                kv_model[op[1]][op[2]] = op[3]
            else:
                kv_model[op[1]].pop(op[2], None)
    keys = [b"last"] + [b"t%d" % k for k in range(N_THREADS)]

    def check(lg):
        for g, terms in own_model.items():
            assert lg.first_index(g) == 1 and lg.last_index(g) == len(terms)
            assert lg.entries(g, 1, len(terms) + 1) == [
                Entry(i + 1, tm, data_of(g, i + 1, tm)) for i, tm in enumerate(terms)]
        for s in SHARED:
            assert lg.initial_state(s)[0] == hs_model.get(s, HardState())
            for key in keys:
                assert lg.get(s, key) == kv_model[s].get(key), (s, key)
        assert lg.groups() == sorted(set(SHARED) | set(own_model))

    check(log)
    log.close()
    with pyraftlog.open(log_dir, segment_size=SEG, sync=False) as log2:
        check(log2)


def _catching(fn, arg, errors):
    try:
        fn(arg)
    except BaseException as exc:
        errors.append(exc)


def test_concurrent_writers_across_segment_rotations(log_dir):
    """Large entries force many segment rotations under concurrent writers
    (rotation waits for the old segment to be durable): every ticket completes,
    the log reads back and recovers whole."""
    log = pyraftlog.open(log_dir, segment_size=SEG, sync=True, purge_threshold=1 << 40)
    payload = 20_000
    n_threads, iters = 6, 40
    written = {}

    def writer(k):
        g = 50 + k
        tickets = []
        for i in range(1, iters + 1):
            b = WriteBatch()
            b.append(g, [Entry(i, 1, bytes([k]) * payload)])
            tickets.append(log.write(b))
        for t in tickets:
            t.wait(timeout=WAIT)
        written[g] = iters

    run_threads([lambda k=k: writer(k) for k in range(n_threads)])
    assert log.stats()["rotations"] >= 3

    def check(lg):
        for g, n in written.items():
            es = lg.entries(g, 1, n + 1)
            assert [e.index for e in es] == list(range(1, n + 1))
            assert all(e.data == bytes([g - 50]) * payload for e in es)

    check(log)
    log.close()
    with pyraftlog.open(log_dir, segment_size=SEG, sync=False, purge_threshold=1 << 40) as log2:
        check(log2)


# ---------------------------------------------------------------- durability order


def test_no_ticket_completes_before_its_data_is_synced(open_log):
    """In each done-callback and after each wait(), some recorded fdatasync
    covers the ticket's lsn; each thread's callbacks come in its lsn order; at
    any moment the done tickets are an lsn prefix (write order)."""
    log = open_log(segment_size=SEG, sync=True)
    n_threads, iters = 8, 150
    violations = []
    order = defaultdict(list)
    tickets = []
    tickets_lock = threading.Lock()
    calls = [0]
    stop = threading.Event()

    # sync_history is the engine's own record, written as durable_lsn is
    # published: it checks ordering, not that an fdatasync happened (that is
    # tests/test_sync_oracle.py, which watches the real calls)
    def covered(t, where):
        hist = failpoint.sync_history(log)
        if not hist or max(hist) < t.lsn:
            violations.append((where, t.lsn, hist[-3:]))

    def cb(t, k):
        covered(t, "callback")
        if not t.done():
            violations.append(("callback on a pending ticket", t.lsn))
        order[k].append(t.lsn)
        calls[0] += 1

    def writer(k):
        for i in range(iters):
            b = WriteBatch()
            b.put(k, b"i", b"%d" % i)
            if i % 2:
                b.set_hard_state(100 + i % 5, HardState(k, k, i))
            t = log.write(b)
            t.add_done_callback(lambda t, k=k: cb(t, k))
            with tickets_lock:
                tickets.append(t)
            if i % 5 == 0:
                t.wait(timeout=WAIT)
                covered(t, "wait")

    def monitor():
        while not stop.is_set():
            with tickets_lock:
                snap = sorted(tickets, key=lambda t: -t.lsn)
            seen_done = None
            for t in snap:  # newest first: once one is done, every older one must be
                d = t.done()
                if seen_done is not None and not d:
                    violations.append(("out of order", t.lsn, "pending after", seen_done))
                    break
                if d and seen_done is None:
                    seen_done = t.lsn
            time.sleep(0.001)

    mon = threading.Thread(target=monitor, daemon=True)
    mon.start()
    try:
        run_threads([lambda k=k: writer(k) for k in range(n_threads)])
        log.sync()
        # one more durable write: wakes the notifier even if a kick was lost
        # (the notifier's lost wake-up is tested in test_ticket.py)
        log.write(WriteBatch().put(999, b"nudge", b"")).wait(WAIT)
        deadline = time.monotonic() + WAIT
        while calls[0] < n_threads * iters and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        mon.join(WAIT)
    assert not violations, violations[:5]
    assert calls[0] == n_threads * iters
    for k, lsns in order.items():
        assert lsns == sorted(lsns), k
    hist = failpoint.sync_history(log)
    assert hist == sorted(hist)  # each sync covers at least what the one before did
    for t in tickets:
        t.wait(0)
        assert max(hist) >= t.lsn


def test_single_writer_callbacks_complete_in_write_order(open_log):
    log = open_log(segment_size=SEG, sync=True)
    seen = []
    tickets = []
    for i in range(400):
        b = WriteBatch()
        b.put(1 + i % 7, b"k", b"%d" % i)
        t = log.write(b)
        t.add_done_callback(lambda t: seen.append(t.lsn))
        tickets.append(t)
    log.sync()
    log.close()  # joins the notifier: every callback has run
    assert seen == [t.lsn for t in tickets]


# ---------------------------------------------------------------- group commit


def test_group_commit_covers_many_writes_per_sync(open_log):
    log = open_log(segment_size=SEG, sync=True)
    n_threads, iters = 16, 60

    def writer(k):
        for i in range(1, iters + 1):
            b = WriteBatch()
            b.append(10 + k, [Entry(i, 1, b"x" * 64)])
            t = log.write(b)
            if i % 3 == 0:
                t.wait(timeout=WAIT)  # like a Raft node: wait before acking
        log.sync()

    before = log.stats()
    run_threads([lambda k=k: writer(k) for k in range(n_threads)])
    st = log.stats()
    writes = st["writes"] - before["writes"]
    syncs = st["syncs"] - before["syncs"]
    assert writes == n_threads * iters
    assert 1 <= syncs < writes
    # some sync covered more than one batch (histogram keyed by lower bound)
    assert any(k >= 2 for k in st["batches_per_sync"])


def test_min_sync_interval_spaces_syncs(open_log):
    """With min_sync_interval=0.05 the flusher pauses after each sync, so over
    a window of E seconds it completes at most E/0.05 + 1 syncs, however many
    writers there are; and each sync covers many writes."""
    interval = 0.05
    log = open_log(segment_size=SEG, sync=True, min_sync_interval=interval)
    stop = threading.Event()

    def writer(k):
        i = 0
        while not stop.is_set():
            ts = []
            for _ in range(5):
                i += 1
                b = WriteBatch()
                b.append(20 + k, [Entry(i, 1, b"y")])
                ts.append(log.write(b))
            ts[-1].wait(timeout=WAIT)

    s0 = log.stats()
    t0 = time.monotonic()
    threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(4)]
    for th in threads:
        th.start()
    time.sleep(0.8)
    stop.set()
    for th in threads:
        th.join(WAIT)
    s1 = log.stats()
    elapsed = time.monotonic() - t0
    assert not any(th.is_alive() for th in threads)
    syncs = s1["syncs"] - s0["syncs"]
    writes = s1["writes"] - s0["writes"]
    assert 1 <= syncs <= elapsed / interval + 2, (syncs, elapsed)
    assert writes > syncs


# ---------------------------------------------------------------- poisoning


def append_one(log, g, term=1):
    i = log.last_index(g) + 1
    b = WriteBatch()
    b.append(g, [Entry(i, term, data_of(g, i, term))])
    return log.write(b)


@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC], ids=["EIO", "ENOSPC"])
def test_failed_fdatasync_poisons_the_log(log_dir, err):
    log = pyraftlog.open(log_dir, segment_size=SEG, sync=True, min_sync_interval=0.5)
    durable = [append_one(log, 1) for _ in range(10)]
    b = WriteBatch()
    b.put(2, b"k", b"durable")
    durable.append(log.write(b))
    log.sync()  # the flusher now pauses 0.5 s: the next writes stay pending
    assert all(t.done() for t in durable)
    doomed = []
    with failpoint.armed("flusher::fdatasync", err):
        try:
            for _ in range(5):
                doomed.append(append_one(log, 1))
            b = WriteBatch()
            b.put(2, b"k", b"doomed")
            doomed.append(log.write(b))
        except PoisonedError:  # only if the machine stalled through the pause
            pass
        assert doomed
        for t in doomed:
            with pytest.raises(PoisonedError) as ei:
                t.wait(timeout=WAIT)
            exc = ei.value
            assert isinstance(exc, OSError) and isinstance(exc, RaftLogError)
            assert exc.errno == err
            assert t.done()
            assert isinstance(t.exception(), PoisonedError)
            assert t.exception().errno == err
        with pytest.raises(PoisonedError) as ei:
            append_one(log, 1)
        assert ei.value.errno == err
    # sticky: still poisoned once the disk "works" again
    last = log.last_index(1)
    for write in (lambda: append_one(log, 1), lambda: append_one(log, 3),
                  lambda: log.write(WriteBatch().put(2, b"k", b"later"))):
        with pytest.raises(PoisonedError) as ei:
            write()
        assert ei.value.errno == err
    with pytest.raises(PoisonedError):
        log.sync()
    # a rejected write changed nothing; reads keep working, batches that were
    # written before the failure stay visible
    assert log.last_index(1) == last
    assert [e.index for e in log.entries(1, 1, last + 1)] == list(range(1, last + 1))
    assert log.term(1, last) == 1
    assert log.groups() == [1, 2]
    assert log.get(2, b"k") in (b"durable", b"doomed")
    assert log.stats()["writes"] >= len(durable)
    # tickets that were durable before stay successes
    for t in durable:
        t.wait(0)
        assert t.exception() is None
    log.close()
    with pytest.raises(ClosedError):
        log.last_index(1)

    # reopening recovers at least every durable batch, as a prefix of what
    # was written; the directory is writable again
    with pyraftlog.open(log_dir, segment_size=SEG, sync=True) as log2:
        n = log2.last_index(1)
        assert 10 <= n <= 10 + len(doomed)
        assert log2.entries(1, 1, n + 1) == [Entry(i, 1, data_of(1, i, 1)) for i in range(1, n + 1)]
        assert log2.get(2, b"k") in (b"durable", b"doomed")
        t = append_one(log2, 1)
        t.wait(timeout=WAIT)
        assert t.exception() is None
    with pyraftlog.open(log_dir, segment_size=SEG, sync=False) as log3:
        assert log3.last_index(1) == n + 1


def test_poison_wakes_blocked_waiters_and_callbacks(log_dir):
    log = pyraftlog.open(log_dir, segment_size=SEG, sync=True, min_sync_interval=0.5)
    try:
        append_one(log, 1).wait(WAIT)
        outcomes = []
        cb_seen = []
        with failpoint.armed("flusher::fdatasync", errno.EIO):
            t = append_one(log, 1)  # pending during the flusher's pause
            t.add_done_callback(lambda x: cb_seen.append(x.exception()))

            def blocked():
                try:
                    t.wait()  # no timeout: must be woken by the failure
                    outcomes.append("ok")
                except PoisonedError as exc:
                    outcomes.append(exc.errno)

            def blocked_sync():
                try:
                    log.sync()
                    outcomes.append("ok")
                except PoisonedError as exc:
                    outcomes.append(exc.errno)

            run_threads([blocked, blocked, blocked_sync])
        assert outcomes == [errno.EIO] * 3
        deadline = time.monotonic() + WAIT
        while not cb_seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(cb_seen) == 1 and isinstance(cb_seen[0], PoisonedError)
    finally:
        log.close()


def test_poison_under_concurrent_writers(log_dir):
    """The fdatasync starts failing while 8 threads write: every ticket
    completes or fails with PoisonedError (none hangs); durable tickets all
    precede failed ones; each callback runs once with the ticket's outcome;
    reopening recovers an lsn-prefix of the batches that includes every
    durable one."""
    log = pyraftlog.open(log_dir, segment_size=SEG, sync=True)
    written = []  # (ticket, group, index)
    lock = threading.Lock()
    outcome_by_cb = {}
    cb_calls = defaultdict(int)
    total = [0]
    armed_at = threading.Event()

    def cb(t):
        cb_calls[t.lsn] += 1
        outcome_by_cb[t.lsn] = t.exception()

    def writer(k):
        g = 300 + k
        i = 0
        while True:
            b = WriteBatch()
            b.append(g, [Entry(i + 1, 1, data_of(g, i + 1, 1))])
            try:
                t = log.write(b)
            except PoisonedError as exc:
                assert exc.errno == errno.EIO
                assert armed_at.is_set()
                return
            i += 1
            t.add_done_callback(cb)
            with lock:
                written.append((t, g, i))
                total[0] += 1
            if i % 4 == 0:
                try:
                    t.wait(timeout=WAIT)
                except PoisonedError:
                    pass
            if i > 100_000:  # pragma: no cover - the failpoint never fired
                raise AssertionError("writes never failed")

    def arm_later():
        deadline = time.monotonic() + WAIT
        while total[0] < 400 and time.monotonic() < deadline:
            time.sleep(0.005)
        armed_at.set()  # first: a writer may see the poison before set() returns
        failpoint.set("flusher::fdatasync", errno.EIO)

    try:
        run_threads([lambda k=k: writer(k) for k in range(8)] + [arm_later])
    finally:
        failpoint.set("flusher::fdatasync", 0)
    ok, failed = [], []
    for t, g, i in written:
        try:
            t.wait(timeout=WAIT)
            ok.append((t.lsn, g, i))
        except PoisonedError as exc:
            assert exc.errno == errno.EIO
            failed.append((t.lsn, g, i))
    assert ok and failed
    assert max(ok)[0] < min(failed)[0], "a ticket failed before an earlier one was durable"
    log.close()
    deadline = time.monotonic() + WAIT
    while len(cb_calls) < len(written) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(cb_calls) == sorted(t.lsn for t, _, _ in written)
    assert set(cb_calls.values()) == {1}
    for lsn, _, _ in ok:
        assert outcome_by_cb[lsn] is None
    for lsn, _, _ in failed:
        assert isinstance(outcome_by_cb[lsn], PoisonedError)

    with pyraftlog.open(log_dir, segment_size=SEG, sync=False) as log2:
        last = {g: log2.last_index(g) for g in range(300, 308)}
        recovered = sorted(lsn for lsn, g, i in ok + failed if i <= last[g])
        all_lsns = sorted(lsn for lsn, _, _ in ok + failed)
        # an lsn prefix (atomic and ordered) ...
        assert recovered == all_lsns[:len(recovered)]
        # ... that includes everything durable
        assert len(recovered) >= len(ok)
        for g, n in last.items():
            if n:
                assert [e.index for e in log2.entries(g, 1, n + 1)] == list(range(1, n + 1))


def test_failed_segment_creation_is_consistent(log_dir):
    """A write that needs a new segment while the disk is full.  Either the
    engine reports a plain, retryable OSError (and is not poisoned), or it
    raises PoisonedError, and then the failure is sticky like docs/API.md says:
    later writes raise PoisonedError too.

    Engine bug (found by this test): Core.raise_for turns every negative
    errno of prl_log_write into PoisonedError, also a failed rotation
    (segment create / fallocate / rename: ENOSPC) that did not poison the log;
    the next write then succeeds although the previous one raised
    PoisonedError ("log poisoned by a failed fdatasync", which it was not)."""
    log = pyraftlog.open(log_dir, segment_size=SEG, sync=False)
    try:
        payload = b"z" * 100_000
        first_error = None
        with failpoint.armed("segment::create", errno.ENOSPC):
            with failpoint.armed("segment::fallocate", errno.ENOSPC):
                for _ in range(80):  # the prepared segments run out after a few
                    i = log.last_index(1) + 1
                    b = WriteBatch()
                    b.append(1, [Entry(i, 1, payload)])
                    try:
                        log.write(b).wait(timeout=WAIT)
                    except OSError as exc:
                        first_error = exc
                        break
        assert first_error is not None, "no write needed a new segment"
        assert first_error.errno == errno.ENOSPC
        last = log.last_index(1)
        b = WriteBatch()
        b.append(1, [Entry(last + 1, 1, payload)])
        if isinstance(first_error, PoisonedError):
            with pytest.raises(PoisonedError):
                log.write(b)
        else:
            log.write(b).wait(timeout=WAIT)
            assert log.last_index(1) == last + 1
    finally:
        log.close()


# ---------------------------------------------------------------- close under load


def test_close_with_writes_in_flight(log_dir):
    """Several threads write (and wait, and sync) while another closes the
    engine: close() returns, every writer stops with ClosedError, every ticket
    it got completes (close makes everything written durable), none hangs."""
    log = pyraftlog.open(log_dir, segment_size=SEG, sync=True)
    written = []
    lock = threading.Lock()
    total = [0]
    closed = threading.Event()

    def writer(k):
        g = 400 + k
        i = 0
        while True:
            b = WriteBatch()
            b.append(g, [Entry(i + 1, 1, data_of(g, i + 1, 1))])
            try:
                t = log.write(b)
            except ClosedError:
                return
            i += 1
            with lock:
                written.append((t, g, i))
                total[0] += 1
            if i % 3 == 0:
                try:
                    t.wait(timeout=WAIT)
                except ClosedError:
                    pass

    def syncer():
        while True:
            try:
                log.sync()
            except ClosedError:
                return

    def closer():
        deadline = time.monotonic() + WAIT
        while total[0] < 300 and time.monotonic() < deadline:
            time.sleep(0.002)
        log.close()
        closed.set()

    run_threads([lambda k=k: writer(k) for k in range(6)] + [syncer, closer])
    assert closed.is_set()
    assert len(written) >= 300
    for t, _, _ in written:
        t.wait(timeout=10)  # completes, does not time out
        assert t.done() and t.exception() is None
    with pytest.raises(ClosedError):
        log.write(WriteBatch().put(1, b"k", b"v"))
    log.close()  # idempotent

    last = defaultdict(int)
    for _, g, i in written:
        last[g] = max(last[g], i)
    with pyraftlog.open(log_dir, segment_size=SEG, sync=False) as log2:
        for g, n in last.items():
            assert log2.last_index(g) == n
            assert [e.index for e in log2.entries(g, 1, n + 1)] == list(range(1, n + 1))


# ---------------------------------------------------------------- sync=False


def test_sync_false_tickets_complete(open_log):
    log = open_log(segment_size=SEG, sync=False)
    tickets = []
    lock = threading.Lock()

    def writer(k):
        for i in range(1, 201):
            b = WriteBatch()
            b.append(k, [Entry(i, 1, b"d")])
            t = log.write(b)
            with lock:
                tickets.append(t)

    run_threads([lambda k=k: writer(k) for k in range(1, 5)])
    for t in tickets:
        t.wait(timeout=WAIT)
        assert t.done() and t.exception() is None
    log.sync()
    ev = threading.Event()
    tickets[-1].add_done_callback(lambda _t: ev.set())
    log.write(WriteBatch().put(999, b"nudge", b"")).wait(WAIT)  # see test_ticket.nudge
    assert ev.wait(WAIT)


# ---------------------------------------------------------------- fork


def _in_child(fn, timeout=3.0):
    """Run fn in a forked child.  Returns "ok", "raftlog" (RaftLogError),
    "other:<type>" (another exception), a signal description, or "hang"."""
    codes = {0: "ok", 3: "raftlog", 5: "timeout"}
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 4
        try:
            os.close(r)
            try:
                fn()
                code = 0
            except RaftLogError:
                code = 3
            except TimeoutError:
                code = 5
            except BaseException as exc:
                os.write(w, type(exc).__name__.encode())
                code = 4
        finally:
            os._exit(code)
    os.close(w)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            p, status = os.waitpid(pid, os.WNOHANG)
            if p:
                if os.WIFSIGNALED(status):
                    return f"signal {os.WTERMSIG(status)}"
                code = os.WEXITSTATUS(status)
                if code == 4:
                    return "other:" + os.read(r, 200).decode()
                return codes.get(code, f"exit {code}")
            time.sleep(0.01)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        return "hang"
    finally:
        os.close(r)


def test_fork_child_cannot_use_the_parents_engine(open_log):
    log = open_log(segment_size=SEG, sync=True)
    append_one(log, 1).wait(WAIT)
    ops = {
        "write": lambda: append_one(log, 1),
        "last_index": lambda: log.last_index(1),
        "entries": lambda: log.entries(1, 1, 2),
        "get": lambda: log.get(1, b"k"),
        "groups": log.groups,
        "stats": log.stats,
        "sync": log.sync,
        "group view": lambda: log.group(1).last_index(),
    }
    results = {name: _in_child(fn) for name, fn in ops.items()}
    assert results == {name: "raftlog" for name in ops}
    # the parent is unaffected
    t = append_one(log, 1)
    t.wait(WAIT)
    assert log.last_index(1) == 2


def test_fork_child_waiting_on_pending_ticket_does_not_hang(open_log):
    """Engine bug (found by this test): the child has no flusher thread, so
    Ticket.wait() on a ticket that was pending at fork() blocks forever in C
    (prl_log_wait never checks Engine._forked)."""
    log = open_log(segment_size=SEG, sync=True, min_sync_interval=1.0)
    append_one(log, 1).wait(WAIT)
    t = append_one(log, 1)  # pending: the flusher pauses 1 s after a sync
    result = _in_child(t.wait, timeout=2)
    assert result == "raftlog"
    t.wait(WAIT)


def test_fork_child_close_does_not_break_the_parent(open_log):
    log = open_log(segment_size=SEG, sync=True)
    append_one(log, 1).wait(WAIT)
    result = _in_child(log.close)
    assert result in ("ok", "raftlog")
    for _ in range(3):
        append_one(log, 1).wait(WAIT)
    assert log.last_index(1) == 4
    assert [e.index for e in log.entries(1, 1, 5)] == [1, 2, 3, 4]


def test_fork_while_another_thread_writes(open_log):
    """fork() while another thread of the parent is inside write().

    Engine bug (found by this test): Engine.write/reads take Engine._lock
    before checking _forked; a fork while another thread holds it (the C
    write runs with the GIL released and the lock held) leaves the child's
    copy of the lock held forever, so in the child every engine call hangs
    instead of raising RaftLogError."""
    log = open_log(segment_size=SEG, sync=False)
    stop = threading.Event()
    errors = []

    def writer():
        try:
            while not stop.is_set():
                i = log.last_index(1) + 1
                b = WriteBatch()
                b.append(1, [Entry(i, 1, b"w" * 200_000)])
                log.write(b)
                if i % 4 == 0:
                    b = WriteBatch()
                    b.compact(1, i - 1)
                    log.write(b)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    try:
        time.sleep(0.05)
        results = [_in_child(lambda: log.last_index(1), timeout=2) for _ in range(2)]
    finally:
        stop.set()
        th.join(WAIT)
    assert not errors, errors[0]
    assert results == ["raftlog"] * 2
