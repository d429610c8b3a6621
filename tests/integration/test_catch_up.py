"""A driver facing a backlog of landing files plans it in bounded steps (``MAX_FILES_PER_CYCLE``,
``MAX_ROWS_PER_CYCLE``) and still ends with the history a one-shot backfill gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from analytics import AnalyticsSettings, DetectConfig, Driver, dask_client, read_history
from analytics.backfill import backfill
from analytics.profile import load_profile
from harness import MODEL, REFERENCE
from harness.landing import holdout_rows, write_landing
from ingest import Warehouse
from ingest.listing import list_landing
from ingest.paths import backfill_root

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

START = datetime(2026, 11, 20, 10, 40, tzinfo=UTC)
WINDOW = 60


def backlog(wh: Warehouse) -> int:
    """Three replicas over three hour partitions, files of 20, 30 and 25 rows whose time
    spans never line up, drift in the third replica: 1,140 rows, every window full."""
    write_landing(
        wh,
        holdout_rows(480, seed=1),
        replica="r1",
        start=START,
        step=timedelta(seconds=11),
        per_file=20,
    )
    write_landing(
        wh,
        holdout_rows(360, seed=2),
        replica="r2",
        start=START + timedelta(seconds=3),
        step=timedelta(seconds=14),
        per_file=30,
    )
    write_landing(
        wh,
        holdout_rows(300, seed=3, shift={"worst area": 1.0}),
        replica="r3",
        start=START + timedelta(seconds=7),
        step=timedelta(seconds=17.5),
        per_file=25,
    )
    return len(list_landing(wh, MODEL))


@pytest.mark.parametrize(("max_files", "max_rows"), [(5, 0), (0, 100)], ids=["5-files", "100-rows"])
def test_a_backlog_is_planned_in_bounded_steps_into_the_backfill_history(
    tmp_path, max_files, max_rows
):
    wh = Warehouse(tmp_path / "wh")
    files = backlog(wh)
    settings = AnalyticsSettings(
        warehouse=str(tmp_path / "wh"),
        reference_path=str(REFERENCE),
        window_size=WINDOW,
        max_files_per_cycle=max_files,
        max_rows_per_cycle=max_rows,
        seal_after=0,  # hours are sealed as soon as the watermark passes them
        n_workers=1,
        dashboard_address=None,
    )
    with dask_client(settings) as client:
        driver = Driver(settings, client)
        reports = []
        while len(reports) < 100:
            reports.append(driver.run_cycle())
            if not (reports[-1].windows or reports[-1].backlog):
                break
        config = DetectConfig.from_settings(settings)
        backfill(client, wh, load_profile(settings), config, window_size=WINDOW, name="all")

    if max_files:
        assert all(r.new_files <= max_files for r in reports)
    else:  # no file is read once the cycle holds max_rows rows; files hold at most 30
        assert all(r.new_rows < max_rows + 30 for r in reports)
    assert sum(r.new_files for r in reports) == files
    assert sum(r.backlog for r in reports) >= 8  # the backlog took many cycles
    assert driver.checkpoint.late_rows_total == 0  # no row was final before it was read
    live = read_history(wh, MODEL).drop("computed_at")
    assert live["window_id"].n_unique() == 1_140 // WINDOW
    assert live["dataset_drift"].any()
    assert live.equals(read_history(wh, MODEL, root=backfill_root("all")).drop("computed_at"))
