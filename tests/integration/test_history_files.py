"""The live job writes at most one history file per cycle, and closed days compact into one
file each without any reader seeing a window twice or missing one."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from analytics import AnalyticsSettings, Driver, read_history
from analytics.history import compact_history
from harness import MODEL, REFERENCE
from harness.landing import holdout_rows, write_landing
from ingest import Warehouse
from ingest.paths import drift_dir

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_one_history_file_per_cycle_and_one_per_closed_day(tmp_path, dask_cluster):
    wh = Warehouse(tmp_path / "wh")
    # 1,600 rows from 23:00 three days ago over ~1.8 hours: windows end on two closed dates
    start = (datetime.now(UTC) - timedelta(days=3)).replace(hour=23, minute=0, second=0)
    write_landing(wh, holdout_rows(1600, seed=7), start=start, step=timedelta(seconds=4))
    settings = AnalyticsSettings(
        warehouse=wh.url,
        reference_path=str(REFERENCE),
        window_size=100,
        max_windows_per_cycle=3,
        batch_rows=100,  # several tasks per cycle, still one file
        dashboard_address=None,
    )
    driver = Driver(settings, dask_cluster)
    files, cycles = [], 0
    while driver.run_cycle(now=time.time()).windows:
        cycles += 1
        files.append(len(wh.list_files(drift_dir(MODEL))))
    assert cycles == 6  # 16 windows, 3 a cycle
    assert files == list(range(1, cycles + 1))  # one file per cycle
    before = read_history(wh, MODEL)
    assert before["window_id"].to_list() == sorted(before["window_id"].to_list())
    assert before["window_id"].unique().to_list() == list(range(16))

    replaced = compact_history(wh, MODEL, committed_before=driver.checkpoint.next_window_id)
    after_files = wh.list_files(drift_dir(MODEL))
    days = {f.path.split("/")[2] for f in after_files}
    assert len(days) == 2 and len(after_files) == 2  # one file per closed day
    assert replaced == cycles  # every cycle file was replaced by its day's file
    assert read_history(wh, MODEL).equals(before)

    # a compaction that died between publishing and deleting leaves covered files behind:
    # readers still see each window once, and the next run removes them
    day_file = after_files[0]
    stale = day_file.path.rsplit("/", 1)[0]
    part = before.filter(before["window_id"] <= 1)
    wh.publish_table(part.to_arrow(), f"{stale}/windows-0000000000-0000000001.parquet")
    assert read_history(wh, MODEL).equals(before)
    compact_history(wh, MODEL, committed_before=driver.checkpoint.next_window_id)
    assert len(wh.list_files(drift_dir(MODEL))) == 2
    assert read_history(wh, MODEL).equals(before)
