"""The landing writer that publishes from a child process: the request path never shares the GIL.

Why a process: :class:`LandingWriter` flushes on a thread of the server. A flush makes
hundreds of short pyarrow and file-system calls, each of which releases the GIL and must
take it back. A busy request path (the event loop between requests, or a forest releasing
the GIL once per tree) re-takes the GIL first every time, so the flush waits out Python's
switch interval on each call, takes seconds, and the two threads convoy: measured on 2
cores, capture with the thread cost the default model's 32-row requests ~150 us of CPU per
request instead of the flush's own ~30 us, and a forest ~10-20% of its throughput
(BENCHMARKS.md). Here the request path copies each request's arrays into a shared-memory
ring (:mod:`ingest.capture._spool`, no lock, no system call) and a flusher process
(:mod:`ingest.capture._flusher`) turns them into landing files with the same LandingWriter code.
"""

from __future__ import annotations

import logging
import os
import pickle
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from ingest import paths
from ingest.capture import _flusher as flusher
from ingest.capture import _spool as sp
from ingest.capture._blocks import check_block
from ingest.capture.sink import WriterStats
from ingest.capture.thread_writer import CODECS
from ingest.errors import LandingError
from ingest.schema import ModelSchema
from ingest.storage import Warehouse

log = logging.getLogger("driftlake.ingest.capture.process_writer")

# bytes of shared memory per row, beyond its numbers: a 1-row request's record header, id
# and version, rounded up
_ROW_OVERHEAD = 96
_CHECK_EVERY = 1.0  # seconds between checks that the flusher is alive, on the request path


def may_raise_flusher() -> bool:
    """True if this process may move its flusher from SCHED_IDLE back to nice
    :data:`ingest.capture._flusher.NICE` (CAP_SYS_NICE, or an RLIMIT_NICE that allows that nice
    value, e.g. docker-compose's ``ulimits: nice``); only then may the flusher idle."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    if soft == resource.RLIM_INFINITY or soft >= 20 - flusher.NICE:
        return True
    with open("/proc/self/status") as fh:
        caps = next((line.split()[1] for line in fh if line.startswith("CapEff:")), "0")
    return bool(int(caps, 16) >> 23 & 1)  # CAP_SYS_NICE


def process_writer_supported() -> bool:
    """True where the spool's ordering assumption holds (x86-64 Linux with memfd)."""
    return (
        sys.platform == "linux"
        and platform.machine() in ("x86_64", "AMD64")
        and hasattr(os, "memfd_create")
    )


