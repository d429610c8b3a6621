"""Backfill reproduces, in parallel on Dask, exactly the history the live job produced."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

import analytics.backfill as backfill_module
from analytics import AnalyticsSettings, DetectConfig, Driver, dask_client, read_history
from analytics.backfill import backfill
from analytics.profile import load_profile
from harness import MODEL, REFERENCE, ROOT
from harness.landing import holdout_rows, write_landing
from ingest import Warehouse
from ingest.paths import backfill_root, drift_dir

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

START = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)


def test_backfill_equals_the_live_history_and_respects_the_range(tmp_path, monkeypatch, caplog):
    wh = Warehouse(tmp_path / "wh")
    # 1,200 rows over 2 hours from two replicas (files of 40 and 70 rows), drift in the
    # second half
    step = timedelta(seconds=12)
    write_landing(wh, holdout_rows(600, seed=4), replica="r1", start=START, step=step, per_file=40)
    shifted = holdout_rows(600, seed=5, shift={"worst area": 1.0})
    write_landing(wh, shifted, replica="r2", start=START + step / 2, step=step, per_file=70)
    settings = AnalyticsSettings(
        warehouse=str(tmp_path / "wh"),
        reference_path=str(REFERENCE),
        window_size=100,
        n_workers=2,
        dashboard_address=None,
    )
    with dask_client(settings) as client:
        Driver(settings, client).run_cycle(now=time.time())
        live = read_history(wh, MODEL).drop("computed_at")
        assert live["window_id"].n_unique() == 12
        # a long range is written a file per FILE_WINDOWS windows, and planned a group of
        # landing files at a time (a file a group here): the same history
        monkeypatch.setattr(backfill_module, "FILE_WINDOWS", 5)
        monkeypatch.setattr(backfill_module, "GROUP_BYTES", 1)
        config = DetectConfig.from_settings(settings)
        with caplog.at_level(logging.WARNING, logger="driftlake.analytics.backfill"):
            backfill(client, wh, load_profile(settings), config, window_size=100, name="parts")
    assert "backfill_ungrouped" not in caplog.text  # planned a group at a time throughout
    parts = read_history(wh, MODEL, root=backfill_root("parts")).drop("computed_at")
    assert parts.equals(live)
    assert len(wh.list_files(drift_dir(MODEL, backfill_root("parts")))) == 3  # 5 + 5 + 2

    env = {
        **os.environ,
        "DRIFTLAKE_WAREHOUSE": str(tmp_path / "wh"),
        "DRIFTLAKE_REFERENCE_PATH": str(REFERENCE),
        "DRIFTLAKE_WINDOW_SIZE": "100",
        "DRIFTLAKE_N_WORKERS": "2",
        "DRIFTLAKE_DASHBOARD_ADDRESS": "",
    }

    def run(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "analytics", "backfill", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    assert "12 windows" in run("--name", "all")
    full = read_history(wh, MODEL, root=backfill_root("all")).drop("computed_at")
    assert full.equals(live)

    # a range: only rows with START+1h <= ts < START+2h, windows cut from the range's start
    lo, hi = START + timedelta(hours=1), START + timedelta(hours=2)
    run("--name", "hour", "--start", lo.isoformat(), "--end", hi.isoformat())
    part = read_history(wh, MODEL, root=backfill_root("hour"))
    windows = part.group_by("window_id").agg(pl.col("window_start", "window_end").first())
    assert windows.height == 6  # 600 rows in that hour, 100 per window
    assert windows["window_start"].min() >= lo and windows["window_end"].max() < hi

    bad = subprocess.run(
        [sys.executable, "-m", "analytics", "backfill", "--start", "yesterday"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "expected an ISO time" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_files_planned_a_group_at_a_time_and_a_file_out_of_its_hour(tmp_path, monkeypatch, caplog):
    wh = Warehouse(tmp_path / "wh")
    # 150 rows at 10:30-11:00, 300 at 11:00-12:00, 150 after: windows span the hours
    write_landing(wh, holdout_rows(600, seed=4), start=START, step=timedelta(seconds=12))
    settings = AnalyticsSettings(
        warehouse=str(tmp_path / "wh"),
        reference_path=str(REFERENCE),
        window_size=100,
        n_workers=1,
        dashboard_address=None,
    )
    monkeypatch.setattr(backfill_module, "GROUP_BYTES", 1)  # a file a group
    with dask_client(settings) as client:
        Driver(settings, client).run_cycle(now=time.time())  # all rows in one pass
        live = read_history(wh, MODEL).drop("computed_at")
        config = DetectConfig.from_settings(settings)
        with caplog.at_level(logging.WARNING, logger="driftlake.analytics.backfill"):
            backfill(client, wh, load_profile(settings), config, window_size=100, name="hours")
            assert "backfill_ungrouped" not in caplog.text
            # a file that is not a capture writer's: rows of 10:30 in the 11:00 partition
            # (the hour's first file, by publication order: its last file's rows would follow
            # the hour's other rows, in order wherever it lands)
            first = min(
                (p for p in (tmp_path / "wh").rglob("*.parquet") if "hour=10" in str(p)),
                key=lambda p: p.name,
            )
            first.rename(first.parent.parent / "hour=11" / first.name)
            report = backfill(client, wh, load_profile(settings), config, window_size=100, name="b")
            assert "backfill_ungrouped" in caplog.text  # found out, planned in one pass
    assert live["window_id"].n_unique() == report.windows == 6
    for name in ("hours", "b"):
        assert read_history(wh, MODEL, root=backfill_root(name)).drop("computed_at").equals(live)
