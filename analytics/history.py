"""The drift history: one row per window x feature under ``drift/model=<m>/date=<d>/``, in
files named by the window ids they hold; reading it, and compacting its closed days."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import polars as pl

from analytics.detect import HISTORY_SCHEMA
from ingest import StoredFile, Warehouse
from ingest.paths import DRIFT, drift_dir, history_window_range

log = logging.getLogger("driftlake.analytics.history")


def read_history(warehouse: Warehouse, model: str, root: str = DRIFT) -> pl.DataFrame:
    """Return a model's whole drift history sorted by ``(window_id, feature order)``.

    ``root`` selects a backfill's history (see :func:`ingest.paths.backfill_root`).
    """
    files = current_files(warehouse.list_files(drift_dir(model, root)))
    if not files:
        return pl.DataFrame(schema=HISTORY_SCHEMA)
    frame = pl.read_parquet(
        [warehouse.uri(f.path) for f in files],
        hive_partitioning=False,
        storage_options=warehouse.storage_options,
    )
    return frame.with_row_index("_order").sort("window_id", "_order").drop("_order")


def current_files(files: list[StoredFile]) -> list[StoredFile]:
    """The history files that hold each window once: a file whose window ids another file
    covers is left out (compaction published the wider one and has not yet deleted it)."""
    named = sorted(
        ((r, f) for f in files if (r := history_window_range(f.path)) is not None),
        key=lambda item: (item[0][0], -item[0][1], item[1].path),
    )
    out, covered = [], -1
    for (_first, last), f in named:
        if last <= covered:
            continue
        out.append(f)
        covered = last
    return out


def compact_history(
    warehouse: Warehouse,
    model: str,
    committed_before: int,
    open_days: int = 1,
    now: datetime | None = None,
) -> int:
    """Rewrite each closed day of ``model``'s live history as one file; return the files
    it replaced.

    A day is closed ``open_days`` days after it ends. Only windows with ids below
    ``committed_before`` (the driver's checkpoint) are touched, so a rollback never has to
    split a compacted file. The new file covers the ids of those it replaces and is
    published before they are deleted, so :func:`read_history` reads each window once
    throughout; a plain glob may see a day twice in between.
    """
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    last_closed = f"date={today - timedelta(days=open_days + 1):%Y-%m-%d}"
    base = drift_dir(model)
    replaced = 0
    for day in warehouse.list_dirs(base):
        if not day.startswith("date=") or day > last_closed:
            continue
        listed = [
            f
            for f in warehouse.list_files(f"{base}/{day}")
            if (ids := history_window_range(f.path)) is not None and ids[1] < committed_before
        ]
        files = current_files(listed)
        # files a wider one covers: left by a compaction that died before deleting them
        covered = [f.path for f in listed if f not in files]
        if len(files) >= 2:
            frame = pl.read_parquet(
                [warehouse.uri(f.path) for f in files],
                hive_partitioning=False,
                storage_options=warehouse.storage_options,
            )
            frame = frame.with_row_index("_order").sort("window_id", "_order").drop("_order")
            first = history_window_range(files[0].path)[0]  # type: ignore[index]
            last = max(history_window_range(f.path)[1] for f in files)  # type: ignore[index]
            path = f"{base}/{day}/windows-{first:010d}-{last:010d}.parquet"
            warehouse.publish_table(frame.to_arrow(), path, compression="zstd")
            covered += [f.path for f in files if f.path != path]
            log.info("event=history_compacted model=%s day=%s files=%d", model, day, len(files))
        warehouse.delete_many(covered)
        replaced += len(covered)
    return replaced