class ProcessLandingWriter:
    """:class:`LandingWriter`'s interface, publishing from a child process.

    Parameters are LandingWriter's, plus ``spool_rows``: how many rows of the schema the
    shared-memory ring holds between the request path and the flusher (~70 MB for 30
    features). The flusher takes rows out whenever a flush is due, and often enough that
    the ring stays under an eighth full (2 MB at most) at the rate it fills, but not while
    it flushes, so the ring must hold what arrives during a flush: a burst of 1,000-row
    requests filled up to 56,000 rows' worth of it while a first flush took 0.2 s on a
    saturated 2-core machine (tests/integration/test_serving.py), a ring of 50,000 rows
    dropped a quarter of the burst, and one of 100,000 rows dropped 15,000 once. So the
    default is 200,000. A larger ring used to cost tail latency at saturation (pooled p99
    +2.4, +4.8, +7.7 ms over capture off at 50,000, 100,000, 200,000 rows in one run),
    perhaps because the request path wrote a whole lap of it; now it starts again at the
    front whenever it finds the ring emptied (ingest.capture._spool). Rows the ring cannot take are
    dropped and counted, as are rows the flusher's own buffer (``max_buffer_rows``, while
    the landing zone refuses writes) cannot take. The ring stays mapped after
    :meth:`close`, so :meth:`stats` keeps answering.

    If the flusher dies it is restarted on the same ring (rows it had taken and not
    published are counted as dropped). If this process dies, even by SIGKILL, the
    flusher publishes every row already handed over and exits.
    """

    def __init__(
        self,
        warehouse: Warehouse,
        schema: ModelSchema,
        replica: str,
        *,
        flush_rows: int = 50_000,
        flush_interval: float = 1.0,
        max_buffer_rows: int = 1_000_000,
        compression: str = "none",
        spool_rows: int = 200_000,
    ) -> None:
        if compression not in CODECS:
            raise ValueError(f"compression must be one of {CODECS}, not {compression!r}")
        self.warehouse = warehouse
        self.schema = schema
        self.arrow_schema = schema.arrow_schema()
        self.replica = paths.check_name("replica", replica)
        self.flush_rows = flush_rows
        self.flush_interval = flush_interval
        self._numeric = all(f.kind == "numeric" for f in schema.features)
        self._config = dict(
            warehouse=warehouse,
            schema=schema,
            replica=self.replica,
            flush_rows=flush_rows,
            flush_interval=flush_interval,
            max_buffer_rows=max_buffer_rows,
            compression=compression,
        )
        row_bytes = 8 * (len(schema.features) + 2) + _ROW_OVERHEAD
        self._ring = sp.Spool.create(spool_rows * row_bytes)
        self._lock = threading.Lock()  # one producer at a time, whatever the caller's threads
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._closed = False
        self._dropping = False
        self._next_check = 0.0
        self._unread_since = 0
        # counters of flushers that died, and rows they took with them
        self._base = {sp.FLUSHED: 0, sp.FILES: 0, sp.FAILURES: 0, sp.DROPPED: 0}
        self._lost = 0
        self._may_idle = may_raise_flusher()
        # the flusher sleeps on this between looks at the ring (up to its MAX_PAUSE): written
        # when the ring is a quarter full, and by flush() and close(), which wait for it
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._woken_at = 0.0

    # -- request path -------------------------------------------------------------------
    def append_block(
        self,
        ts_us: int,
        id_prefix: str,
        features: np.ndarray,
        prediction: np.ndarray,
        score: np.ndarray | None,
        model_version: str,
    ) -> bool:
        """Copy one request's rows into the ring; see :meth:`LandingWriter.append_block`."""
        features, prediction, score = check_block(
            self.schema, self._numeric, features, prediction, score
        )
        with self._lock:
            self._note_unread()
            ok = self._ring.put_block(ts_us, id_prefix, features, prediction, score, model_version)
            return self._counted(ok, features.shape[0])

    def append(self, batch: pa.RecordBatch) -> bool:
        """Copy a record batch into the ring; see :meth:`LandingWriter.append`."""
        if not batch.schema.equals(self.arrow_schema):
            batch = self.schema.conform(batch)
        with self._lock:
            self._note_unread()
            return self._counted(self._ring.put_arrow(batch), batch.num_rows)

    def _note_unread(self) -> None:
        # rows still in the ring are no older than the moment it last went from empty to
        # not: the flusher reports the age of what it took, this covers what it has not
        if self._ring.used() == 0:
            self._unread_since = time.monotonic_ns()

    def _counted(self, ok: bool, n: int) -> bool:
        ring = self._ring
        header = ring.header
        header[sp.CAPTURED] += n
        if not ok:
            header[sp.RING_DROPPED] += n
        if not ok or self._dropping:
            self._log_dropping(ok)
        now = time.monotonic()
        if (
            4 * ring.used() > ring.capacity
            and now - self._woken_at >= 0.01  # a few system calls: not on every request
        ):
            self._woken_at = now
            self._wake_flusher()
        if now >= self._next_check:
            self._next_check = now + _CHECK_EVERY
            self._check_flusher()
        return ok

    def _wake_flusher(self) -> None:
        """The spool is a quarter full, or the caller waits for the flusher: wake it, and
        put one at SCHED_IDLE back at its nice value (a busy core may starve it)."""
        if self._wake >= 0:
            os.eventfd_write(self._wake, 1)
        if not self._may_idle or self._proc is None or self._proc.poll() is not None:
            return
        try:
            flusher.set_policy(self._proc.pid, os.SCHED_OTHER)
        except FileNotFoundError:  # it just exited: _check_flusher restarts it
            pass
        except PermissionError as exc:  # the limits changed: the next flusher stays at nice
            self._may_idle = False
            log.warning("event=flusher_priority replica=%s reason=%s", self.replica, exc)

    def _log_dropping(self, ok: bool) -> None:
        """Log once when the ring starts refusing rows, and once when it has room again:
        once it is at most half full, not at the first request that fits (a ring at its
        limit refuses and accepts requests alternately)."""
        ring = self._ring
        if not ok and not self._dropping:
            self._dropping = True
            log.error(
                "event=capture_dropping replica=%s reason=the flusher is not taking rows "
                "out of the spool (full at %d bytes)",
                self.replica,
                ring.capacity,
            )
        elif ok and 2 * ring.used() <= ring.capacity:
            self._dropping = False
            log.warning("event=capture_recovered replica=%s", self.replica)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> ProcessLandingWriter:
        """Start the flusher process and return (self) once it takes rows out of the ring.

        It needs a second or two to import pyarrow and numpy, and a server behind a load
        balancer gets its share of the traffic as soon as it answers: a burst of 1,000-row
        requests filled a 50,000-row ring in half a second, and the rows after that were
        dropped.

        Raises LandingError if the flusher exits or is not ready within ``timeout``.
        """
        if self._proc is not None:
            return self
        self._spawn()
        try:
            self._wait_for_flusher(
                lambda: self._ring.get(sp.READY) == self._proc.pid, "be ready", timeout, 0.01
            )
        except LandingError:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            self._proc = None  # so that start() can be tried again
            raise
        return self

    def _wait_for_flusher(
        self, done: Callable[[], bool], goal: str, timeout: float, pause: float
    ) -> None:
        """Poll ``done`` until it holds; LandingError if the flusher exits or time runs out."""
        proc = self._proc
        deadline = time.monotonic() + timeout
        while not done():
            if proc.poll() is not None:
                raise LandingError(
                    f"the flusher of replica {self.replica} exited with {proc.returncode} "
                    f"before it could {goal} (its error is in this process's log)"
                )
            if time.monotonic() > deadline:
                raise LandingError(
                    f"the flusher of replica {self.replica} did not {goal} within {timeout:g} s"
                )
            time.sleep(pause)

    def _spawn(self) -> None:
        self._ring.set(sp.READY, 0)
        config = {
            **self._config,
            "parent": os.getpid(),
            "may_idle": self._may_idle,
            "wake_fd": self._wake,
        }
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ingest.capture._flusher",
                str(self._ring.fd),
                str(self._ring.capacity),
            ],
            stdin=subprocess.PIPE,
            pass_fds=(self._ring.fd, self._wake),
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        try:
            self._proc.stdin.write(pickle.dumps(config))
            self._proc.stdin.close()
        except BrokenPipeError:
            # it exited before reading its config: start() or the next flush reports how
            pass

    def _check_flusher(self) -> None:
        """Restart a flusher that died; rows it had taken and not published are lost."""
        proc = self._proc
        if proc is None or self._stopping or proc.poll() is None:
            return
        ring = self._ring
        lost = ring.get(sp.TAKEN) - ring.get(sp.FLUSHED) - ring.get(sp.DROPPED)
        self._lost += lost
        for slot in self._base:
            self._base[slot] += ring.get(slot)
            ring.set(slot, 0)
        ring.set(sp.TAKEN, 0)
        ring.set(sp.OLDEST_NS, 0)
        log.error(
            "event=flusher_died replica=%s returncode=%s lost_rows=%d action=restarting",
            self.replica,
            proc.returncode,
            lost,
        )
        self._spawn()

    def flush(self, timeout: float = 60.0) -> int:
        """Publish every row appended so far; returns the rows published meanwhile.

        Raises LandingError if some could not be published (they stay buffered and are
        retried) or the flusher did not answer within ``timeout``.
        """
        with self._lock:
            self._check_flusher()
        if self._proc is None:
            raise LandingError(f"the flusher of replica {self.replica} is not running")
        ring = self._ring
        before = self.stats().flushed_rows
        errors = ring.get(sp.FLUSH_ERRORS)
        request = ring.get(sp.FLUSH_REQUEST) + 1
        ring.set(sp.FLUSH_REQUEST, request)
        self._wake_flusher()
        self._wait_for_flusher(lambda: ring.get(sp.FLUSH_DONE) >= request, "flush", timeout, 0.002)
        published = self.stats().flushed_rows - before
        if ring.get(sp.FLUSH_ERRORS) != errors:
            raise LandingError(
                f"flush of replica {self.replica} left {self.stats().buffered_rows} rows "
                "unpublished (the landing zone refused them; they are retried)"
            )
        return published

    def close(self, timeout: float = 30.0) -> None:
        """Publish every row (the flusher retries for up to ``timeout``), then stop it."""
        if self._closed:
            return
        self._stopping = True
        proc = self._proc
        if proc is None:  # never started: publish what was appended
            self._spawn()
            proc = self._proc
        self._ring.set(sp.STOP, max(1, int(timeout * 1e3)))
        self._wake_flusher()
        try:
            proc.wait(timeout + 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            log.error("event=flusher_killed replica=%s reason=did not stop", self.replica)
        self._closed = True
        with self._lock:  # no append may write to the descriptor once its number is free
            os.close(self._wake)
            self._wake = -1

    def stats(self) -> WriterStats:
        """Counters of this writer and its flushers, read from the ring's header."""
        ring = self._ring
        b = self._base
        captured = ring.get(sp.CAPTURED)
        flushed = b[sp.FLUSHED] + ring.get(sp.FLUSHED)
        dropped = ring.get(sp.RING_DROPPED) + b[sp.DROPPED] + ring.get(sp.DROPPED) + self._lost
        now = time.monotonic_ns()
        oldest = ring.get(sp.OLDEST_NS) or now
        if ring.used():
            oldest = min(oldest, self._unread_since)
        return WriterStats(
            captured_rows=captured,
            flushed_rows=flushed,
            dropped_rows=dropped,
            buffered_rows=max(0, captured - flushed - dropped),
            flushed_files=b[sp.FILES] + ring.get(sp.FILES),
            failed_flushes=b[sp.FAILURES] + ring.get(sp.FAILURES),
            last_flush_seconds=ring.get(sp.LAST_FLUSH_NS) / 1e9,
            oldest_buffered_age_seconds=(now - oldest) / 1e9,
        )
