"""Capture as a library: a user's own service lands its model's rows in the landing zone,
with the guarantees and the landing schema of driftlake's model server.

Example
-------
>>> monitor = Monitor("churn", "warehouse", features={"age": "numeric", "plan": "categorical"})
>>> with monitor:    # starts the writer; leaving the block publishes every captured row
...     ids = monitor.capture([{"age": 41, "plan": "pro"}], prediction=1, score=0.83)
>>> len(ids)
1
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from ingest.capture._exit import register, unregister
from ingest.capture._frames import Layout
from ingest.capture.process_writer import ProcessLandingWriter, process_writer_supported
from ingest.capture.settings import MonitorSettings, default_replica
from ingest.capture.sink import LandingSink, WriterStats
from ingest.capture.thread_writer import LandingWriter
from ingest.errors import ConfigError, LandingError, SchemaError
from ingest.schema import FeatureSpec, ModelSchema
from ingest.settings_cli import describe_validation_error
from ingest.storage import Warehouse

__all__ = ["Monitor", "MonitorStats", "schema_of_reference"]

log = logging.getLogger("driftlake.ingest.capture.monitor")

# Request ids as the model server makes them: 128 random bits as 32 hex digits, row i of a
# capture "<prefix>-<i>"; a generator seeded by the OS once, and again in a forked child
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))
_OUTPUT_KINDS = "biuf"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class MonitorStats(WriterStats):
    """The writer's counters, and requests a :class:`~ingest.capture.asgi.CaptureMiddleware`
    passed through without capturing them, by reason (``request_too_large``,
    ``response_too_large``, ``streaming``, ``not_json``, ``extract``, ``schema``,
    ``not_started``, ``error``; see docs/capture.md)."""

    uncaptured: Mapping[str, int] = field(default_factory=dict)


def schema_of_reference(
    path: str | os.PathLike[str], model: str, label: str | None = "target"
) -> tuple[FeatureSpec, ...]:
    """The features a reference Parquet file implies, from its schema alone: every column but
    ``label``, numeric if its type is a number, categorical otherwise (as the analytics job
    reads the same file).

    Raises
    ------
    SchemaError
        If the file cannot be read as Parquet.
    """
    try:
        arrow = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise SchemaError(f"cannot read reference file {path}: {exc}") from exc
    specs = []
    for f in arrow:
        if f.name == label:
            continue
        t = f.type
        numeric = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
        specs.append(FeatureSpec(f.name, "numeric" if numeric else "categorical"))
    return tuple(specs)


class Monitor:
    """Captures a model's inputs and outputs into a driftlake landing zone.

    Rows land in ``landing/model=<model>/`` of the warehouse with the model server's schema
    (``ts``, ``request_id``, ``replica``, ``model_version``, the features, ``prediction``,
    ``score``), written by the same writers: a flusher process fed through shared memory
    (``writer="process"``; x86-64 Linux) or a thread of this process (``"thread"``);
    ``"auto"`` picks the process where it is supported. Rows are published every
    ``flush_interval`` seconds or ``flush_rows`` rows, and every captured row on
    :meth:`close` (and so at interpreter exit and, see ``handle_sigterm``, on SIGTERM).
    A landing zone that refuses writes never blocks :meth:`capture`: rows wait in memory (up
    to ``max_buffer_rows``) and are retried; rows beyond that are dropped and counted.

    Parameters
    ----------
    model
        Model name (the landing partition, the analytics job's ``MODEL_NAME``).
    warehouse
        A local path, ``file://`` URL or ``s3://bucket/prefix``.
    reference, features
        The captured features, exactly one of: a reference Parquet file (its schema is read:
        numeric columns numeric, others categorical, ``label`` left out), or a mapping of
        name -> ``"numeric"`` | ``"categorical"`` in order.
    label
        The reference's label column (not a feature).
    model_version
        Written into every row.
    replica
        This process's name in landing file names and rows (default ``<hostname>-<pid>``);
        two processes writing to one warehouse need different ones.
    writer
        ``"auto"``, ``"process"`` or ``"thread"``.
    flush_rows, flush_interval, max_buffer_rows, compression, spool_rows, handle_sigterm
        As :class:`~ingest.capture.settings.MonitorSettings` documents them.

    Raises
    ------
    ConfigError
        A name or setting is unusable, or the warehouse cannot be opened.
    SchemaError
        The reference cannot be read, or the features are unusable.
    """

    def __init__(
        self,
        model: str,
        warehouse: str | os.PathLike[str] = "./warehouse",
        *,
        reference: str | os.PathLike[str] | None = None,
        features: Mapping[str, Literal["numeric", "categorical"]] | None = None,
        label: str | None = "target",
        model_version: str = "unversioned",
        replica: str | None = None,
        writer: Literal["auto", "process", "thread"] = "auto",
        flush_rows: int = 50_000,
        flush_interval: float = 1.0,
        max_buffer_rows: int = 1_000_000,
        compression: Literal["none", "zstd", "snappy", "lz4"] = "none",
        spool_rows: int = 200_000,
        handle_sigterm: bool = True,
    ) -> None:
        given = dict(
            model_name=model,
            warehouse=os.fspath(warehouse),
            reference_path=None if reference is None else Path(reference),
            features=None if features is None else dict(features),
            label=label,
            model_version=model_version,
            # not the settings' default: DRIFTLAKE_REPLICA is for from_settings() only
            replica=default_replica() if replica is None else replica,
            writer=writer,
            flush_rows=flush_rows,
            flush_interval=flush_interval,
            max_buffer_rows=max_buffer_rows,
            landing_compression=compression,
            spool_rows=spool_rows,
            handle_sigterm=handle_sigterm,
        )
        try:
            settings = MonitorSettings(**given)
        except ValidationError as exc:
            problem = describe_validation_error(exc)
            raise ConfigError(f"invalid monitor settings: {problem}") from None
        self._setup(settings)

    @classmethod
    def from_settings(cls, settings: MonitorSettings | None = None) -> Monitor:
        """The monitor ``settings`` describe; None reads them from ``DRIFTLAKE_*`` variables.

        Raises
        ------
        ConfigError
            The environment holds an unusable value (named), or the warehouse cannot be
            opened; SchemaError as the constructor.
        """
        if settings is None:
            try:
                settings = MonitorSettings()
            except ValidationError as exc:
                raise ConfigError(
                    f"invalid DRIFTLAKE_* settings: {describe_validation_error(exc)}"
                ) from None
        monitor = cls.__new__(cls)
        monitor._setup(settings)
        return monitor

    def _setup(self, s: MonitorSettings) -> None:
        if (s.reference_path is None) == (s.features is None):
            raise ConfigError(
                "give the captured features one way: a reference Parquet file "
                "(reference / DRIFTLAKE_REFERENCE_PATH) or a name -> kind mapping "
                "(features / DRIFTLAKE_FEATURES), not "
                + ("both" if s.features is not None else "neither")
            )
        if s.features is not None:
            specs = tuple(FeatureSpec(name, kind) for name, kind in s.features.items())
        else:
            specs = schema_of_reference(s.reference_path, s.model_name, s.label)
        self.settings = s
        self.model = s.model_name
        self.model_version = s.model_version
        self.replica = s.replica
        self.schema = ModelSchema(s.model_name, specs, version=s.model_version)
        self.warehouse = Warehouse(s.warehouse)
        use_process = s.writer == "process" or (s.writer == "auto" and process_writer_supported())
        if use_process and not process_writer_supported():
            raise ConfigError(
                "writer 'process' needs x86-64 Linux with memfd_create; use 'thread' or 'auto'"
            )
        options = dict(
            flush_rows=s.flush_rows,
            flush_interval=s.flush_interval,
            max_buffer_rows=s.max_buffer_rows,
            compression=s.landing_compression,
        )
        self.writer_kind: Literal["process", "thread"] = "process" if use_process else "thread"
        self.sink: LandingSink = (
            ProcessLandingWriter(
                self.warehouse, self.schema, s.replica, spool_rows=s.spool_rows, **options
            )
            if use_process
            else LandingWriter(self.warehouse, self.schema, s.replica, **options)
        )
        self._layout = Layout(self.schema)
        self._live: LandingSink | None = None  # the sink while started and not closed
        self._state = "new"
        self._lock = threading.Lock()
        self._uncaptured: dict[str, int] = {}

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> Self:
        """Start the writer (the process writer's flusher is ready when this returns; it
        takes a second or two); returns self. Starting a started monitor does nothing.

        Raises
        ------
        LandingError
            The flusher process could not start, or the monitor was closed.
        """
        with self._lock:
            if self._state == "started":
                return self
            if self._state == "closed":
                raise LandingError(f"monitor of model {self.model!r} is closed; make a new one")
            if self.writer_kind == "thread":
                # pyarrow imports pandas (if installed) at its first conversion of a numpy
                # array; a first flush at interpreter exit (close() from atexit) could not
                _ = pa.array(np.zeros(1))
            self.sink.start()
            register(id(self), self.close, self.settings.handle_sigterm)
            self._state = "started"
            self._live = self.sink
        log.info(
            "event=monitor_started model=%s model_version=%s replica=%s writer=%s warehouse=%s",
            self.model,
            self.model_version,
            self.replica,
            self.writer_kind,
            self.settings.warehouse,
        )
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Publish every captured row (retrying for up to ``timeout`` seconds while the
        landing zone refuses writes) and stop; later captures raise LandingError."""
        with self._lock:
            if self._state == "closed":
                return
            started = self._state == "started"
            self._state = "closed"
            self._live = None
            if started:
                self.sink.close(timeout)
            unregister(id(self))
        s = self.sink.stats()
        log.info(
            "event=monitor_closed model=%s replica=%s captured_rows=%d flushed_rows=%d "
            "dropped_rows=%d buffered_rows=%d",
            self.model,
            self.replica,
            s.captured_rows,
            s.flushed_rows,
            s.dropped_rows,
            s.buffered_rows,
        )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Start with an ASGI app and close (publishing every row) when it shuts down:
        ``FastAPI(lifespan=monitor.lifespan)``, or ``async with monitor.lifespan(app):``
        inside an app's own lifespan. Start and close run off the event loop."""
        await asyncio.to_thread(self.start)
        try:
            yield
        finally:
            await asyncio.to_thread(self.close)

    # -- the request path ---------------------------------------------------------------
    def capture(
        self,
        features: Any,
        prediction: Any,
        score: Any = None,
        request_ids: Any = None,
        ts: datetime | float | None = None,
    ) -> list[str]:
        """Queue rows for the landing zone; O(rows), never blocks on I/O.

        Parameters
        ----------
        features
            A pandas or polars DataFrame, a pyarrow Table or RecordBatch, a mapping of
            column -> values (or -> one value each: one row), a list of row mappings, or a
            2-D numpy array (numeric features only, in schema order). Columns beyond the
            schema's are ignored. Numeric features take finite numbers, categorical ones
            strings (or None).
        prediction, score
            One number per row (a scalar for one row); ``score`` None lands nulls.
        request_ids
            One non-empty string per row, landed as given; None generates
            ``<32 hex digits>-<row>`` as the model server does.
        ts
            The rows' timestamp: an aware datetime or seconds since the epoch (now if None).

        Returns
        -------
        list[str]
            The rows' request ids; empty if the writer's buffer was full and the rows were
            dropped (counted in :meth:`stats`).

        Raises
        ------
        SchemaError
            The rows do not fit the schema (the column, and the row where there is one, is
            named); nothing is queued.
        LandingError
            The monitor is not started, or closed.
        """
        sink = self._live
        if sink is None:
            raise LandingError(
                f"monitor of model {self.model!r} is {self._state}: call start() (or use it "
                "as a context manager, or its lifespan) before capture()"
            )
        rows = self._layout.rows(features)
        n = rows.n
        if n == 0:
            return []
        y = _outputs("prediction", prediction, n)
        p = None if score is None else _outputs("score", score, n)
        ts_us = time.time_ns() // 1000 if ts is None else _ts_us(ts)
        extra: dict[str, Any] = {}
        if rows.categorical is not None:
            extra["categorical"] = rows.categorical
        if request_ids is None:
            prefix = f"{_ids.getrandbits(128):032x}"
            ids = [f"{prefix}-0"] if n == 1 else [f"{prefix}-{i}" for i in range(n)]
        else:
            prefix = ""
            ids = _given_ids(request_ids, n)
            extra["row_ids"] = ids
        ok = sink.append_block(ts_us, prefix, rows.numeric, y, p, self.model_version, **extra)
        return ids if ok else []

    def flush(self) -> int:
        """Publish every row captured so far now; return how many rows were published.

        Raises
        ------
        LandingError
            Some rows could not be published (they stay buffered and are retried), or the
            process writer's flusher is not running.
        """
        return self.sink.flush()

    def stats(self) -> MonitorStats:
        """The writer's counters since it started, and the requests left uncaptured."""
        s = self.sink.stats()
        with self._lock:
            uncaptured = dict(self._uncaptured)
        return MonitorStats(**vars(s), uncaptured=uncaptured)

    def note_uncaptured(self, reason: str, detail: str = "") -> None:
        """Count a request left uncaptured for ``reason``; the first of each reason is logged
        (with ``detail``), the rest only counted (see :meth:`stats`)."""
        with self._lock:
            first = reason not in self._uncaptured
            self._uncaptured[reason] = self._uncaptured.get(reason, 0) + 1
        if first:
            log.warning(
                "event=capture_skipped model=%s reason=%s detail=%s (logged once per reason; "
                "counted in Monitor.stats().uncaptured)",
                self.model,
                reason,
                " ".join(detail.split())[:500] or "-",
            )

    def __repr__(self) -> str:
        return (
            f"Monitor(model={self.model!r}, warehouse={self.settings.warehouse!r}, "
            f"replica={self.replica!r}, writer={self.writer_kind!r}, state={self._state!r})"
        )


def _outputs(name: str, value: Any, n: int) -> np.ndarray:
    """One finite float64 per row, in a new array (the writer may keep it until it flushes)."""
    if n == 1 and (type(value) is float or type(value) is int) and math.isfinite(value):
        return np.array((value,), np.float64)  # one row's plain number: no general checks
    if isinstance(value, pa.Array | pa.ChunkedArray):
        if not (pa.types.is_integer(value.type) or pa.types.is_floating(value.type)):
            raise SchemaError(f"{name} must be numbers, one per row; got {value.type} values")
        value = value.cast(pa.float64()).to_numpy(zero_copy_only=False)  # nulls: NaN
    elif hasattr(value, "to_numpy") and not isinstance(value, np.ndarray):
        value = value.to_numpy()  # pandas, polars
    x = np.array(value)
    if x.dtype.kind not in _OUTPUT_KINDS:
        raise SchemaError(f"{name} must be numbers, one per row; got {x.dtype} values")
    if x.ndim == 0:
        x = x.reshape(1)
    if x.shape != (n,):
        raise SchemaError(f"{name} must hold one number per row ({n}); got shape {x.shape}")
    x = x.astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        i = int(np.flatnonzero(~np.isfinite(x))[0])
        raise SchemaError(f"row {i}: {name} {x[i]} is not a finite number")
    return x


def _ts_us(ts: datetime | float) -> int:
    if isinstance(ts, datetime):
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise SchemaError(
                f"ts {ts.isoformat()} has no time zone: give an aware datetime "
                "(datetime.now(UTC)) or seconds since the epoch"
            )
        return (ts - _EPOCH) // _MICROSECOND
    if isinstance(ts, int | float) and not isinstance(ts, bool) and math.isfinite(ts):
        return int(ts * 1_000_000)
    raise SchemaError(f"ts must be an aware datetime or seconds since the epoch, not {ts!r}")


def _given_ids(request_ids: Any, n: int) -> list[Any]:
    if isinstance(request_ids, str):
        ids = [request_ids]
    elif hasattr(request_ids, "to_pylist"):
        ids = request_ids.to_pylist()
    elif hasattr(request_ids, "tolist"):
        ids = request_ids.tolist()
    elif isinstance(request_ids, Sequence) or hasattr(request_ids, "__iter__"):
        ids = list(request_ids)
    else:
        raise SchemaError(f"request_ids must be strings, one per row; got {request_ids!r}")
    if len(ids) != n:
        raise SchemaError(f"request_ids must hold one id per row ({n}); got {len(ids)}")
    return ids
