"""The flusher process: takes captured requests out of a spool and publishes landing files.

Started by :class:`ingest.capture.process_writer.ProcessLandingWriter` as ``python -m
ingest.capture._flusher <fd> <capacity>`` with its settings pickled on stdin. It runs a
:class:`LandingWriter` without its thread (this process has nothing else to do) and mirrors
its counters into the spool's header. It ignores SIGINT and SIGTERM: the server that
started it decides when it stops (the STOP slot), and if that server dies, even by SIGKILL,
it publishes everything already in the spool and exits.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import signal
import sys
import time

import pyarrow as pa

from ingest.capture import _spool_layout as slot
from ingest.capture._blocks import run_to_batch
from ingest.capture._spool import Spool
from ingest.capture.thread_writer import LandingWriter
from ingest.errors import LandingError

log = logging.getLogger("driftlake.ingest.capture._flusher")
# When the flusher looks at the spool. Every look has a fixed cost and disturbs the server's
# core, so it looks only when a flush is due (the oldest row it holds, or the oldest in the
# spool, is FLUSH_INTERVAL old) or the spool would be FILL_AT full (LOOK_BYTES at most) at
# the rate it filled since the last look, whichever comes first, and at least every
# MAX_PAUSE (how soon an orphan notices); with nothing held or written, every POLL (a row
# arriving then is due FLUSH_INTERVAL after it was accepted, not after it was seen). A burst
# from a standstill does not wait out the pause: the server wakes the flusher (an eventfd)
# once the spool is a quarter full, and flush() and close() wake it.
POLL, BUSY_POLL, MAX_PAUSE = 0.2, 0.005, 1.0
FILL_AT = 1 / 8
# A look at least every LOOK_BYTES written, however large the spool: a request path that
# finds the spool emptied starts again at its front, in memory still in cache
# (ingest.capture._spool), which needs looks more often than every eighth of a large spool
# (bench.variants measures the cadence). At one-row requests 2 MB takes over a second, so
# there the flush interval sets the pace.
LOOK_BYTES = 2 << 20
# The flusher's priority. Normally nice 5: under CPU contention the server's request path
# goes first, and the flusher still gets about a quarter of a core. Where the server may
# raise it again (see ingest.capture._supervisor.may_raise_flusher), the flusher drops to
# SCHED_IDLE whenever the spool is under IDLE_BELOW full after a take, so a request never
# waits for a flush to finish its time slice (p99 at one connection: bench.variants). It goes
# back to nice 5 itself when it finds more, and the server raises it as soon as the spool is
# a quarter full, in case a busy core gives an idle flusher no time to look.
NICE = 5
IDLE_BELOW = 1 / 16


def serve(
    ring: Spool, writer: LandingWriter, parent: int, may_idle: bool = False, wake_fd: int = -1
) -> None:
    """Move records from ``ring`` into ``writer`` and publish them until told to stop
    (at SCHED_IDLE while the spool is nearly empty, if ``may_idle``). Between looks it
    sleeps, until the eventfd ``wake_fd`` is written if one is given."""
    n_numeric = len(writer.schema.numeric_features)
    n_categorical = len(writer.schema.categorical_features)
    backoff = retry_at = 0.0
    deadline = None
    seen, seen_at = ring.written(), time.monotonic()
    # every record a take finds was written after the previous take began (records from
    # before this flusher started: after it started), which bounds how old a row's own
    # timestamp may make it look, whatever a caller's clock said
    looked_at = seen_at
    while True:
        now = time.monotonic()
        written = ring.written()
        rate = (written - seen) / max(now - seen_at, 1e-3)  # bytes/s since the last look
        seen, seen_at = written, now
        stop_ms = ring.get(slot.STOP)
        if deadline is None and (stop_ms or os.getppid() != parent):
            # a stopping server says how long it waits; an orphan gets 30 s
            deadline = now + (stop_ms / 1e3 if stop_ms else 30.0)
        # read before taking: every record written before a flush request is taken below
        request = ring.get(slot.FLUSH_REQUEST)
        pending = request != ring.get(slot.FLUSH_DONE)
        taken = ring.take(n_numeric, n_categorical)
        not_before, looked_at = looked_at, now
        if taken:
            oldest = min(int(run.ts_us.min()) for run in taken)
            since = _accepted_at(oldest, not_before)
            # the taken rows are out of the ring and not yet in the writer: the server's
            # stats() must still see their age while they convert (the first conversion
            # can take a second: pyarrow imports pandas at its first numpy array)
            held = ring.get(slot.OLDEST_NS)
            since_ns = int(since * 1e9)
            ring.set(slot.OLDEST_NS, min(held, since_ns) if held else since_ns)
            batches = [run_to_batch(run, writer.arrow_schema, writer.replica) for run in taken]
            writer.extend_checked(batches, since=since)
            ring.add(slot.TAKEN, sum(b.num_rows for b in batches))
        s = writer.stats()
        due = s.buffered_rows > 0 and (
            deadline is not None
            or pending
            or s.buffered_rows >= writer.flush_rows
            # it wakes when the oldest row is due: a few ms early must not cost another look
            or s.oldest_buffered_age_seconds >= writer.flush_interval - BUSY_POLL
        )
        failed = False
        if due and (pending or now >= retry_at):
            try:
                writer.flush()
                backoff = 0.0
            except LandingError:
                failed = True
                backoff = min(max(backoff * 2, writer.flush_interval), 30.0)
                retry_at = time.monotonic() + backoff
        _mirror(ring, writer)
        if pending:
            if failed:
                ring.add(slot.FLUSH_ERRORS, 1)
            ring.set(slot.FLUSH_DONE, request)
        if deadline is not None and ring.used() == 0:
            left = writer.stats().buffered_rows
            if left == 0:
                return
            if time.monotonic() >= deadline:
                log.error(
                    "event=close_lost_rows replica=%s rows=%d reason=the landing zone refused "
                    "writes until the stop deadline",
                    writer.replica,
                    left,
                )
                return
        used = ring.used()
        if may_idle:  # never idle while stopping or orphaned: nobody would raise it
            idle = deadline is None and used < ring.capacity * IDLE_BELOW
            set_policy(os.getpid(), os.SCHED_IDLE if idle else os.SCHED_OTHER)
        due_in = _due_in(ring, writer, retry_at, looked_at)
        seconds = pause(min(ring.capacity * FILL_AT, LOOK_BYTES) - used, rate, due_in)
        if wake_fd < 0:
            time.sleep(seconds)
        elif select.select([wake_fd], [], [], seconds)[0]:
            os.eventfd_read(wake_fd)  # back to zero: the next write wakes it again


def pause(room: float, rate: float, due: float) -> float:
    """Seconds until the next look: when a flush is due (in ``due`` seconds) or ``room``
    more bytes arrive at ``rate`` bytes/s, whichever is first, within [BUSY_POLL, MAX_PAUSE]."""
    fill = 0.0 if room <= 0 else room / rate if rate > 0 else MAX_PAUSE
    return min(MAX_PAUSE, max(BUSY_POLL, min(fill, due)))


def _due_in(ring: Spool, writer: LandingWriter, retry_at: float, looked_at: float) -> float:
    """Seconds until the rows held or in the spool must be published (POLL, or the flush
    interval if shorter, if none); rows still in the spool were written after
    ``looked_at`` (the last take)."""
    s = writer.stats()
    if s.buffered_rows:
        due = writer.flush_interval - s.oldest_buffered_age_seconds
        return max(due, retry_at - time.monotonic())  # a failing store: at its next retry
    first = ring.first_ts()
    if first is None:  # a row may arrive any moment: seen within POLL, or its interval
        return min(POLL, writer.flush_interval)
    return writer.flush_interval - (time.monotonic() - _accepted_at(first, looked_at))


def _accepted_at(ts_us: int, not_before: float) -> float:
    """The ``time.monotonic()`` at which a row stamped ``ts_us`` (wall clock) was accepted,
    and not before ``not_before``."""
    return max(not_before, time.monotonic() - max(0.0, time.time() - ts_us / 1e6))


def set_policy(pid: int, policy: int) -> None:
    """Put every thread of process ``pid`` under scheduling ``policy`` (SCHED_IDLE, or
    SCHED_OTHER at the threads' own nice value), if it is not there already."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if os.sched_getscheduler(int(tid)) != policy:
                os.sched_setscheduler(int(tid), policy, os.sched_param(0))
        except ProcessLookupError:  # a thread that just ended
            pass


def _mirror(ring: Spool, writer: LandingWriter) -> None:
    s = writer.stats()
    ring.set(slot.FLUSHED, s.flushed_rows)
    ring.set(slot.FILES, s.flushed_files)
    ring.set(slot.FAILURES, s.failed_flushes)
    ring.set(slot.DROPPED, s.dropped_rows)
    ring.set(slot.LAST_FLUSH_NS, int(s.last_flush_seconds * 1e9))
    oldest = s.oldest_buffered_age_seconds
    ring.set(slot.OLDEST_NS, time.monotonic_ns() - int(oldest * 1e9) if s.buffered_rows else 0)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    fd, capacity = int(args[0]), int(args[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # every thread: numpy and pyarrow start theirs at import, before this runs
    for tid in os.listdir("/proc/self/task"):
        os.setpriority(os.PRIO_PROCESS, int(tid), NICE)
    logging.basicConfig(
        level=logging.INFO,
        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    # mimalloc, Arrow's default, hands the memory of each flush back to the kernel and
    # faults it in again (zeroing huge pages) at the next; glibc's malloc keeps it
    # (bench.variants: ~25% less flusher CPU a row)
    pa.set_memory_pool(pa.system_memory_pool())
    config = pickle.loads(sys.stdin.buffer.read())
    parent = config.pop("parent")
    may_idle = config.pop("may_idle", False)
    wake_fd = config.pop("wake_fd", -1)
    writer = LandingWriter(**config)
    ring = Spool(fd, capacity)
    ring.set(slot.READY, os.getpid())
    try:
        serve(ring, writer, parent, may_idle, wake_fd)
    finally:
        _mirror(ring, writer)


if __name__ == "__main__":
    main()
