"""Readers of the landing zone: row keys for planning, window rows, and scans.

Every reader here sees each landing row exactly once, also while compaction rewrites an hour:
it reads what :mod:`ingest.listing` lists (never the files a published compaction group
supersedes), a file that vanished between listing and reading raises
:class:`FileVanishedError` (list again), and files of different model versions are read under
one unified schema. The listing names are re-exported here for existing importers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.errors import CorruptFileError, FileVanishedError, LandingError
from ingest.listing import (
    LandingFile,
    LandingListing,
    landing_files,
    landing_listing,
    landing_partitions,
    list_landing,
)
from ingest.schema import REPLICA, REQUEST_ID, TS, unify_schemas
from ingest.storage import Warehouse

__all__ = [
    "HIVE_SCHEMA",
    "KEY_COLUMNS",
    "LandingFile",
    "LandingListing",
    "RowSelection",
    "file_schema",
    "landing_files",
    "landing_listing",
    "landing_partitions",
    "list_landing",
    "read_file",
    "read_files",
    "read_keys",
    "read_landing",
    "read_rows",
    "scan_files",
    "scan_landing",
]

log = logging.getLogger("driftlake.ingest.reader")
KEY_COLUMNS = (TS, REQUEST_ID, REPLICA)
HIVE_SCHEMA = {"model": pl.String, "date": pl.Date, "hour": pl.Int32}
_UPCAST = pl.ScanCastOptions(
    integer_cast="upcast", float_cast="upcast", categorical_to_string="allow"
)
_schemas: dict[tuple[str, int], pa.Schema] = {}
_schemas_lock = threading.Lock()


@dataclass(frozen=True)
class RowSelection:
    """Rows of one landing file, by position, that belong to one window."""

    path: str
    rows: tuple[int, ...]


def _open(warehouse: Warehouse, path: str, whole: bool = False) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(warehouse.open_input(path, whole))
    except FileNotFoundError as exc:
        raise FileVanishedError(path) from exc
    except (OSError, pa.ArrowException) as exc:
        raise CorruptFileError(path, str(exc)) from exc


def read_file(warehouse: Warehouse, path: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Read one landing file (only ``columns`` if given; one this file lacks is null).

    Categorical columns (dictionary-encoded in landing files) read as strings, as
    :func:`scan_files` reads them.

    Raises
    ------
    CorruptFileError
        If the file cannot be read.
    FileVanishedError
        If the file is gone (list the landing zone again).
    """
    pf = _open(warehouse, path, whole=True)
    try:
        names = pf.schema_arrow.names
        columns = names if columns is None else columns
        table = pf.read(columns=[c for c in columns if c in names])
    except FileNotFoundError as exc:
        raise FileVanishedError(path) from exc
    except (OSError, pa.ArrowException) as exc:
        raise CorruptFileError(path, str(exc)) from exc
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):  # a categorical feature reads as strings
            table = table.set_column(i, f.name, table.column(i).cast(f.type.value_type))
    for c in columns:
        if c not in names:
            table = table.append_column(c, pa.nulls(table.num_rows))
    return table.select(list(columns))


def read_keys(warehouse: Warehouse, path: str) -> pl.DataFrame:
    """Read the planning keys of one file: ``row``, ``ts`` (µs since epoch), ``request_id``,
    ``replica``.

    Raises
    ------
    CorruptFileError
        If the file cannot be read.
    FileVanishedError
        If the file is gone (list the landing zone again).
    """
    frame = pl.from_arrow(read_file(warehouse, path, KEY_COLUMNS))
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
    """Read the selected rows of several landing files (only ``columns``) into one frame,
    in selection order; a file several selections name is read once.

    Files of different model versions may hold different columns or types: a column a file
    lacks is null for its rows, and numeric types widen (float32 to float64).

    Raises
    ------
    CorruptFileError
        If a file cannot be read.
    FileVanishedError
        If a file is gone.
    """
    cols = list(dict.fromkeys([*KEY_COLUMNS, *columns]))
    paths = list(dict.fromkeys(sel.path for sel in selections))
    files = dict(zip(paths, read_files(warehouse, paths, cols), strict=True))
    frames = [files[sel.path][list(sel.rows)] for sel in selections]
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames, how="diagonal_relaxed")


