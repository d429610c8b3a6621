"""A window with a categorical feature: chi-squared beside KS, unseen categories reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from scipy.stats import chi2_contingency

from analytics import AnalyticsSettings, DetectConfig
from analytics.detect import run_batch
from analytics.profile import load_profile
from harness.landing import land, landing_batch, only_window
from ingest import Warehouse
from ingest.reference import load_reference

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]


def test_categorical_feature_is_tested_with_chi_squared_and_unseen_categories_reported(
    tmp_path,
):
    rng = np.random.default_rng(0)
    ref_path = tmp_path / "ref.parquet"
    pl.DataFrame(
        {
            "amount": rng.normal(size=500),
            "channel": rng.choice(["web", "app", "store"], 500, p=[0.5, 0.3, 0.2]),
            "store_id": rng.integers(0, 3, 500).astype(float),  # numeric, tested as categories
            "target": rng.integers(0, 2, 500),
        }
    ).write_parquet(ref_path)
    settings = AnalyticsSettings(
        warehouse=str(tmp_path / "wh"),
        reference_path=str(ref_path),
        model_name="shop",
        categorical=["store_id"],
    )
    schema = load_reference(ref_path, "shop", categorical=["store_id"]).schema
    assert [f.kind for f in schema.features] == ["numeric", "categorical", "categorical"]

    n = 300
    channel = rng.choice(["web", "app", "store", "kiosk"], n, p=[0.3, 0.3, 0.2, 0.2])
    store = rng.integers(0, 3, n).astype(float).astype(str)
    wh = Warehouse(tmp_path / "wh")
    features = {"amount": rng.normal(size=n), "channel": channel, "store_id": store}
    start = datetime.now(UTC) - timedelta(minutes=1)
    land(wh, schema, landing_batch(schema, features, start=start))
    (result,), table = run_batch(
        wh, [only_window(wh, "shop")], load_profile(settings), DetectConfig()
    )

    history = pl.from_arrow(table)
    by_feature = {r["feature"]: r for r in history.iter_rows(named=True)}
    assert by_feature["amount"]["test"] == "ks" and by_feature["channel"]["test"] == "chi2"
    assert by_feature["channel"]["unseen_categories"] == ["kiosk"]
    assert by_feature["channel"]["out_of_range_share"] == pytest.approx((channel == "kiosk").mean())
    assert by_feature["channel"]["drifted"] and result.dataset_drift

    ref = pl.read_parquet(ref_path)
    cats = ["app", "kiosk", "store", "web"]
    table = np.array(
        [
            [int((ref["channel"] == c).sum()) for c in cats],
            [int((channel == c).sum()) for c in cats],
        ]
    )
    expected = chi2_contingency(table, correction=False)
    assert by_feature["channel"]["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert by_feature["channel"]["p_value"] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert by_feature["amount"]["n_tested"] == n and not by_feature["amount"]["drifted"]
