"""Time-based windows (``DRIFTLAKE_WINDOW_SECONDS``) through the real driver and Dask."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from analytics import AnalyticsSettings, Driver, dask_client, read_history
from harness import MODEL, REFERENCE
from harness.landing import holdout_rows, write_landing
from ingest import Warehouse

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_one_window_per_minute_of_event_time_and_late_rows_join_the_next(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    # recent enough that its hour partitions are not sealed yet (late files are still read)
    start = (datetime.now(UTC) - timedelta(minutes=30)).replace(second=0, microsecond=0)
    # 5 minutes of rows, 2 per second
    write_landing(wh, holdout_rows(600, seed=6), start=start, step=timedelta(milliseconds=500))
    settings = AnalyticsSettings(
        warehouse=str(tmp_path / "wh"),
        reference_path=str(REFERENCE),
        window_seconds=60,
        n_workers=1,
        dashboard_address=None,
    )
    with dask_client(settings) as client:
        driver = Driver(settings, client)
        report = driver.run_cycle(now=time.time())
        assert [w.spec.rows for w in report.windows] == [120] * 5
        # a replica that was partitioned away publishes rows of minute 2, then minute 6 arrives
        write_landing(
            wh, holdout_rows(10, seed=7), replica="late", start=start + timedelta(minutes=2)
        )
        write_landing(wh, holdout_rows(60, seed=8), start=start + timedelta(minutes=6))
        report = driver.run_cycle(now=time.time())
    (window,) = report.windows
    assert (window.spec.rows, window.spec.late_rows) == (70, 10)
    history = (
        read_history(wh, MODEL)
        .group_by("window_id")
        .agg(pl.col("window_start", "rows", "late_rows").first())
    )
    assert history.sort("window_id")["late_rows"].to_list() == [0, 0, 0, 0, 0, 10]
