"""The whole pipeline: two real model servers -> one landing zone -> Dask KS -> history."""

from __future__ import annotations

import time

import numpy as np
import polars as pl
import pytest
from scipy.stats import ks_2samp

from analytics import AnalyticsSettings, Driver, dask_client, load_checkpoint, read_history
from harness import REFERENCE
from harness.procs import free_port
from harness.servers import model_server, send_rows
from ingest import PREDICTION, Warehouse
from ingest.reader import scan_landing
from serving.dataset import LABEL, split_breast_cancer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

WINDOW = 100
ROWS = 650


def test_two_replicas_one_landing_zone_every_row_tested_once_stats_equal_scipy(tmp_path):
    wh_dir = tmp_path / "wh"
    reference, holdout = split_breast_cancer()
    columns = [c for c in holdout.columns if c != LABEL]
    rng = np.random.default_rng(7)
    frame = holdout.select(columns)[rng.integers(0, holdout.height, ROWS)]

    accepted: list[str] = []
    with (
        model_server(wh_dir, free_port(), "replica-a") as a,
        model_server(wh_dir, free_port(), "replica-b") as b,
    ):
        i, k = 0, 0
        while i < ROWS:
            n = min(1 + k % 4, ROWS - i)  # single rows and small batches, alternating servers
            accepted += send_rows((a, b)[k % 2].url, frame.slice(i, n), batch_rows=n).request_ids
            i, k = i + n, k + 1
    # both servers got SIGTERM and flushed: the landing zone holds every accepted row
    wh = Warehouse(wh_dir)
    landed = scan_landing(wh, "breast_cancer").collect().sort("ts", "request_id")
    assert sorted(landed["request_id"]) == sorted(accepted)
    assert set(landed["replica"]) == {"replica-a", "replica-b"}

    settings = AnalyticsSettings(
        warehouse=str(wh_dir),
        reference_path=str(REFERENCE),
        window_size=WINDOW,
        n_workers=2,
        dashboard_address=None,
    )
    with dask_client(settings) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        driver = Driver(settings, client)
        report = driver.run_cycle(now=time.time() + 3600)  # past max lateness: all final
        assert len(report.windows) == ROWS // WINDOW
        assert driver.run_cycle(now=time.time() + 3600).windows == ()  # nothing twice

    history = read_history(wh, "breast_cancer")
    windows = history.group_by("window_id", maintain_order=True).first()
    assert windows["window_id"].to_list() == list(range(ROWS // WINDOW))
    assert (windows["rows"] == WINDOW).all()
    assert (windows["replicas"] == 2).all()
    cp = load_checkpoint(wh, "breast_cancer")
    assert cp.rows_tested_total == ROWS // WINDOW * WINDOW
    assert cp.pending.height == ROWS % WINDOW

    # every accepted row is in exactly one window: windows are the event-time order, cut
    tested = landed.head(ROWS // WINDOW * WINDOW)
    assert set(tested["request_id"]).isdisjoint(cp.pending["request_id"])
    assert sorted([*tested["request_id"], *cp.pending["request_id"]]) == sorted(accepted)
    ref = reference.with_columns(pl.col(LABEL).cast(pl.Float64).alias(PREDICTION))
    for w in windows.iter_rows(named=True):
        rows = tested.slice(w["window_id"] * WINDOW, WINDOW)
        assert rows["request_id"][0] == w["first_request_id"]
        assert rows["request_id"][-1] == w["last_request_id"]
        assert set(rows["replica"]) == {"replica-a", "replica-b"}
        feats = history.filter(pl.col("window_id") == w["window_id"])
        assert feats["feature"].to_list() == [*columns, PREDICTION]
        for f in feats.iter_rows(named=True):
            expected = ks_2samp(ref[f["feature"]].to_numpy(), rows[f["feature"]].to_numpy())
            assert f["statistic"] == expected.statistic
            assert abs(f["p_value"] - expected.pvalue) <= 1e-12
