"""A Dask worker SIGKILLed mid-cycle: its tasks are retried and the history stays complete."""

from __future__ import annotations

import os
import signal
import threading
import time

import polars as pl
import pytest

from analytics import AnalyticsSettings, Driver, dask_client, load_checkpoint, read_history
from harness import MODEL, REFERENCE
from harness.landing import holdout_rows, write_landing
from ingest import Warehouse

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROWS, WINDOW = 6000, 50


def test_cycle_survives_a_killed_worker(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    write_landing(wh, holdout_rows(ROWS, seed=3), per_file=500)
    settings = AnalyticsSettings(
        warehouse=str(tmp_path / "wh"),
        reference_path=str(REFERENCE),
        window_size=WINDOW,
        batch_rows=500,  # 12 tasks: some done, some lost with the worker
        n_workers=2,
        dashboard_address=None,
    )
    with dask_client(settings) as client:
        pids = client.run(os.getpid)
        assert len(pids) == 2
        driver = Driver(settings, client)
        reports = []
        cycle = threading.Thread(
            target=lambda: reports.append(driver.run_cycle(now=time.time() + 3600))
        )
        cycle.start()
        deadline = time.monotonic() + 120
        while not (busy := [w for w, keys in client.processing().items() if keys]):
            assert time.monotonic() < deadline, "no window task ever started"
            time.sleep(0.01)
        victim = pids[busy[0]]
        assert cycle.is_alive()  # mid-cycle: a batch in flight on the victim
        os.kill(victim, signal.SIGKILL)
        cycle.join(timeout=240)
        assert not cycle.is_alive()
        assert victim not in client.run(os.getpid).values()  # it really died (and was replaced)

    (report,) = reports
    assert len(report.windows) == ROWS // WINDOW
    history = read_history(wh, MODEL)
    windows = history.group_by("window_id").agg(pl.col("rows").first()).sort("window_id")
    assert windows["window_id"].to_list() == list(range(ROWS // WINDOW))
    assert windows["rows"].sum() == ROWS
    assert load_checkpoint(wh, MODEL).rows_tested_total == ROWS
