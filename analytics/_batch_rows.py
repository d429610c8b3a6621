"""The rows of a batch of windows, read once per landing file, in window order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from analytics.columns import numeric_matrix
from ingest import Warehouse
from ingest.reader import read_many

if TYPE_CHECKING:
    from analytics.detect import WindowSpec


def read_batch(
    warehouse: Warehouse,
    specs: Sequence[WindowSpec],
    numeric: Sequence[str],
    other: Sequence[str],
) -> tuple[np.ndarray | None, pl.DataFrame | None]:
    """Read the rows of ``specs``' windows: the window of ``specs[0]`` first, each in its
    spec's row order.

    Every landing file the windows name is read once, whole (only the given columns), all in
    one scan; the rows are then taken from all of them at once.

    Returns
    -------
    numeric, other
        float64 ``[rows, len(numeric)]`` of the ``numeric`` columns (NaN for null), and a
        frame of the ``other`` columns; None where no column is asked for.

    Raises
    ------
    CorruptFileError, FileVanishedError
        If a landing file cannot be read, or is gone.
    """
    paths = list(dict.fromkeys(path for spec in specs for path in spec.files))
    rows, counts = read_many(warehouse, paths, [*numeric, *other])
    where = {path: i for i, path in enumerate(paths)}
    starts = np.cumsum(counts) - counts
    take = np.concatenate(
        [np.empty(0, np.int64)]
        + [
            starts[[where[p] for p in spec.files]][spec.file_index] + spec.row_index
            for spec in specs
        ]
    )
    matrix = numeric_matrix(rows, numeric)[take] if numeric else None
    frame = rows.select(other)[take] if other else None
    return matrix, frame
