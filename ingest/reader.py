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
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ingest._scan_many import SCAN_FAILURES, UPCAST, scan_counted, target_schema
from ingest._scan_many import file_schema as _footer_schema
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
    "read_keys",
    "read_landing",
    "read_many",
    "read_many_keys",
    "read_rows",
    "scan_files",
    "scan_landing",
]

log = logging.getLogger("driftlake.ingest.reader")
KEY_COLUMNS = (TS, REQUEST_ID, REPLICA)
HIVE_SCHEMA = {"model": pl.String, "date": pl.Date, "hour": pl.Int32}
_T = TypeVar("_T")
# the key columns as every landing file holds them
_KEY_TYPES = pl.Schema({TS: pl.Datetime("us", "UTC"), REQUEST_ID: pl.String, REPLICA: pl.String})
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
        # a landing file is small: threads cost more CPU than they save
        table = pf.read(columns=[c for c in columns if c in names], use_threads=False)
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
    """Read the selected rows of several landing files (the key columns, then ``columns``)
    into one frame, in selection order; a file several selections name is read once.

    Files of different model versions may hold different columns or types: a column a file
    lacks is null for its rows, and numeric types widen (float32 to float64).

    Raises
    ------
    CorruptFileError
        If a file cannot be read.
    FileVanishedError
        If a file is gone.
    IndexError
        If a selection names a row its file does not have.
    """
    if not selections:
        return pl.DataFrame()
    cols = list(dict.fromkeys([*KEY_COLUMNS, *columns]))
    paths = list(dict.fromkeys(sel.path for sel in selections))
    rows, counts = read_many(warehouse, paths, cols)
    starts = np.cumsum(counts) - counts
    where = {path: i for i, path in enumerate(paths)}
    take = []
    for sel in selections:
        i = where[sel.path]
        at = np.asarray(sel.rows, np.int64)
        if at.size and (at.min() < 0 or at.max() >= counts[i]):
            raise IndexError(f"{sel.path} has {counts[i]} rows; a selection names {sel.rows}")
        take.append(starts[i] + at)
    return rows[np.concatenate(take)]


def read_many(
    warehouse: Warehouse, paths: Sequence[str], columns: Sequence[str]
) -> tuple[pl.DataFrame, np.ndarray]:
    """Read ``columns`` of every file of ``paths``, whole, into one frame, in ``paths``
    order, and say how many rows each file gave.

    Only ``columns`` are read, in that order; one a file lacks is null for its rows; floats
    read as float64, other numeric types widen to the widest of the files', and categorical
    (dictionary-encoded) columns read as strings. The files are read in one scan; if that
    fails they are read one by one, so an error names the file at fault.

    Returns
    -------
    rows, counts
        The rows, and each path's row count (int64, aligned with ``paths``; a path given
        twice is read twice).

    Raises
    ------
    CorruptFileError
        If a file cannot be read.
    FileVanishedError
        If a file is gone (list the landing zone again).
    """
    unique = list(dict.fromkeys(paths))
    if not unique:
        return pl.DataFrame(schema=dict.fromkeys(columns, pl.Null)), np.zeros(0, np.int64)
    scanned = _scanned(unique, lambda: _scan_many(warehouse, unique, columns))
    rows, counts = scanned or _read_each(warehouse, unique, columns)
    return _as_given(rows, counts, unique, paths)


def _scanned(
    paths: Sequence[str], scan: Callable[[], tuple[pl.DataFrame, np.ndarray]]
) -> tuple[pl.DataFrame, np.ndarray] | None:
    """What ``scan`` read of ``paths``, or None if they are to be read file by file: the
    scan failed (a file file by file names the one at fault), or there is one file (a
    scan's setup costs more than reading it)."""
    if len(paths) < 2:
        return None
    try:
        return scan()
    except SCAN_FAILURES as exc:
        log.debug("event=scan_fallback files=%d reason=%s", len(paths), exc)
        return None


def read_many_keys(
    warehouse: Warehouse, paths: Sequence[str]
) -> tuple[pl.DataFrame, list[CorruptFileError | FileVanishedError]]:
    """Read the planning keys of many landing files at once, and say which could not be read.

    Returns
    -------
    keys, failed
        The keys of the readable files, files in ``paths`` order, rows in file order:
        ``file`` (UInt32, the file's index in ``paths``), ``row`` (UInt32, the row's position
        in its file), ``ts`` (µs since epoch), ``request_id``, ``replica``. ``failed`` holds
        the error of each file not read, in ``paths`` order: CorruptFileError (the file
        cannot be read: quarantine it) or FileVanishedError (it is gone: list again); their
        ``path`` names the file.
    """
    unique = list(dict.fromkeys(paths))
    failed: list[CorruptFileError | FileVanishedError] = []
    scanned = _scanned(unique, lambda: _scan_many(warehouse, unique, KEY_COLUMNS, _KEY_TYPES))
    if scanned is not None:
        rows, counts = scanned
        rows = rows.with_columns(pl.col(TS).dt.epoch("us"))
    else:
        frames = []
        for got in _each(warehouse, unique, lambda p: read_file(warehouse, p, KEY_COLUMNS)):
            if isinstance(got, LandingError):
                failed.append(got)
            frames.append(_NO_KEYS if isinstance(got, LandingError) else _epoch_keys(got))
        counts = np.array([f.height for f in frames], np.int64)
        rows = pl.concat([_NO_KEYS, *frames])
    rows, counts = _as_given(rows, counts, unique, paths)
    starts = np.cumsum(counts) - counts
    keys = rows.select(
        pl.Series("file", np.repeat(np.arange(len(paths)), counts), pl.UInt32),
        pl.Series("row", np.arange(rows.height) - np.repeat(starts, counts), pl.UInt32),
        pl.col(TS).alias("ts"),
        pl.col(REQUEST_ID).alias("request_id"),
        pl.col(REPLICA).alias("replica"),
    )
    return keys, failed