def read_files(
    warehouse: Warehouse, paths: Sequence[str], columns: Sequence[str]
) -> list[pl.DataFrame]:
    """Read each of ``paths`` whole (only ``columns``, in that order; one a file lacks is
    null), in order; an object store's files are fetched several at a time.

    Raises
    ------
    CorruptFileError
        If a file cannot be read.
    FileVanishedError
        If a file is gone.
    """

    def load(path: str) -> pl.DataFrame:
        frame = pl.from_arrow(read_file(warehouse, path, columns))
        assert isinstance(frame, pl.DataFrame)
        return frame

    if warehouse.is_local or len(paths) < 2:
        return [load(path) for path in paths]
    # a store's latency, not its bandwidth, bounds one reader: fetch files together
    with ThreadPoolExecutor(min(_FETCHES, len(paths))) as pool:
        return list(pool.map(load, paths))


_FETCHES = 8  # files one read_files call fetches from an object store at once


def file_schema(warehouse: Warehouse, path: str, size: int) -> pa.Schema:
    """Return a landing file's Arrow schema (footer read once per file, then cached)."""
    key = (path, size)
    with _schemas_lock:
        hit = _schemas.get(key)
    if hit is not None:
        return hit
    schema = _open(warehouse, path).schema_arrow
    with _schemas_lock:
        if len(_schemas) >= 100_000:
            _schemas.clear()
        _schemas[key] = schema
    return schema


def scan_landing(
    warehouse: Warehouse,
    model: str,
    since_us: int | None = None,
    until_us: int | None = None,
) -> pl.LazyFrame:
    """Lazily scan a model's landing rows, each once (hive columns ``model``, ``date``,
    ``hour`` added).

    The files are resolved now; all model versions are read under one schema (a column a
    version lacks is null, float32 widens to float64). Collect it soon: once a compaction has
    rewritten an hour (and its ``delete_after`` delay, 0 by default, has passed) a plan over
    the old files fails with FileNotFoundError, never with wrong rows; scan again.
    :func:`read_landing` retries for you.

    Example
    -------
    >>> rows = scan_landing(Warehouse("./warehouse"), "breast_cancer")  # doctest: +SKIP
    >>> rows.group_by("replica", "hour").len().collect()  # doctest: +SKIP
    """
    files = list_landing(warehouse, model, since_us, until_us)
    return scan_files(warehouse, [(f.path, f.size) for f in files], hive=True)


def scan_files(
    warehouse: Warehouse, files: Sequence[tuple[str, int]], hive: bool = False
) -> pl.LazyFrame:
    """Lazily scan the given landing files (``(path, size)`` pairs) under their unified schema.

    Raises
    ------
    CorruptFileError, FileVanishedError
        If a file's footer cannot be read, or the file is gone.
    SchemaError
        If the files hold one column with incompatible types.
    """
    if not files:
        return pl.LazyFrame()
    schema = unify_schemas(file_schema(warehouse, path, size) for path, size in files)
    return pl.scan_parquet(
        [warehouse.uri(path) for path, _ in files],
        storage_options=warehouse.storage_options,
        hive_partitioning=hive,
        hive_schema=HIVE_SCHEMA if hive else None,
        schema=pl.DataFrame(schema.empty_table()).schema,
        missing_columns="insert",
        cast_options=_UPCAST,
    )


def read_landing(
    warehouse: Warehouse,
    model: str,
    columns: Sequence[str] | None = None,
    since_us: int | None = None,
    until_us: int | None = None,
    attempts: int = 5,
) -> pl.DataFrame:
    """Read a model's landing rows (optionally only ``columns``), each exactly once.

    Like :func:`scan_landing`, but eager and safe against compaction or retention running
    at the same time: if a listed file vanishes while it is read, the landing zone is listed
    again and the read repeated.

    Raises
    ------
    LandingError
        If files kept vanishing for ``attempts`` reads.
    """
    for attempt in range(1, attempts + 1):
        try:
            lazy = scan_landing(warehouse, model, since_us, until_us)
            if columns is not None and lazy.collect_schema().names():
                lazy = lazy.select(columns)
            return lazy.collect()
        except (FileNotFoundError, FileVanishedError) as exc:
            log.info("event=landing_reread attempt=%d reason=%s", attempt, exc)
    raise LandingError(
        f"landing files of model {model!r} vanished during each of {attempts} reads; "
        "compaction or retention keeps replacing them: retry later"
    )
