"""Backfill: recompute the drift history of a time range from the landing zone, on Dask.

A backfill cuts ALL rows of the range into windows exactly as the live job would (event-time
order, count-based, window ids from 0) and tests them in parallel, one task per window,
writing to its own history tree ``backfill/<name>/`` so the live history is never touched.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
from distributed import Client

from analytics.detect import BATCH_ROWS, DetectConfig, WindowSpec, run_windows
from analytics.profile import ReferenceProfile
from analytics.windows import KEY_SCHEMA, plan_windows
from ingest import CorruptFileError, FileVanishedError, LandingError, Warehouse, hold
from ingest.feed import file_keys
from ingest.listing import landing_listing
from ingest.paths import backfill_root, drift_dir

FILE_WINDOWS = 5_000
log = logging.getLogger("driftlake.analytics.backfill")
ATTEMPTS = 3


@dataclass(frozen=True)
class BackfillReport:
    """What a backfill did and where its history is.

    ``unreadable`` holds the landing paths it could not use: files that failed to read,
    and files of the range's hours that are not the project's (left for quarantine).
    """

    root: str
    files: int
    rows: int
    windows: int
    drifted_windows: int
    unreadable: tuple[str, ...]
    seconds: float


def _keys_of(warehouse: Warehouse, path: str) -> pl.DataFrame | None:
    try:
        return file_keys(warehouse, path)
    except CorruptFileError as exc:
        log.error("event=backfill_unreadable path=%s reason=%s", path, exc.reason)
        return None


def backfill(
    client: Client,
    warehouse: Warehouse,
    profile: ReferenceProfile,
    config: DetectConfig,
    *,
    window_size: int,
    name: str,
    start: datetime | None = None,
    end: datetime | None = None,
    batch_rows: int = BATCH_ROWS,
) -> BackfillReport:
    """Recompute the history of rows with ``start <= ts < end`` into ``backfill/<name>/``.

    Parameters
    ----------
    client
        Dask client; key reading and window tests both run on its workers.
    warehouse, profile, config
        As for the live job.
    window_size
        Rows per window (use the live job's to reproduce its history).
    name
        The backfill's name: its history lands under ``backfill/<name>/model=<m>/``.
    start, end
        Event-time range (UTC); None means unbounded.

    While it runs, the backfill holds a progress mark at ``start``, so compaction and
    retention leave its hours alone; should a file still vanish (a compaction that was
    already running), the backfill lists again and starts over: windows are rewritten, never
    duplicated.
    """
    started = time.perf_counter()
    model = profile.model
    root = backfill_root(name)
    since = None if start is None else int(start.astimezone(UTC).timestamp() * 1e6)
    with hold(warehouse, model, f"backfill-{name}", since or 0):
        warehouse.remove_tree(drift_dir(model, root))  # a rerun recomputes the whole range
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return _backfill_once(
                    client, warehouse, profile, config, window_size, batch_rows, root, since,
                    end, started,
                )  # fmt: skip
            except FileVanishedError as exc:
                log.warning("event=backfill_restart attempt=%d reason=%s", attempt, exc)
    raise LandingError(
        f"backfill {name}: landing files vanished during each of {ATTEMPTS} attempts; "
        "is retention deleting this range? Retry later"
    )


def _backfill_once(
    client: Client,
    warehouse: Warehouse,
    profile: ReferenceProfile,
    config: DetectConfig,
    window_size: int,
    batch_rows: int,
    root: str,
    since: int | None,
    end: datetime | None,
    started: float,
) -> BackfillReport:
    model = profile.model
    listing = landing_listing(warehouse, model, since_us=since)
    # a backfill reads, it does not maintain: rejected files are reported, the live job
    # (or compaction) quarantines them
    for r in listing.rejected:
        log.error("event=backfill_unreadable path=%s reason=%s", r.path, r.reason)
    files = [f.path for f in listing.files]
    # keys are read on the workers; the driver only sorts them to cut the windows
    parts = client.gather(client.map(_keys_of, [warehouse] * len(files), files, pure=False))
    unreadable = tuple(r.path for r in listing.rejected) + tuple(
        p for p, k in zip(files, parts, strict=True) if k is None
    )
    keys = [k.select(list(KEY_SCHEMA)) for k in parts if k is not None]
    frame = pl.concat(keys) if keys else pl.DataFrame(schema=KEY_SCHEMA)
    if since is not None:
        frame = frame.filter(pl.col("ts") >= since)
    if end is not None:
        frame = frame.filter(pl.col("ts") < int(end.astimezone(UTC).timestamp() * 1e6))
    plans, _ = plan_windows(frame, 2**62, window_size, 0, None)
    specs = [WindowSpec.from_plan(model, p, history_root=root) for p in plans]
    drifted = 0
    # a history file (and the verdicts the driver holds) per FILE_WINDOWS windows: a long
    # range's history never sits whole in this process
    for lo in range(0, len(specs), FILE_WINDOWS):
        part = specs[lo : lo + FILE_WINDOWS]
        results = run_windows(client, warehouse, part, profile, config, batch_rows)
        drifted += sum(r.dataset_drift for r in results)
    report = BackfillReport(
        root=root,
        files=len(files),
        rows=frame.height,
        windows=len(specs),
        drifted_windows=drifted,
        unreadable=unreadable,
        seconds=time.perf_counter() - started,
    )
    log.info(
        "event=backfill_done root=%s files=%d rows=%d windows=%d drifted=%d seconds=%.2f",
        root,
        report.files,
        report.rows,
        report.windows,
        report.drifted_windows,
        report.seconds,
    )
    return report
