"""Readers of the landing zone: file listings, row keys for planning, and window rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ingest import paths
from ingest.errors import CorruptFileError
from ingest.schema import REPLICA, REQUEST_ID, TS
from ingest.storage import Warehouse

KEY_COLUMNS = (TS, REQUEST_ID, REPLICA)


@dataclass(frozen=True)
class LandingFile:
    """One published landing file of a model."""

    path: str
    replica: str
    size: int


@dataclass(frozen=True)
class RowSelection:
    """Rows of one landing file, by position, that belong to one window."""

    path: str
    rows: tuple[int, ...]


def list_landing(
    warehouse: Warehouse, model: str, since_us: int | None = None
) -> list[LandingFile]:
    """List a model's published landing files, sorted by path.

    With ``since_us``, partitions of hours that ended at or before it are not even listed,
    so a long-running job does not walk weeks of history every cycle.
    """
    base = paths.model_landing_dir(model)
    since = (
        None
        if since_us is None
        else datetime.fromtimestamp(since_us / 1e6, tz=UTC).strftime("%Y-%m-%d/%H")
    )
    out = []
    prefix = len(paths.LANDING) + 1
    for date_dir in warehouse.list_dirs(base):
        if since is not None and date_dir.removeprefix("date=") < since[:10]:
            continue
        for hour_dir in warehouse.list_dirs(f"{base}/{date_dir}"):
            key = f"{date_dir.removeprefix('date=')}/{hour_dir.removeprefix('hour=')}"
            if since is not None and key < since:
                continue
            for f in warehouse.list_files(f"{base}/{date_dir}/{hour_dir}"):
                parsed = paths.parse_landing_path(f.path[prefix:])
                if parsed is not None:
                    out.append(LandingFile(f.path, parsed.replica, f.size))
    return out


def read_keys(warehouse: Warehouse, path: str) -> pl.DataFrame:
    """Read the planning keys of one file: ``row``, ``ts`` (µs since epoch), ``request_id``,
    ``replica``; raise CorruptFileError if the file cannot be read."""
    try:
        table = pq.read_table(warehouse.uri(path), columns=list(KEY_COLUMNS))
    except (OSError, pa.ArrowException) as exc:
        raise CorruptFileError(path, str(exc)) from exc
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"),
        pl.col(TS).dt.epoch("us").alias(TS),
        pl.col(REQUEST_ID),
        pl.col(REPLICA),
    )


def read_rows(
    warehouse: Warehouse, selections: Sequence[RowSelection], columns: Iterable[str]
) -> pl.DataFrame:
    """Read the selected rows of several landing files (only ``columns``) into one frame.

    Raises
    ------
    CorruptFileError
        If a file cannot be read.
    """
    cols = list(dict.fromkeys([*KEY_COLUMNS, *columns]))
    frames = []
    for sel in selections:
        try:
            table = pq.read_table(warehouse.uri(sel.path), columns=cols)
        except (OSError, pa.ArrowException) as exc:
            raise CorruptFileError(sel.path, str(exc)) from exc
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        frames.append(frame[list(sel.rows)])
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames, how="vertical_relaxed")


def scan_landing(warehouse: Warehouse, model: str) -> pl.LazyFrame:
    """Lazily scan all of a model's landing rows (hive columns ``date`` and ``hour`` added)."""
    return pl.scan_parquet(
        warehouse.uri(paths.model_landing_dir(model)) + "/**/*.parquet",
        hive_partitioning=True,
    )
