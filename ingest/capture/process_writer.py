"""The landing writer that publishes from a child process: the request path never shares the GIL.

Why a process: :class:`LandingWriter` flushes on a thread of the server. A flush makes
hundreds of short pyarrow and file-system calls, each of which releases the GIL and must
take it back. A busy request path (the event loop between requests, or a forest releasing
the GIL once per tree) re-takes the GIL first every time, so the flush waits out Python's
switch interval on each call and the two threads convoy (``bench.variants`` compares the
two). Here the request path copies each request's arrays into a shared-memory ring
(:mod:`ingest.capture._spool`, no lock, no system call) and a flusher process
(:mod:`ingest.capture._flusher`, supervised by :mod:`ingest.capture._supervisor`) turns them
into landing files with the same LandingWriter code.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import threading
import time
from collections.abc import Sequence

import numpy as np

from ingest import paths
from ingest.capture import _spool_layout as slot
from ingest.capture._blocks import check_block
from ingest.capture._landing_files import check_codec
from ingest.capture._spool import Spool
from ingest.capture._supervisor import FlusherProcess
from ingest.capture._text import check_strings
from ingest.capture.sink import WriterStats
from ingest.errors import LandingError
from ingest.schema import ModelSchema
from ingest.storage import Warehouse

__all__ = ["ProcessLandingWriter", "process_writer_supported"]

log = logging.getLogger("driftlake.ingest.capture.process_writer")

# bytes of shared memory per row, beyond its numbers: a 1-row request's record header, id
# and version, rounded up
_ROW_OVERHEAD = 96
# bytes of shared memory per categorical value: its length and a short label's UTF-8
_CATEGORICAL_BYTES = 24
_CHECK_EVERY = 1.0  # seconds between checks that the flusher is alive, on the request path


def process_writer_supported() -> bool:
    """True where the spool's ordering assumption holds (x86-64 Linux with memfd)."""
    return (
        sys.platform == "linux"
        and platform.machine() in ("x86_64", "AMD64")
        and hasattr(os, "memfd_create")
    )


