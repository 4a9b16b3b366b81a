"""Tickets: wait / done / exception, done-callbacks and ``await``.

docs/API.md, "Writing: batches and tickets": a ticket completes once its batch is
durable (or fails with the write's error); ``wait(timeout)`` raises
``TimeoutError`` and leaves the ticket pending; ``add_done_callback(fn)`` calls
``fn(ticket)`` once; ``await ticket`` waits without blocking the event loop;
tickets of one engine complete in write order.

Every wait here is bounded: a hang in the engine shows up as a failing test,
never as a stuck test run.  Nothing asserts a duration, only orders and
counts; where a ticket must be pending for a while, ``min_sync_interval``
(the flusher's pause after each sync) keeps it pending for far longer than the
test needs."""

import asyncio
import errno
import logging
import os
import subprocess
import textwrap
import threading
import time

import pytest

import pyraftlog
from pyraftlog import Entry, HardState, PoisonedError, WriteBatch, failpoint

from tests.common import PYTHON, child_env

SEG = 1 << 20
WAIT = 30  # seconds: the bound on every wait that is expected to succeed
LONG_INTERVAL = 0.5  # min_sync_interval that keeps a second write pending
PROMPT = 2.0  # bound on something that should happen at once (a callback on a done ticket)


@pytest.fixture(autouse=True)
def _no_failpoints():
    yield
    failpoint.clear_all()


def put(log, group=1, key=b"k", value=b"v"):
    """Write a one-operation batch; return its ticket."""
    b = WriteBatch()
    b.put(group, key, value)
    return log.write(b)


def append(log, group, n=1, term=1, data=b"x"):
    """Append n entries after the group's last index; return the ticket."""
    last = log.last_index(group)
    b = WriteBatch()
    b.append(group, [Entry(last + 1 + k, term, data) for k in range(n)])
    return log.write(b)


def pending_ticket(log, key=b"second"):
    """A ticket that stays pending for a while: the log must have been opened
    with a min_sync_interval (LONG_INTERVAL).  A first write is made durable,
    which starts the flusher's pause; a second one written right after it
    cannot be synced before the pause ends.  (Retried if the machine stalled
    through the whole pause.)"""
    for _ in range(5):
        put(log, key=b"first").wait(WAIT)
        t = put(log, key=key)
        if not t.done():
            return t
    pytest.fail("could not get a pending ticket: is min_sync_interval set?")


def nudge(log):
    """One more durable write.  Tests whose subject is not "a callback added to
    an already-done ticket runs" call this after adding their callbacks, so
    that they do not also depend on the notifier's lost wake-up (tested on its
    own in test_callbacks_added_back_to_back_on_idle_engine_all_run): a new
    durable lsn wakes the notifier whatever happened to a kick."""
    put(log, group=999, key=b"nudge").wait(WAIT)


# ------------------------------------------------------------ wait / done


def test_wait_done_exception_on_durable_ticket(open_log):
    log = open_log(segment_size=SEG, sync=True)
    t = append(log, 1, 3)
    assert isinstance(t, pyraftlog.Ticket)
    assert isinstance(t.lsn, int)
    assert t.wait(timeout=WAIT) is None
    assert t.done()
    assert t.exception() is None
    t.wait()  # again: returns at once
    t.wait(timeout=0)
    assert log.stats()["syncs"] >= 1


def test_tickets_have_increasing_lsns(open_log):
    log = open_log(segment_size=SEG)
    lsns = [put(log, value=b"%d" % i).lsn for i in range(20)]
    assert lsns == sorted(lsns) and len(set(lsns)) == len(lsns)


def test_wait_timeout_raises_and_ticket_stays_pending(open_log):
    log = open_log(segment_size=SEG, min_sync_interval=LONG_INTERVAL)
    t = pending_ticket(log)
    with pytest.raises(TimeoutError):
        t.wait(timeout=0.02)
    with pytest.raises(TimeoutError):
        t.wait(timeout=0)
    # still pending, not failed
    assert not t.done()
    assert t.exception() is None
    # and it completes later
    t.wait(timeout=WAIT)
    assert t.done()
    assert t.exception() is None


