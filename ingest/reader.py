"""Readers of the landing zone: file listings, row keys for planning, window rows, and scans.

Every reader here sees each landing row exactly once, also while compaction rewrites an hour:
listings drop the files a published compaction group supersedes (:mod:`ingest.manifest`), a
file that vanished between listing and reading raises :class:`FileVanishedError` (list again),
files of different model versions are read under one unified schema, and files that are not
the project's, or compacted parts that cannot be read, are never listed (the analytics driver
and compaction quarantine them).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ingest import paths
from ingest.errors import CorruptFileError, FileVanishedError, LandingError
from ingest.manifest import RejectedFile, view_partition
from ingest.schema import REPLICA, REQUEST_ID, TS, unify_schemas
from ingest.storage import Warehouse

log = logging.getLogger("driftlake.ingest.reader")
KEY_COLUMNS = (TS, REQUEST_ID, REPLICA)
HIVE_SCHEMA = {"model": pl.String, "date": pl.Date, "hour": pl.Int32}
_UPCAST = pl.ScanCastOptions(
    integer_cast="upcast", float_cast="upcast", categorical_to_string="allow"
)
_DATE_DIR = re.compile(r"date=\d{4}-\d{2}-\d{2}")
_HOUR_DIR = re.compile(r"hour=(?:[01]\d|2[0-3])")
_schemas: dict[tuple[str, int], pa.Schema] = {}
_schemas_lock = threading.Lock()


@dataclass(frozen=True)
class LandingFile:
    """One published landing file of a model (``replica`` is None for a compacted file)."""

    path: str
    replica: str | None
    size: int


@dataclass(frozen=True)
class RowSelection:
    """Rows of one landing file, by position, that belong to one window."""

    path: str
    rows: tuple[int, ...]


@dataclass(frozen=True)
class LandingListing:
    """A model's landing files as listed once: the visible files, and the files no reader
    reads (foreign names, unreadable compacted parts), each with the reason."""

    files: tuple[LandingFile, ...]
    rejected: tuple[RejectedFile, ...]


def list_landing(
    warehouse: Warehouse,
    model: str,
    since_us: int | None = None,
    until_us: int | None = None,
) -> list[LandingFile]:
    """List a model's visible landing files, sorted by path.

    A file a complete compaction group supersedes is not listed (the group is), so reading
    every listed file gives each row once. With ``since_us``, partitions of hours that ended
    at or before it are not even listed, so a long-running job does not walk weeks of history
    every cycle; with ``until_us``, hours starting at or after it are skipped. Files that are
    not the project's, or compacted parts that cannot be read, are never listed (see
    :func:`landing_listing`).
    """
    return list(landing_listing(warehouse, model, since_us, until_us).files)


def landing_listing(
    warehouse: Warehouse,
    model: str,
    since_us: int | None = None,
    until_us: int | None = None,
) -> LandingListing:
    """List a model's visible landing files, and the files of its hour partitions that
    nobody reads, with the reason (for whoever quarantines them).

    Rejected are files whose name fits neither
    ``<replica>-<12-digit seq>-<8 hex>.parquet`` nor
    ``compacted-<12 hex>-<4 digits>of<4 digits>.parquet``, files in subdirectories of an
    hour, and compacted parts whose compaction record cannot be read. Arguments as for
    :func:`list_landing`.
    """
    files, rejected = [], []
    for partition in landing_partitions(warehouse, model, since_us, until_us):
        view = view_partition(warehouse, partition)
        rejected += view.rejected
        for f in view.visible:
            parsed = paths.parse_landing_path(f.path.removeprefix(paths.LANDING + "/"))
            files.append(LandingFile(f.path, parsed.replica if parsed else None, f.size))
    return LandingListing(tuple(files), tuple(rejected))


def landing_partitions(
    warehouse: Warehouse, model: str, since_us: int | None = None, until_us: int | None = None
) -> list[str]:
    """List a model's hour partitions (relative dirs), oldest first, optionally in a range."""

    def key(us: int) -> str:
        return datetime.fromtimestamp(us / 1e6, tz=UTC).strftime("%Y-%m-%d/%H")

    since = None if since_us is None else key(since_us)
    until = None if until_us is None else key(until_us)
    base = paths.model_landing_dir(model)
    out = []
    # only date=YYYY-MM-DD/hour=HH directories hold landing files; others are not walked
    for date_dir in warehouse.list_dirs(base):
        if _DATE_DIR.fullmatch(date_dir) is None:
            continue
        day = date_dir.removeprefix("date=")
        if (since is not None and day < since[:10]) or (until is not None and day > until[:10]):
            continue
        for hour_dir in warehouse.list_dirs(f"{base}/{date_dir}"):
            if _HOUR_DIR.fullmatch(hour_dir) is None:
                continue
            hour = f"{day}/{hour_dir.removeprefix('hour=')}"
            if (since is not None and hour < since) or (until is not None and hour >= until):
                continue
            out.append(f"{base}/{date_dir}/{hour_dir}")
    return out


def _open(warehouse: Warehouse, path: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(warehouse.uri(path))
    except FileNotFoundError as exc:
        raise FileVanishedError(path) from exc
    except (OSError, pa.ArrowException) as exc:
        raise CorruptFileError(path, str(exc)) from exc


def read_file(warehouse: Warehouse, path: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Read one landing file (only ``columns`` if given; one this file lacks is null).

    Raises
    ------
    CorruptFileError
        If the file cannot be read.
    FileVanishedError
        If the file is gone (list the landing zone again).
    """
    pf = _open(warehouse, path)
    try:
        names = pf.schema_arrow.names
        columns = names if columns is None else columns
        table = pf.read(columns=[c for c in columns if c in names])
    except FileNotFoundError as exc:
        raise FileVanishedError(path) from exc
    except (OSError, pa.ArrowException) as exc:
        raise CorruptFileError(path, str(exc)) from exc
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
    """Read the selected rows of several landing files (only ``columns``) into one frame.

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
    frames = []
    for sel in selections:
        frame = pl.from_arrow(read_file(warehouse, sel.path, cols))
        assert isinstance(frame, pl.DataFrame)
        frames.append(frame[list(sel.rows)])
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames, how="diagonal_relaxed")


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


def landing_files(
    warehouse: Warehouse,
    model: str,
    since_us: int | None = None,
    until_us: int | None = None,
) -> list[str]:
    """Return the absolute paths of a model's visible landing files.

    Give this list (not a glob) to DuckDB's ``read_parquet([...], union_by_name=true,
    hive_partitioning=true)`` or to any Parquet reader: a glob can briefly see an hour twice
    while a compaction publishes its group and has not yet deleted the files it replaces.
    """
    return [warehouse.uri(f.path) for f in list_landing(warehouse, model, since_us, until_us)]


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
