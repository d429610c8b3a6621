"""Categorical drift end to end: churn landing rows with a shifted category mix, tested by the
analytics driver on a real Dask cluster, in the history, a real Pushgateway and Prometheus,
and the shipped dashboard's drift queries.

Oracle: ``scipy.stats.chi2_contingency(table, correction=False)`` on the 2 x K table of the
reference's and the window's category counts (nulls dropped, one column per category seen in
either sample). Tolerance: statistic within 1e-12 relative, p-value within 1e-9 relative
(1e-300 absolute, for p-values that underflow).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from scipy.stats import chi2_contingency

from analytics import AnalyticsSettings, Driver, dask_client, read_history
from harness import ROOT
from harness.dashboard import DASHBOARD, dashboard_queries, evaluate, has_data
from harness.landing import land, landing_batch
from harness.prometheus import prometheus_running, pushgateway_running
from ingest import Warehouse
from ingest.reference import load_reference
from serving import churn

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REFERENCE = ROOT / churn.REFERENCE_FILE
WINDOW = 200
CLEAN_WINDOWS, DRIFTED_WINDOWS = 2, 2
SHIFTED = set(churn.DRIFT_MIX)  # device and country


def churn_rows() -> pl.DataFrame:
    """Held-out customers: two clean windows, then two whose device and country mix moved."""
    _, holdout = churn.split_churn()
    clean = holdout.head(CLEAN_WINDOWS * WINDOW)
    moved = churn.shift_mix(holdout.slice(clean.height, DRIFTED_WINDOWS * WINDOW), seed=1)
    return pl.concat([clean, moved])


def land_rows(wh: Warehouse, rows: pl.DataFrame) -> None:
    schema = load_reference(REFERENCE, churn.MODEL, label=churn.LABEL).schema
    features = {
        f.name: rows[f.name].to_list()
        if f.kind == "categorical"
        else rows[f.name].cast(pl.Float64).to_numpy()
        for f in schema.features
    }
    start = datetime.now(UTC) - timedelta(minutes=5)
    # the model predicts the label it was trained on: no prediction drift
    prediction = rows[churn.LABEL].cast(pl.Float64).to_numpy()
    land(wh, schema, landing_batch(schema, features, start=start, prediction=prediction))


def oracle(reference: pl.Series, window: pl.Series) -> tuple[float, float]:
    ref = Counter(reference.drop_nulls().to_list())
    win = Counter(window.drop_nulls().to_list())
    cats = sorted(set(ref) | set(win))
    result = chi2_contingency(np.array([[ref[c] for c in cats], [win[c] for c in cats]]), False)
    return float(result.statistic), float(result.pvalue)


def series_by_feature(result: list[dict]) -> dict[tuple[str, str], float]:
    return {(s["metric"]["feature"], s["metric"]["test"]): float(s["value"][1]) for s in result}


def test_shifted_category_mix_is_flagged_by_chi_squared_in_history_prometheus_and_dashboard(
    tmp_path,
):
    rows = churn_rows()
    wh = Warehouse(tmp_path / "wh")
    land_rows(wh, rows)
    with (
        pushgateway_running(tmp_path) as gw,
        prometheus_running(tmp_path / "prom", {"pushgateway": [f"127.0.0.1:{gw.port}"]}) as prom,
    ):
        started = time.time()
        settings = AnalyticsSettings(
            warehouse=str(tmp_path / "wh"),
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

        # history: a chi2 row per categorical feature and window, equal to scipy's
        history = read_history(wh, churn.MODEL)
        tests = dict(history.select("feature", "test").unique().iter_rows())
        assert tests == {
            **dict.fromkeys(churn.NUMERIC, "ks"),
            **dict.fromkeys(churn.CATEGORICAL, "chi2"),
            "prediction": "ks",
        }
        reference = pl.read_parquet(REFERENCE)
        for w in range(CLEAN_WINDOWS + DRIFTED_WINDOWS):
            window = rows.slice(w * WINDOW, WINDOW)
            at = history.filter(pl.col("window_id") == w)
            drifted = set(at.filter(pl.col("drifted"))["feature"])
            assert drifted == (SHIFTED if w >= CLEAN_WINDOWS else set()), (w, drifted)
            for r in at.filter(pl.col("test") == "chi2").iter_rows(named=True):
                name = r["feature"]
                statistic, pvalue = oracle(reference[name], window[name])
                assert r["statistic"] == pytest.approx(statistic, rel=1e-12), (w, name)
                assert r["p_value"] == pytest.approx(pvalue, rel=1e-9, abs=1e-300), (w, name)
                assert r["n_tested"] == window[name].drop_nulls().len()
                new = sorted(set(window[name].drop_nulls()) - set(reference[name].drop_nulls()))
                assert r["unseen_categories"] == new
                assert r["out_of_range_share"] == pytest.approx(
                    window[name].is_in(new).sum() / WINDOW
                )
                assert r["null_share"] == pytest.approx(window[name].null_count() / WINDOW)
        last = history.filter(pl.col("window_id") == CLEAN_WINDOWS + DRIFTED_WINDOWS - 1)
        by_feature = {r["feature"]: r for r in last.iter_rows(named=True)}
        assert by_feature["country"]["unseen_categories"] == ["MX"]
        assert by_feature["device"]["p_value"] < 1e-10
        assert by_feature["payment_method"]["null_share"] > 0  # nulls are not a category

        # Prometheus, through the Pushgateway: the last window, with the test as a label
        m = f'model="{churn.MODEL}"'
        p_values = series_by_feature(
            prom.wait_for(f"driftlake_feature_p_value{{{m}}}", lambda r: len(r) == 9)
        )
        for feature, r in by_feature.items():
            assert p_values[feature, r["test"]] == pytest.approx(r["p_value"], rel=1e-12)
        flags = series_by_feature(prom.query(f"driftlake_feature_drift{{{m}}}"))
        assert {f for (f, _), v in flags.items() if v == 1} == SHIFTED
        outside = series_by_feature(prom.query(f"driftlake_feature_out_of_range_share{{{m}}}"))
        assert outside["country", "chi2"] == pytest.approx(
            by_feature["country"]["out_of_range_share"]
        )
        statistic = series_by_feature(
            prom.query(f'driftlake_feature_statistic{{{m}, test="chi2"}}')
        )
        assert statistic["device", "chi2"] == pytest.approx(by_feature["device"]["statistic"])

        # every per-feature query of the shipped dashboard has data for a categorical feature
        queries = [
            q
            for q in dashboard_queries(json.loads(DASHBOARD.read_text()))
            if "driftlake_feature_" in q.expr
        ]
        assert len(queries) >= 8
        for q in queries:
            deadline = time.monotonic() + 15
            while not has_data(
                series := evaluate(
                    prom.url, q, started, time.time(), model=churn.MODEL, feature="device"
                )
            ):
                assert time.monotonic() < deadline, f"{q.title}/{q.ref} has no data: {q.expr}"
                time.sleep(0.5)
            if q.title.startswith("Per-feature tests"):  # the table names each feature's test
                keys = {(s["metric"]["feature"], s["metric"].get("test")) for s in series}
                assert {("device", "chi2"), ("country", "chi2"), ("age", "ks")} <= keys, keys