def test_wait_timeout_is_not_a_raftlog_error(open_log):
    """A timeout is the builtin TimeoutError (an OSError), not a failure of the
    write: the caller may simply wait again."""
    log = open_log(segment_size=SEG, min_sync_interval=LONG_INTERVAL)
    t = pending_ticket(log)
    try:
        t.wait(timeout=0.01)
    except TimeoutError as exc:
        assert not isinstance(exc, PoisonedError)
    else:  # pragma: no cover - the precondition above makes this unreachable
        pytest.fail("wait(timeout) on a pending ticket did not time out")
    t.wait(timeout=WAIT)


def test_wait_from_many_threads_on_one_pending_ticket(open_log):
    log = open_log(segment_size=SEG, min_sync_interval=LONG_INTERVAL)
    t = pending_ticket(log)
    results = []

    def waiter():
        try:
            t.wait(timeout=WAIT)
            results.append("ok")
        except BaseException as exc:  # pragma: no cover - reported below
            results.append(exc)

    threads = [threading.Thread(target=waiter, daemon=True) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(WAIT + 5)
    assert results == ["ok"] * 8


def test_empty_batch_ticket_completes(open_log):
    log = open_log(segment_size=SEG)
    put(log)
    t = log.write(WriteBatch())
    t.wait(timeout=WAIT)
    assert t.done() and t.exception() is None


def test_sync_waits_for_everything_written(open_log):
    log = open_log(segment_size=SEG, sync=True)
    tickets = []
    lock = threading.Lock()

    def writer(g):
        for i in range(50):
            t = append(log, g)
            with lock:
                tickets.append(t)

    threads = [threading.Thread(target=writer, args=(g,)) for g in range(1, 5)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(WAIT)
    log.sync()
    assert len(tickets) == 200
    assert all(t.done() for t in tickets)
    assert all(t.exception() is None for t in tickets)
    assert max(failpoint.sync_history(log)) >= max(t.lsn for t in tickets)


def test_sync_with_pending_write_waits_for_it(open_log):
    log = open_log(segment_size=SEG, min_sync_interval=0.3)
    t = pending_ticket(log)
    log.sync()
    assert t.done()


def _bounded_sync(log):
    """log.sync() in a thread: returns whether it returned within WAIT (a
    hang fails the test instead of stalling it)."""
    th = threading.Thread(target=log.sync, daemon=True)
    th.start()
    th.join(WAIT)
    return not th.is_alive()


def test_sync_on_fresh_and_idle_engine_returns(open_log):
    log = open_log(segment_size=SEG, sync=True)
    assert _bounded_sync(log)                    # nothing written yet
    s = log.stats()
    assert s["written_lsn"] == s["durable_lsn"] == 0
    t = put(log)
    assert _bounded_sync(log)                    # covers the pending put
    assert t.done() and t.exception() is None
    s = log.stats()
    assert s["durable_lsn"] == s["written_lsn"] == t.lsn
    syncs = s["syncs"]
    assert _bounded_sync(log) and _bounded_sync(log)  # idle: returns, costs no sync
    assert log.stats()["syncs"] == syncs


# ------------------------------------------------------------ callbacks


def test_callbacks_called_once_on_notifier_thread_in_lsn_order(open_log):
    log = open_log(segment_size=SEG, sync=True)
    me = threading.get_ident()
    calls = []  # (lsn, thread ident, done() seen inside the callback)
    n = 300
    all_called = threading.Event()

    def cb(t):
        calls.append((t.lsn, threading.get_ident(), t.done()))
        if len(calls) >= n:
            all_called.set()

    tickets = []
    for i in range(n):
        t = append(log, 1 + i % 3)
        t.add_done_callback(cb)
        tickets.append(t)
    nudge(log)
    assert all_called.wait(WAIT)
    log.close()  # joins the notifier: no callback can still be on its way
    lsns = [c[0] for c in calls]
    assert sorted(lsns) == sorted(t.lsn for t in tickets)  # each exactly once
    assert lsns == sorted(lsns)  # in lsn order
    assert all(c[1] != me for c in calls)  # never on the writer thread
    assert all(c[2] for c in calls)  # the ticket is done when its callback runs


def test_several_callbacks_on_one_ticket_run_in_order_added(open_log):
    log = open_log(segment_size=SEG)
    order = []
    done = threading.Event()
    t = put(log)
    for k in range(5):
        t.add_done_callback(lambda _t, k=k: order.append(k))
    t.add_done_callback(lambda _t: done.set())
    nudge(log)
    assert done.wait(WAIT)
    assert order == [0, 1, 2, 3, 4]


def test_callback_sees_ticket_itself(open_log):
    log = open_log(segment_size=SEG)
    got = []
    done = threading.Event()
    t = put(log)
    t.add_done_callback(lambda x: (got.append(x), done.set()))
    nudge(log)
    assert done.wait(WAIT)
    assert got == [t]


def test_callback_exception_is_logged_and_others_still_run(open_log, caplog):
    log = open_log(segment_size=SEG)
    ran = []
    done = threading.Event()

    def boom(t):
        raise ValueError("boom in callback")

    with caplog.at_level(logging.ERROR, logger="pyraftlog"):
        t1 = put(log, value=b"1")
        t1.add_done_callback(boom)
        t1.add_done_callback(lambda t: ran.append(("t1", t.lsn)))
        t2 = put(log, value=b"2")
        t2.add_done_callback(boom)
        t2.add_done_callback(lambda t: ran.append(("t2", t.lsn)))
        t2.add_done_callback(lambda t: done.set())
        nudge(log)
        assert done.wait(WAIT)
        log.close()
    assert ran == [("t1", t1.lsn), ("t2", t2.lsn)]
    boom_records = [r for r in caplog.records
                    if r.name.startswith("pyraftlog") and r.exc_info
                    and isinstance(r.exc_info[1], ValueError)
                    and "boom in callback" in str(r.exc_info[1])]
    assert len(boom_records) == 2
    assert all(r.levelno >= logging.ERROR for r in boom_records)


def test_notifier_survives_callback_exceptions(open_log, caplog):
    log = open_log(segment_size=SEG)
    later = threading.Event()
    with caplog.at_level(logging.CRITICAL, logger="pyraftlog"):
        for i in range(10):
            put(log, value=b"%d" % i).add_done_callback(lambda t: 1 / 0)
        log.sync()
        put(log, value=b"after").add_done_callback(lambda t: later.set())
        nudge(log)
        assert later.wait(WAIT)


def test_callback_added_to_done_ticket_runs_on_notifier_thread(open_log):
    log = open_log(segment_size=SEG, sync=True)
    t = put(log)
    t.wait(WAIT)
    for attempt in range(3):  # also after the notifier has been idle a while
        where = []
        ev = threading.Event()
        t.add_done_callback(lambda _t: (where.append(threading.get_ident()), ev.set()))
        assert ev.wait(WAIT), f"callback #{attempt} on a done ticket never ran"
        assert where == [where[0]] and where[0] != threading.get_ident()
        time.sleep(0.05)


def test_callbacks_added_back_to_back_on_idle_engine_all_run(open_log):
    """Each callback is added as soon as the previous one ran, on an engine
    with nothing more to sync.

    Engine bug (found by this test): a lost wake-up in the notifier.
    Notifier.add kicks the thread (prl_log_kick) only if the ticket is already
    done, but prl_log_wait_change samples the kick counter when it is entered,
    so a kick that lands while the notifier thread is between running
    callbacks and re-entering prl_log_wait_change is lost; with nothing more
    to sync the callback (or an ``await``) then never runs."""
    log = open_log(segment_size=SEG)
    t = put(log)
    t.wait(WAIT)
    for i in range(200):
        ev = threading.Event()
        t.add_done_callback(lambda _t: ev.set())
        assert ev.wait(PROMPT), f"callback #{i} on a done ticket of an idle engine never ran"


def test_callback_added_to_done_ticket_before_any_notifier(open_log):
    """The first add_done_callback of an engine, on an already-done ticket."""
    log = open_log(segment_size=SEG)
    t = put(log)
    log.sync()
    ev = threading.Event()
    t.add_done_callback(lambda _t: ev.set())
    assert ev.wait(WAIT)


def test_callbacks_of_tickets_pending_at_close_still_run(open_log):
    log = open_log(segment_size=SEG, sync=True, min_sync_interval=LONG_INTERVAL)
    t = pending_ticket(log)
    more = [put(log, value=b"%d" % i) for i in range(5)]
    calls = []
    for x in [t] + more:
        x.add_done_callback(lambda x: calls.append((x.lsn, x.exception())))
    log.close()
    deadline = time.monotonic() + WAIT
    while len(calls) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(calls, key=lambda c: c[0]) == [(x.lsn, None) for x in [t] + more]
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    # close made them durable
    assert all(x.done() and x.exception() is None for x in [t] + more)
    with pytest.raises(pyraftlog.ClosedError):
        put(log)


def test_tickets_pending_at_close_are_durable_after_reopen(log_dir):
    log = pyraftlog.open(log_dir, segment_size=SEG, min_sync_interval=LONG_INTERVAL)
    t = pending_ticket(log)
    log.close()
    t.wait(timeout=WAIT)
    with pyraftlog.open(log_dir, segment_size=SEG, sync=False) as log2:
        assert log2.get(1, b"second") == b"v"


def test_callback_added_after_close_runs_or_raises_closed(open_log):
    """A callback on a ticket of a closed engine must not be dropped silently:
    either add_done_callback raises ClosedError or the callback runs.

    Engine bug (found by this test): after close() the Core creates a new
    Notifier on the closed log whose thread exits at once (the log reports
    closed), so the callback is pushed on a dead notifier and never runs."""
    log = open_log(segment_size=SEG)
    t = put(log)
    t.wait(WAIT)
    log.close()
    for attempt in range(2):
        ev = threading.Event()
        try:
            t.add_done_callback(lambda _t: ev.set())
        except pyraftlog.ClosedError:
            continue
        assert ev.wait(PROMPT), f"callback #{attempt} added after close() never ran"
        time.sleep(0.1)  # whatever thread ran it has had time to go idle


def test_callback_that_reads_the_engine_during_close_does_not_deadlock(tmp_path):
    """A done-callback that reads the engine (what a Raft server does when an
    entry becomes durable: look up the entries to send) while another thread
    closes the engine: close() must return, the callback must end (with the
    value or with ClosedError).

    Engine bug (found by this test): Engine.close() holds the engine lock
    while it joins the notifier thread (Core.stop), and the notifier thread is
    inside the callback waiting for that same lock: close() never returns.
    Run in a child process so the deadlock cannot hang the test run."""
    script = textwrap.dedent(f"""
        import sys, threading, pyraftlog
        from pyraftlog import WriteBatch
        log = pyraftlog.open({str(tmp_path / 'log')!r}, segment_size={SEG},
                             min_sync_interval={LONG_INTERVAL})
        def put(k):
            b = WriteBatch(); b.put(1, k, b"v"); return log.write(b)
        put(b"first").wait(30)
        t = put(b"second")            # pending: the flusher pauses after a sync
        out = []
        def cb(t):
            try:
                out.append(log.get(1, b"second"))
            except pyraftlog.ClosedError:
                out.append("closed")
        t.add_done_callback(cb)
        th = threading.Thread(target=log.close, daemon=True)
        th.start()
        th.join(3)
        if th.is_alive():
            print("close() hung", flush=True)
            sys.stdout.flush()
            import os; os._exit(2)
        print("ok", out, flush=True)
    """)
    r = subprocess.run([*PYTHON, "-c", script], env=child_env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.startswith("ok")
    assert "b'v'" in r.stdout or "closed" in r.stdout


# ------------------------------------------------------------ failures


def poison(log, err=errno.EIO):
    """Poison the log with a failed fdatasync; return the failed ticket."""
    with failpoint.armed("flusher::fdatasync", err):
        t = put(log, key=b"doomed")
        with pytest.raises(PoisonedError):
            t.wait(timeout=WAIT)
    return t


def test_exception_of_failed_ticket(open_log):
    log = open_log(segment_size=SEG, sync=True)
    ok = put(log)
    ok.wait(WAIT)
    bad = poison(log, errno.EIO)
    assert bad.done()
    exc = bad.exception()
    assert isinstance(exc, PoisonedError)
    assert isinstance(exc, OSError) and isinstance(exc, pyraftlog.RaftLogError)
    assert exc.errno == errno.EIO
    # the durable ticket stays a success
    assert ok.exception() is None
    ok.wait(0)


def test_callback_added_before_failure_sees_failure(open_log):
    log = open_log(segment_size=SEG, sync=True, min_sync_interval=0.5)
    put(log).wait(WAIT)
    seen = []
    ev = threading.Event()
    with failpoint.armed("flusher::fdatasync", errno.EIO):
        t = put(log, key=b"doomed")  # pending: the flusher pauses 0.5 s
        t.add_done_callback(lambda x: (seen.append(x.exception()), ev.set()))
        assert ev.wait(WAIT)
    assert len(seen) == 1 and isinstance(seen[0], PoisonedError)
    assert seen[0].errno == errno.EIO


def test_callback_added_after_failure_still_runs(open_log):
    """Engine bug (found by this test): on poison the notifier thread drains
    its heap and exits, but Core keeps handing out that dead notifier, so a
    callback added afterwards (to the failed ticket or to an earlier durable
    one) is never called."""
    log = open_log(segment_size=SEG, sync=True)
    ok = put(log)
    started = threading.Event()
    ok.add_done_callback(lambda _t: started.set())  # the notifier exists
    assert started.wait(WAIT)
    bad = poison(log)
    time.sleep(0.1)  # let the notifier learn about the failure
    seen = []
    ev = threading.Event()
    bad.add_done_callback(lambda x: (seen.append(x.exception()), ev.set()))
    assert ev.wait(PROMPT), "callback added to a failed ticket never ran"
    assert isinstance(seen[0], PoisonedError)
    ev2 = threading.Event()
    ok.add_done_callback(lambda _t: ev2.set())
    assert ev2.wait(PROMPT), "callback added to a durable ticket after a failure never ran"


# ------------------------------------------------------------ asyncio


def test_asyncio_thousand_tasks_await_their_tickets(open_log):
    log = open_log(segment_size=SEG, sync=True)

    async def one(i):
        t = append(log, 1 + i % 10, data=b"%d" % i)
        await asyncio.wait_for(t, timeout=30)
        assert t.done() and t.exception() is None
        return t.lsn

    async def main():
        return await asyncio.gather(*(one(i) for i in range(1000)))

    lsns = asyncio.run(main())
    assert len(set(lsns)) == 1000
    assert sum(log.last_index(g) for g in range(1, 11)) == 1000


def test_asyncio_await_done_ticket(open_log):
    log = open_log(segment_size=SEG)
    t = put(log)
    t.wait(WAIT)

    async def main():
        # Several times in a row: each await registers while the notifier
        # may still be finishing the previous one (see the lost wake-up in
        # test_callbacks_added_back_to_back_on_idle_engine_all_run).
        for i in range(200):
            await asyncio.wait_for(t, timeout=PROMPT)

    asyncio.run(main())


def test_asyncio_same_ticket_from_two_event_loops(open_log):
    log = open_log(segment_size=SEG, min_sync_interval=0.3)
    t = pending_ticket(log)
    errors = []

    def run_loop():
        async def main():
            await asyncio.wait_for(t, timeout=WAIT)
        try:
            asyncio.run(main())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run_loop, daemon=True) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(WAIT + 5)
    assert not errors and not any(th.is_alive() for th in threads)


def test_asyncio_event_loop_not_blocked_while_waiting(open_log):
    log = open_log(segment_size=SEG, sync=True, min_sync_interval=LONG_INTERVAL)

    async def main():
        first = put(log, key=b"first")
        await asyncio.wait_for(first, timeout=WAIT)
        t = put(log, key=b"second")
        seen_pending = 0
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks, seen_pending
            while not stop.is_set():
                ticks += 1
                if not t.done():
                    seen_pending += 1
                await asyncio.sleep(0.005)

        tick_task = asyncio.create_task(ticker())
        await asyncio.wait_for(t, timeout=WAIT)
        stop.set()
        await tick_task
        return seen_pending, ticks

    seen_pending, ticks = asyncio.run(main())
    # the other coroutine ran while the ticket was still pending
    assert seen_pending >= 2, (seen_pending, ticks)


def test_asyncio_poisoned_ticket_raises_when_awaited(open_log):
    log = open_log(segment_size=SEG, sync=True, min_sync_interval=0.5)

    async def main():
        first = put(log)
        await asyncio.wait_for(first, timeout=WAIT)
        with failpoint.armed("flusher::fdatasync", errno.EIO):
            t = put(log, key=b"doomed")  # pending during the flusher's pause
            with pytest.raises(PoisonedError) as ei:
                await asyncio.wait_for(t, timeout=WAIT)
        assert ei.value.errno == errno.EIO

    asyncio.run(main())


def test_asyncio_await_after_failure_raises(open_log):
    """``await`` of a ticket whose failure is already known.

    Engine bug (found by this test): the notifier thread exits after the log
    is poisoned but stays registered, so this await (and any await on the
    engine after a failure) never resolves: wait_for times out instead of
    PoisonedError being raised."""
    log = open_log(segment_size=SEG, sync=True)

    async def main():
        first = put(log)
        await asyncio.wait_for(first, timeout=WAIT)  # starts the notifier
        bad = poison(log, errno.ENOSPC)
        await asyncio.sleep(0.1)
        with pytest.raises(PoisonedError) as ei:
            await asyncio.wait_for(bad, timeout=PROMPT)
        assert ei.value.errno == errno.ENOSPC
        # a ticket that was durable before the failure stays a success
        await asyncio.wait_for(first, timeout=PROMPT)

    asyncio.run(main())


def test_asyncio_cancelled_await_leaves_ticket_usable(open_log):
    log = open_log(segment_size=SEG, min_sync_interval=LONG_INTERVAL)
    t = pending_ticket(log)

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(t, timeout=0.05)
        await asyncio.wait_for(t, timeout=WAIT)

    asyncio.run(main())
    assert t.done() and t.exception() is None


# ------------------------------------------------------------ misc


def test_ticket_repr_mentions_state(open_log):
    log = open_log(segment_size=SEG, min_sync_interval=LONG_INTERVAL)
    t = pending_ticket(log)
    assert "pending" in repr(t)
    t.wait(WAIT)
    assert "done" in repr(t)


def test_write_returns_before_durable_and_is_visible(open_log):
    """Visible before durable: reads see the batch while its ticket is pending."""
    log = open_log(segment_size=SEG, min_sync_interval=LONG_INTERVAL)
    put(log).wait(WAIT)
    b = WriteBatch()
    b.append(7, [Entry(1, 1, b"a"), Entry(2, 1, b"b")])
    b.set_hard_state(7, HardState(1, 1, 2))
    t = log.write(b)
    assert not t.done()
    assert log.entries(7, 1, 3) == [Entry(1, 1, b"a"), Entry(2, 1, b"b")]
    assert log.initial_state(7)[0] == HardState(1, 1, 2)
    t.wait(WAIT)


def test_ticket_keeps_working_after_engine_object_dropped(log_dir):
    log = pyraftlog.open(log_dir, segment_size=SEG)
    t = put(log)
    log.close()
    del log
    t.wait(WAIT)
    assert t.done()
    assert os.path.isdir(log_dir)