class ProcessLandingWriter:
    """A :class:`~ingest.capture.LandingSink` that publishes from a child process.

    Parameters are LandingWriter's, plus ``spool_rows``: how many rows of the schema the
    shared-memory ring holds between the request path and the flusher (~70 MB for 30
    numeric features; a categorical value is counted at 24 bytes, so rows of longer
    strings, or with row ids, fit fewer). The flusher takes rows out whenever a flush is
    due, and often enough that the ring stays under an eighth full (2 MB at most) at the
    rate it fills, but not while it flushes, so the ring must hold what arrives during a
    flush on a saturated machine: the default holds a burst of 1,000-row requests on 2
    cores (tests/integration/test_serving.py sends one). Rows the ring cannot take are dropped and
    counted, as are rows the flusher's own buffer (``max_buffer_rows``, while the landing
    zone refuses writes) cannot take. The ring stays mapped after :meth:`close`, so
    :meth:`stats` keeps answering.

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
        check_codec(compression)  # here, not in the flusher: a bad codec fails the start
        self.warehouse = warehouse
        self.schema = schema
        self.arrow_schema = schema.arrow_schema()
        self.replica = paths.check_name("replica", replica)
        self.flush_rows = flush_rows
        self.flush_interval = flush_interval
        self._n_numeric = len(schema.numeric_features)
        self._categories = schema.categorical_features
        config = dict(
            warehouse=warehouse,
            schema=schema,
            replica=self.replica,
            flush_rows=flush_rows,
            flush_interval=flush_interval,
            max_buffer_rows=max_buffer_rows,
            compression=compression,
        )
        row_bytes = (
            8 * (self._n_numeric + 2) + _CATEGORICAL_BYTES * len(self._categories) + _ROW_OVERHEAD
        )
        self._ring = Spool.create(spool_rows * row_bytes)
        self._flusher = FlusherProcess(self._ring, config, self.replica)
        self._lock = threading.Lock()  # one producer at a time, whatever the caller's threads
        self._stopping = False
        self._closed = False
        self._dropping = False
        self._next_check = 0.0
        self._unread_since = 0
        # counters of flushers that died, and rows they took with them
        self._base = {slot.FLUSHED: 0, slot.FILES: 0, slot.FAILURES: 0, slot.DROPPED: 0}
        self._lost = 0
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
        categorical: Sequence[Sequence[str | None]] | None = None,
        row_ids: Sequence[str] | None = None,
    ) -> bool:
        """Copy one request's rows into the ring; see :meth:`LandingSink.append_block`.

        Categorical values and row ids are checked and encoded to UTF-8 here, and copied
        into the ring as string sections of the request's record.
        """
        features, prediction, score = check_block(
            self.schema, self._n_numeric, features, prediction, score
        )
        if categorical is None and row_ids is None and not self._categories:
            with self._lock:
                self._note_unread()
                ok = self._ring.put_block(
                    ts_us, id_prefix, features, prediction, score, model_version
                )
                return self._counted(ok, features.shape[0])
        cats, ids = check_strings(
            self.schema, self._categories, features.shape[0], categorical, row_ids
        )
        lengths, text = cats or (b"", b"")
        kind, prefix = slot.TEXT, id_prefix
        if ids is not None:  # the last section
            lengths, text = lengths + ids[0], text + ids[1]
            kind, prefix = slot.TEXT_IDS, ""
        with self._lock:
            self._note_unread()
            ok = self._ring.put_text(
                ts_us, prefix, features, prediction, score, model_version, kind, lengths, text
            )
            return self._counted(ok, features.shape[0])

    def _note_unread(self) -> None:
        # rows still in the ring are no older than the moment it last went from empty to
        # not: the flusher reports the age of what it took, this covers what it has not
        if self._ring.used() == 0:
            self._unread_since = time.monotonic_ns()

    def _counted(self, ok: bool, n: int) -> bool:
        ring = self._ring
        header = ring.header
        header[slot.CAPTURED] += n
        if not ok:
            header[slot.RING_DROPPED] += n
        if not ok or self._dropping:
            self._log_dropping(ok)
        now = time.monotonic()
        if (
            4 * ring.used() > ring.capacity
            and now - self._woken_at >= 0.01  # a few system calls: not on every request
        ):
            self._woken_at = now
            self._flusher.wake()
        if now >= self._next_check:
            self._next_check = now + _CHECK_EVERY
            self._check_flusher()
        return ok

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
        balancer gets its share of the traffic as soon as it answers: rows arriving before
        the flusher takes any would only fill the ring.

        Raises LandingError if the flusher exits or is not ready within ``timeout``.
        """
        if self._flusher.proc is None:
            self._flusher.start(timeout)
        return self

    def _check_flusher(self) -> None:
        """Restart a flusher that died; rows it had taken and not published are lost."""
        if self._stopping or not self._flusher.exited():
            return
        ring = self._ring
        lost = ring.get(slot.TAKEN) - ring.get(slot.FLUSHED) - ring.get(slot.DROPPED)
        self._lost += lost
        for name in self._base:
            self._base[name] += ring.get(name)
            ring.set(name, 0)
        ring.set(slot.TAKEN, 0)
        ring.set(slot.OLDEST_NS, 0)
        log.error(
            "event=flusher_died replica=%s returncode=%s lost_rows=%d action=restarting",
            self.replica,
            self._flusher.proc.returncode,
            lost,
        )
        self._flusher.spawn()

    def flush(self, timeout: float = 60.0) -> int:
        """Publish every row appended so far; returns the rows published meanwhile.

        Raises LandingError if some could not be published (they stay buffered and are
        retried) or the flusher did not answer within ``timeout``.
        """
        with self._lock:
            self._check_flusher()
        if self._flusher.proc is None:
            raise LandingError(f"the flusher of replica {self.replica} is not running")
        ring = self._ring
        before = self.stats().flushed_rows
        errors = ring.get(slot.FLUSH_ERRORS)
        request = ring.get(slot.FLUSH_REQUEST) + 1
        ring.set(slot.FLUSH_REQUEST, request)
        self._flusher.wake()
        self._flusher.wait_for(
            lambda: ring.get(slot.FLUSH_DONE) >= request, "flush", timeout, 0.002
        )
        published = self.stats().flushed_rows - before
        if ring.get(slot.FLUSH_ERRORS) != errors:
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
        self._flusher.stop(timeout)  # never started: one starts to publish what was appended
        self._closed = True
        with self._lock:  # no append may write to the descriptor once its number is free
            self._flusher.close_wake()

    def stats(self) -> WriterStats:
        """Counters of this writer and its flushers, read from the ring's header."""
        ring = self._ring
        b = self._base
        captured = ring.get(slot.CAPTURED)
        flushed = b[slot.FLUSHED] + ring.get(slot.FLUSHED)
        dropped = (
            ring.get(slot.RING_DROPPED) + b[slot.DROPPED] + ring.get(slot.DROPPED) + self._lost
        )
        now = time.monotonic_ns()
        oldest = ring.get(slot.OLDEST_NS) or now
        if ring.used():
            oldest = min(oldest, self._unread_since)
        return WriterStats(
            captured_rows=captured,
            flushed_rows=flushed,
            dropped_rows=dropped,
            buffered_rows=max(0, captured - flushed - dropped),
            flushed_files=b[slot.FILES] + ring.get(slot.FILES),
            failed_flushes=b[slot.FAILURES] + ring.get(slot.FAILURES),
            last_flush_seconds=ring.get(slot.LAST_FLUSH_NS) / 1e9,
            oldest_buffered_age_seconds=(now - oldest) / 1e9,
        )
