"""The seam between a request path and the landing zone: what every capture writer provides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, Self, runtime_checkable

import numpy as np

from ingest.schema import ModelSchema

__all__ = ["LandingSink", "WriterStats"]


@dataclass(frozen=True)
class WriterStats:
    """Counters of one writer since it started (rows are feature rows, not requests).

    Attributes
    ----------
    captured_rows
        Rows offered by ``append_block``, whether kept or dropped.
    flushed_rows
        Rows published in landing files.
    dropped_rows
        Rows lost: refused by a full buffer or ring, or taken by a flusher that died.
    buffered_rows
        Rows kept and not yet published (``captured - flushed - dropped``).
    flushed_files
        Landing files published.
    failed_flushes
        Flush attempts that left rows unpublished (they are kept and retried).
    last_flush_seconds
        Duration of the last successful flush.
    oldest_buffered_age_seconds
        Age of the oldest row not yet published; 0 if none.
    """

    captured_rows: int
    flushed_rows: int
    dropped_rows: int
    buffered_rows: int
    flushed_files: int
    failed_flushes: int
    last_flush_seconds: float
    oldest_buffered_age_seconds: float

    @classmethod
    def zero(cls) -> WriterStats:
        """The counters of a sink that captured nothing (what a server without capture shows)."""
        return cls(0, 0, 0, 0, 0, 0, 0.0, 0.0)


@runtime_checkable
class LandingSink(Protocol):
    """Where a model server puts each request's rows; they land as Parquet files.

    :class:`~ingest.capture.LandingWriter` (a flusher thread in the server process) and
    :class:`~ingest.capture.ProcessLandingWriter` (a shared-memory ring and a flusher process)
    both satisfy it; ``serving`` is typed against this protocol, not either class.
    """

    schema: ModelSchema

    def start(self) -> Self:
        """Start flushing in the background; return the sink."""
        ...

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
        """Queue one request's rows: O(1) for numbers, strings are checked and encoded.

        Parameters
        ----------
        ts_us
            The request's timestamp, microseconds since the epoch (UTC), shared by its rows.
        id_prefix
            The request's id; row ``i`` lands with request id ``f"{id_prefix}-{i}"`` unless
            ``row_ids`` is given.
        features
            Rows x the schema's *numeric* features, in the schema's order (float64, or
            numbers that convert to it); shape ``(rows, 0)`` if the schema has none. The
            sink may keep it by reference until published: the caller must not modify it
            afterwards.
        prediction, score
            One number per row; ``score`` None lands a null score.
        model_version
            Written into every row.
        categorical
            None if the schema has no categorical feature; else one column per categorical
            feature, in schema order, each a sequence (list, tuple, numpy array) of ``rows``
            values, ``str`` or None (a null). Values are copied (as UTF-8) before this
            returns. They land dictionary-encoded, and any string is accepted: a category
            the reference never had is the analytics' to report, not capture's to refuse.
        row_ids
            None, or one non-empty ``str`` per row: the rows' request ids, landed as given
            (``id_prefix`` is then not used).

        Returns
        -------
        bool
            False if the rows were dropped (and counted) because the buffer is full.

        Raises
        ------
        SchemaError
            Naming the column (and row) and the problem, with nothing queued: the arrays'
            shapes do not match each other and the schema's numeric features; a categorical
            column is missing, extra or not one value per row; a categorical value is not a
            ``str`` or None; a row id is not a non-empty ``str``; a categorical value or a
            row id is over :data:`~ingest.capture.MAX_VALUE_BYTES` UTF-8 bytes.
        """
        ...

    def flush(self) -> int:
        """Land every buffered row now; return how many rows were landed."""
        ...

    def close(self, timeout: float = 30.0) -> None:
        """Land every buffered row and stop."""
        ...

    def stats(self) -> WriterStats:
        """Counters since the sink started."""
        ...
