"""Reading the drift history: one row per window x feature, under ``drift/model=<m>/``."""

from __future__ import annotations

import polars as pl

from analytics.detect import HISTORY_SCHEMA
from ingest import Warehouse
from ingest.paths import DRIFT, drift_dir


def read_history(warehouse: Warehouse, model: str, root: str = DRIFT) -> pl.DataFrame:
    """Return a model's whole drift history sorted by ``(window_id, feature order)``.

    ``root`` selects a backfill's history (see :func:`ingest.paths.backfill_root`).
    """
    files = warehouse.list_files(drift_dir(model, root))
    if not files:
        return pl.DataFrame(schema=HISTORY_SCHEMA)
    frame = pl.read_parquet(
        [warehouse.uri(f.path) for f in files],
        hive_partitioning=False,
        storage_options=warehouse.storage_options,
    )
    return frame.with_row_index("_order").sort("window_id", "_order").drop("_order")
