"""Issue 21 end to end: a mixed-schema model served by a real server, its captured rows tested
by the analytics driver on a real Dask cluster, chi-squared rows in the history, and the drift
metric of a categorical feature in a real Prometheus through a real Pushgateway.

The rows are those of ``tests/integration/test_churn_drift.py`` (two clean windows of held-out
customers, then two with the device and country mix moved), sent as JSON with strings for the
categorical features instead of landed directly; its scipy oracle checks each chi2 row.
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
import pytest

from analytics import AnalyticsSettings, Driver, dask_client, read_history
from harness.procs import wait_until
from harness.prometheus import prometheus_running, pushgateway_running
from harness.servers import landing_frame, model_server, send_rows
from ingest import Warehouse
from serving import churn
from tests.integration.test_churn_drift import (
    CLEAN_WINDOWS,
    DRIFTED_WINDOWS,
    REFERENCE,
    SHIFTED,
    WINDOW,
    churn_rows,
    oracle,
    series_by_feature,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

BATCH = 20  # divides WINDOW: no request straddles a clean and a shifted window


def landed_ids(warehouse: Path) -> set[str]:
    frame = landing_frame(warehouse, churn.MODEL)
    return set(frame["request_id"]) if frame.height else set()


def test_served_mixed_rows_are_flagged_by_chi_squared_in_history_and_prometheus(tmp_path):
    rows = churn_rows()
    features = rows.drop(churn.LABEL)
    assert features.schema["device"] == pl.String  # sent as JSON strings
    wh = tmp_path / "wh"
    env = {"label": churn.LABEL, "model_name": churn.MODEL, "flush_interval": 0.2}
    with model_server(wh, replica="churn-1", reference=REFERENCE, **env) as server:
        # sequential requests: event time orders every clean row before every shifted one
        sent = send_rows(server.url, features, batch_rows=BATCH)
        assert sent.rows == rows.height
        wanted = set(sent.request_ids)
        # landed by the flush interval, while the server still runs
        wait_until(lambda: wanted <= landed_ids(wh), timeout=15)
        assert server.stop() == 0
    assert "Traceback" not in server.logs()

    with (
        pushgateway_running(tmp_path) as gw,
        prometheus_running(tmp_path / "prom", {"pushgateway": [f"127.0.0.1:{gw.port}"]}) as prom,
    ):
        settings = AnalyticsSettings(
            warehouse=str(wh),
            reference_path=str(REFERENCE),
            model_name=churn.MODEL,
            label=churn.LABEL,
            window_size=WINDOW,
            n_workers=1,
            dashboard_address=None,
            pushgateway=gw.url,
        )
        with dask_client(settings) as client:
            report = Driver(settings, client).run_cycle(now=time.time() + 3600)
        assert report.pushed is True
        assert len(report.windows) == CLEAN_WINDOWS + DRIFTED_WINDOWS

        # history: chi2 rows of the categorical features, equal to scipy on what was sent,
        # flagged for the shifted features in the shifted windows only
        history = read_history(Warehouse(wh), churn.MODEL)
        reference = pl.read_parquet(REFERENCE)
        for w in range(CLEAN_WINDOWS + DRIFTED_WINDOWS):
            at = history.filter(pl.col("window_id") == w)
            chi2 = at.filter(pl.col("test") == "chi2")
            assert sorted(chi2["feature"]) == sorted(churn.CATEGORICAL), w
            flagged = set(chi2.filter(pl.col("drifted"))["feature"])
            assert flagged == (SHIFTED if w >= CLEAN_WINDOWS else set()), (w, flagged)
            numeric = at.filter(pl.col("feature").is_in(churn.NUMERIC))
            assert set(numeric["test"]) == {"ks"} and not numeric["drifted"].any(), w
            window = rows.slice(w * WINDOW, WINDOW)
            for r in chi2.iter_rows(named=True):
                statistic, pvalue = oracle(reference[r["feature"]], window[r["feature"]])
                assert r["statistic"] == pytest.approx(statistic, rel=1e-12), (w, r["feature"])
                assert r["p_value"] == pytest.approx(pvalue, rel=1e-9, abs=1e-300), (w, r)
        last = history.filter(pl.col("window_id") == CLEAN_WINDOWS + DRIFTED_WINDOWS - 1)
        by_feature = {r["feature"]: r for r in last.iter_rows(named=True)}
        assert by_feature["country"]["unseen_categories"] == ["MX"]

        # Prometheus: the last window's chi2 p-values and flags, labelled test="chi2"
        chi2_series = f'model="{churn.MODEL}", test="chi2"'
        p_values = series_by_feature(
            prom.wait_for(
                f"driftlake_feature_p_value{{{chi2_series}}}",
                lambda r: len(r) == len(churn.CATEGORICAL),
            )
        )
        for feature in churn.CATEGORICAL:
            expected = by_feature[feature]["p_value"]
            assert p_values[feature, "chi2"] == pytest.approx(expected, rel=1e-12), feature
        flags = series_by_feature(prom.query(f"driftlake_feature_drift{{{chi2_series}}}"))
        assert {f for (f, _), v in flags.items() if v == 1} == SHIFTED
        assert flags["device", "chi2"] == 1 and flags["plan", "chi2"] == 0
