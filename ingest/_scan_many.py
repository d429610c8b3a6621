"""One Polars scan over many landing files: their rows, concatenated in file order, and each
file's row count.

A scan of many small files costs a fraction of the CPU of reading them one by one (one plan,
no Arrow-to-Polars conversion per file). It reads under a schema given up front and fails,
never guesses, when a file does not fit it: the readers fall back to reading file by file,
which names the file at fault (:mod:`ingest.reader`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import polars as pl
from polars.exceptions import PanicException

# Polars reads this much of an object's tail to find its footer: an object no larger is then
# read in one GET instead of a GET for the footer and one for the columns (an operator's own
# setting wins)
os.environ.setdefault("POLARS_CLOUD_FOOTER_READ_SIZE", str(1 << 20))

#: a column a file may lack, or hold narrower (float32, int32) or dictionary-encoded, reads
#: as the wider type or as strings
UPCAST = pl.ScanCastOptions(
    integer_cast="upcast", float_cast="upcast", categorical_to_string="allow"
)
#: what a failed scan may raise: any of these sends the caller to its file-by-file read
SCAN_FAILURES: tuple[type[BaseException], ...] = (Exception, PanicException)
_FILE = "__driftlake_source_file__"  # the scan's own column naming each row's file


class UnmatchedFiles(Exception):
    """The scan named its rows' files otherwise than it was given them."""


def file_schema(uri: str, storage_options: dict[str, str] | None) -> pl.Schema:
    """The Polars schema of one Parquet file (its footer only)."""
    return pl.scan_parquet(
        uri, storage_options=storage_options, hive_partitioning=False, glob=False
    ).collect_schema()


def target_schema(found: Sequence[pl.Schema], columns: Sequence[str]) -> pl.Schema:
    """The types to read ``columns`` as, from the schemas of some of the files: the type
    every file's fits in (as a file-by-file read concatenates them), floats as float64 and
    categoricals as strings; Null where no file holds a column.

    Raises
    ------
    polars.exceptions.PolarsError
        If the files' types of a column have no common type.
    """
    frames = []
    for schema in found:
        held = {c: schema[c] for c in columns if c in schema}
        frames.append(pl.DataFrame(schema={c: _as_read(t) for c, t in held.items()}))
    common = pl.concat(frames, how="diagonal_relaxed").schema if frames else pl.Schema()
    return pl.Schema({c: _as_read(common.get(c, pl.Null())) for c in columns})


def _as_read(dtype: pl.DataType) -> pl.DataType:
    if dtype.is_float():
        return pl.Float64()
    if isinstance(dtype, pl.Categorical | pl.Enum):
        return pl.String()
    return dtype


def scan_counted(
    uris: Sequence[str], schema: pl.Schema, storage_options: dict[str, str] | None
) -> tuple[pl.DataFrame, np.ndarray]:
    """Read ``schema``'s columns of every file of ``uris`` (distinct) in one scan.

    A column a file lacks is null; a file's column of a narrower numeric type widens, and a
    dictionary-encoded one reads as strings. Any other mismatch, and any unreadable or
    missing file, raises (one of :data:`SCAN_FAILURES`).

    Returns
    -------
    rows, counts
        The files' rows in ``uris`` order (``schema``'s columns, in its order), and each
        file's row count (int64, aligned with ``uris``).
    """
    frame = (
        pl.scan_parquet(
            list(uris),
            schema=schema,
            storage_options=storage_options,
            hive_partitioning=False,
            glob=False,
            missing_columns="insert",
            extra_columns="ignore",
            cast_options=UPCAST,
            include_file_paths=_FILE,
        )
        .select(*schema.names(), _FILE)
        .collect()
    )
    runs = frame.get_column(_FILE).rle()
    where = {uri: i for i, uri in enumerate(uris)}
    index = [where.get(v, -1) for v in runs.struct.field("value").to_list()]
    # each file once, in order (an empty file has no run): anything else is not these files
    if any(b <= a for a, b in zip([-1, *index], index, strict=False)):
        raise UnmatchedFiles(f"the scan's file names are not the ones given: {index[:5]}")
    counts = np.zeros(len(uris), np.int64)
    counts[index] = runs.struct.field("len").to_numpy()
    return frame.drop(_FILE), counts
