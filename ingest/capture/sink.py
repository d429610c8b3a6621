"""The seam between a request path and the landing zone: what every capture writer provides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Self, runtime_checkable

import numpy as np

from ingest.schema import ModelSchema

__all__ = ["LandingSink", "WriterStats"]


@dataclass(frozen=True)
class WriterStats:
    """Counters of one writer since it started (rows are feature rows, not requests)."""

    captured_rows: int
    flushed_rows: int
    dropped_rows: int
    buffered_rows: int
    flushed_files: int
    failed_flushes: int
    last_flush_seconds: float
    oldest_buffered_age_seconds: float


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
    ) -> bool:
        """Queue one request's rows, O(1); False if the buffer is full (the rows are dropped
        and counted)."""
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
