"""The landing-zone batch writer: O(1) appends on the request path, atomic flushes off it."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ingest import paths
from ingest.capture._blocks import Block, check_block
from ingest.capture._landing_files import CODECS, LandingFiles
from ingest.capture._text import check_strings
from ingest.capture.sink import WriterStats
from ingest.errors import LandingError
from ingest.schema import ModelSchema
from ingest.storage import Warehouse

__all__ = ["CODECS", "LandingWriter"]

log = logging.getLogger("driftlake.ingest.capture.thread_writer")


class LandingWriter:
    """Buffers one replica's rows in memory and publishes them as landing Parquet files.

    Rows are published when ``flush_rows`` are buffered or the oldest buffered row is
    ``flush_interval`` seconds old, and on :meth:`close`. A failing store never blocks
    :meth:`append_block`: rows stay buffered (up to ``max_buffer_rows``) and are retried with
    backoff; rows beyond that bound are dropped and counted.

    Parameters
    ----------
    warehouse
        Where to publish.
    schema
        The model's landing schema; every appended block must match it.
    replica
        This writer's replica name (part of every file name, so names never collide).
    flush_rows, flush_interval
        Publish when this many rows are buffered, or the oldest is this many seconds old.
    max_buffer_rows
        Rows kept while the store is failing; appends beyond it are dropped and counted.
    compression
        Parquet codec of landing files, one of :data:`CODECS` (``zstd`` at level 1).

    Example
    -------
    With ``schema`` of numeric ``age``, categorical ``plan`` and numeric ``tenure``:

    >>> writer = LandingWriter(Warehouse(tmp_path), schema, "r1").start()
    >>> x, prediction = np.array([[41.0, 3.0], [29.0, 1.0]]), np.array([1.0, 0.0])
    >>> writer.append_block(ts_us, "3f2a", x, prediction, None, "v1",
    ...                     categorical=[["gold", None]])  # lands ids "3f2a-0", "3f2a-1"
    True
    >>> writer.append_block(ts_us, "", x, prediction, None, "v1",
    ...                     categorical=[["gold", "basic"]], row_ids=["o-17", "o-18"])
    True
    >>> writer.close()   # publishes the buffered rows
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
    ) -> None:
        self.replica = paths.check_name("replica", replica)
        self._files = LandingFiles(warehouse, schema, self.replica, compression)
        self.warehouse = warehouse
        self.schema = schema
        self.arrow_schema = self._files.arrow_schema
        self.flush_rows = flush_rows
        self.flush_interval = flush_interval
        self.max_buffer_rows = max_buffer_rows
        self.compression = compression
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._n_numeric = len(schema.numeric_features)
        self._categories = schema.categorical_features
        # entries are whole requests (a block, built into Arrow at flush) or the record
        # batches of many (extend_checked), never single rows
        self._buffer: deque[tuple[float, pa.RecordBatch | Block]] = deque()
        self._buffered = 0
        self._captured = self._flushed = self._dropped = self._file_count = self._failures = 0
        self._last_flush_seconds = 0.0
        self._failing = False
        self._dropping = False
        self._io_lock = threading.Lock()
        self._thread: threading.Thread | None = None

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
        """Queue one request's rows; O(1) in the rows' numbers (see
        :meth:`LandingSink.append_block`).

        A tuple goes into the buffer, and the flusher thread turns all buffered blocks into
        one Arrow table at once instead of a record batch per request. Categorical values
        and row ids are checked and encoded to UTF-8 here.
        """
        features, prediction, score = check_block(
            self.schema, self._n_numeric, features, prediction, score
        )
        n = features.shape[0]
        if categorical is None and row_ids is None and not self._categories:
            cats = ids = None
        else:
            cats, ids = check_strings(self.schema, self._categories, n, categorical, row_ids)
        block = (ts_us, n, id_prefix, features, prediction, score, model_version, cats, ids)
        return self._enqueue(block, n)

    def extend_checked(self, batches: list[pa.RecordBatch], since: float | None = None) -> None:
        """Queue many record batches at once that are in the landing schema already (the
        flusher process builds them from its spool, one per many requests; nothing checks
        them again). Past ``max_buffer_rows`` the newest rows are dropped and counted: a
        batch is cut at the bound (a request's rows may fall on both sides of the cut).
        ``since`` is when their oldest row was accepted (``time.monotonic()``; now if None):
        their age, and so when they are due, counts from then, not from when they reached
        this writer."""
        at = time.monotonic() if since is None else since
        for batch in batches:
            room = self.max_buffer_rows - self._buffered
            if 0 < room < batch.num_rows:
                self._enqueue(batch.slice(0, room), room, at)
                batch = batch.slice(room)
            self._enqueue(batch, batch.num_rows, at)

    def _enqueue(self, item: pa.RecordBatch | Block, n: int, at: float | None = None) -> bool:
        with self._lock:
            self._captured += n  # kept or dropped, as ProcessLandingWriter counts
            if self._buffered + n > self.max_buffer_rows:
                self._dropped += n
                if not self._dropping:
                    self._dropping = True
                    log.error(
                        "event=capture_dropping replica=%s buffered_rows=%d max_buffer_rows=%d "
                        "reason=landing zone not accepting writes fast enough",
                        self.replica,
                        self._buffered,
                        self.max_buffer_rows,
                    )
                return False
            self._buffer.append((time.monotonic() if at is None else at, item))
            self._buffered += n
            full = self._buffered >= self.flush_rows
        if full:
            self._wake.set()
        return True

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> LandingWriter:
        """Start the background flusher thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"landing-writer-{self.replica}", daemon=True
            )
            self._thread.start()
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Stop the flusher and publish every buffered row (retrying until ``timeout``)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.flush()
                return
            except LandingError as exc:
                if time.monotonic() >= deadline:
                    log.error(
                        "event=close_lost_rows replica=%s rows=%d reason=%s",
                        self.replica,
                        self._buffered,
                        exc,
                    )
                    return
                time.sleep(0.2)

    def stats(self) -> WriterStats:
        """Return a consistent snapshot of this writer's counters."""
        with self._lock:
            age = time.monotonic() - self._buffer[0][0] if self._buffer else 0.0
            return WriterStats(
                captured_rows=self._captured,
                flushed_rows=self._flushed,
                dropped_rows=self._dropped,
                buffered_rows=self._buffered,
                flushed_files=self._file_count,
                failed_flushes=self._failures,
                last_flush_seconds=self._last_flush_seconds,
                oldest_buffered_age_seconds=age,
            )

    # -- flushing -----------------------------------------------------------------------
    def flush(self) -> int:
        """Publish everything buffered now; returns the rows published.

        On failure the unpublished rows go back to the front of the buffer (so no row is
        lost or published twice) and LandingError is raised.
        """
        with self._io_lock:
            with self._lock:
                taken = list(self._buffer)
                self._buffer.clear()
                # all rows buffered are in ``taken``: no other flush runs (the I/O lock)
                rows = self._buffered
            if not taken:
                return 0
            started = time.perf_counter()
            try:
                table = self._files.table(taken)
            except (pa.ArrowException, ValueError, TypeError) as exc:
                # a bug, never bad input (blocks are checked when appended): keep the rows
                with self._lock:
                    self._buffer.extendleft(reversed(taken))
                    self._failures += 1
                log.error(
                    "event=flush_failed replica=%s rows=%d reason=%s", self.replica, rows, exc
                )
                raise LandingError(f"flush of {rows} rows failed: {exc}") from exc
            remaining, error, files = self._files.publish(table)
            if error is not None:
                with self._lock:
                    self._buffer.extendleft(
                        (taken[0][0], b) for b in reversed(remaining.to_batches())
                    )
                    published = rows - remaining.num_rows
                    self._buffered -= published
                    self._flushed += published
                    self._file_count += files
                    self._failures += 1
                if not self._failing:
                    self._failing = True
                    log.error(
                        "event=flush_failed replica=%s rows=%d reason=%s action=retrying",
                        self.replica,
                        remaining.num_rows,
                        error,
                    )
                raise LandingError(f"flush of {remaining.num_rows} rows failed: {error}")
            elapsed = time.perf_counter() - started
            with self._lock:
                self._buffered -= rows
                self._flushed += rows
                self._file_count += files
                self._last_flush_seconds = elapsed
                if self._dropping and self._buffered < self.max_buffer_rows // 2:
                    self._dropping = False
                    log.warning("event=capture_recovered replica=%s", self.replica)
            if self._failing:
                self._failing = False
                log.warning("event=flush_recovered replica=%s rows=%d", self.replica, rows)
            return rows

    def _due_in(self) -> float:
        """Seconds until a flush is due (0: now; FLUSH_INTERVAL if nothing is buffered)."""
        with self._lock:
            if self._buffered >= self.flush_rows:
                return 0.0
            if not self._buffer:
                return self.flush_interval
            return max(0.0, self._buffer[0][0] + self.flush_interval - time.monotonic())

    def _run(self) -> None:
        backoff = self.flush_interval
        while not self._stop.is_set():
            wait = self._due_in()
            if wait > 0:
                self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                break
            if self._due_in() > 0:
                continue
            try:
                self.flush()
                backoff = self.flush_interval
            except LandingError:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