_NO_KEYS = pl.DataFrame(schema={TS: pl.Int64, REQUEST_ID: pl.String, REPLICA: pl.String})


def _epoch_keys(table: pa.Table) -> pl.DataFrame:
    """One file's key columns (as :func:`read_file` gives them), ``ts`` in µs since epoch."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    ts = pl.col(TS)
    return frame.select(
        ts.cast(pl.Int64) if frame.schema[TS] == pl.Null else ts.dt.epoch("us"),
        pl.col(REQUEST_ID).cast(pl.String),
        pl.col(REPLICA).cast(pl.String),
    )


def _scan_many(
    warehouse: Warehouse,
    paths: Sequence[str],
    columns: Sequence[str],
    schema: pl.Schema | None = None,
) -> tuple[pl.DataFrame, np.ndarray]:
    """:func:`ingest._scan_many.scan_counted` of ``paths``, under ``schema`` or else the
    types the files give ``columns``."""
    if not paths:
        return pl.DataFrame(schema=schema or dict.fromkeys(columns, pl.Null)), np.zeros(0, np.int64)
    uris = [warehouse.uri(p) for p in paths]
    options = warehouse.storage_options
    if schema is not None:
        return scan_counted(uris, schema, options)
    # the types of the first file, or of as many as hold every column (the last first: a
    # newer model version's): the scan fails on a file whose column does not fit them
    found: dict[str, pl.Schema] = {}
    for uri in dict.fromkeys([uris[0], uris[-1], *uris[1:-1]]):
        found[uri] = _footer_schema(uri, options)
        schema = target_schema(list(found.values()), columns)
        if pl.Null not in schema.dtypes():
            break
    assert schema is not None
    rows, counts = scan_counted(uris, schema, options)
    # except on a file without rows: its types count only once seen in its footer
    empty = [uri for uri, n in zip(uris, counts, strict=True) if n == 0 and uri not in found]
    if empty:
        found.update((uri, _footer_schema(uri, options)) for uri in empty)
        wider = target_schema(list(found.values()), columns)
        if wider != schema:
            rows = rows.cast(dict(wider))
    return rows, counts


def _read_each(
    warehouse: Warehouse, paths: Sequence[str], columns: Sequence[str]
) -> tuple[pl.DataFrame, np.ndarray]:
    """:func:`read_many`, file by file (an object store's files several at a time)."""

    def load(path: str) -> pl.DataFrame:
        frame = pl.from_arrow(read_file(warehouse, path, columns))
        assert isinstance(frame, pl.DataFrame)
        return frame

    frames = []
    for got in _each(warehouse, paths, load):
        if isinstance(got, LandingError):
            raise got
        frames.append(got)
    counts = np.array([f.height for f in frames], np.int64)
    rows = pl.concat(frames, how="diagonal_relaxed")
    widen = [c for c, t in rows.schema.items() if t.is_float() and t != pl.Float64]
    return rows.with_columns(pl.col(widen).cast(pl.Float64)).select(columns), counts


def _as_given(
    rows: pl.DataFrame, counts: np.ndarray, unique: Sequence[str], paths: Sequence[str]
) -> tuple[pl.DataFrame, np.ndarray]:
    """The rows and counts of ``unique`` (``paths`` without repeats) as of ``paths``."""
    if len(unique) == len(paths):
        return rows, counts
    starts = np.cumsum(counts) - counts
    at = {path: i for i, path in enumerate(unique)}
    index = [at[p] for p in paths]
    take = [np.arange(starts[i], starts[i] + counts[i]) for i in index]
    return rows[np.concatenate([np.empty(0, np.int64), *take])], counts[index]


def _each(
    warehouse: Warehouse, paths: Sequence[str], read: Callable[[str], _T]
) -> list[_T | CorruptFileError | FileVanishedError]:
    """``read`` of each of ``paths`` (an object store's several at a time), or its error
    naming the file, in ``paths`` order."""

    def one(path: str) -> _T | CorruptFileError | FileVanishedError:
        try:
            return read(path)
        except (CorruptFileError, FileVanishedError) as exc:
            return exc

    if warehouse.is_local or len(paths) < 2:
        return [one(path) for path in paths]
    # a store's latency, not its bandwidth, bounds one reader: fetch files together
    with ThreadPoolExecutor(min(_FETCHES, len(paths))) as pool:
        return list(pool.map(one, paths))


_FETCHES = 8  # files a file-by-file read fetches from an object store at once


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
        cast_options=UPCAST,
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
