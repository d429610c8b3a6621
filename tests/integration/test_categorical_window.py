"""A window with a categorical feature: chi-squared beside KS, unseen categories reported."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from scipy.stats import chi2_contingency

from analytics import AnalyticsSettings, DetectConfig, WindowSpec
from analytics.detect import run_window
from analytics.profile import load_profile
from analytics.windows import plan_windows
from ingest import Warehouse
from ingest.capture import LandingWriter
from ingest.reader import list_landing, read_keys
from ingest.reference import load_reference

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


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
    writer = LandingWriter(wh, schema, "r1", flush_rows=10**9, flush_interval=3600)
    start = datetime.now(UTC) - timedelta(minutes=1)
    writer.append(
        pa.RecordBatch.from_arrays(
            [
                pa.array(
                    [start + timedelta(milliseconds=i) for i in range(n)], pa.timestamp("us", "UTC")
                ),
                pa.array([uuid.uuid4().hex for _ in range(n)]),
                pa.array(["r1"] * n),
                pa.array(["v1"] * n),
                pa.array(rng.normal(size=n)),
                pa.array(channel),
                pa.array(store),
                pa.array(np.ones(n)),
                pa.array(np.full(n, 0.5)),
            ],
            schema=schema.arrow_schema(),
        )
    )
    writer.close()
    (f,) = list_landing(wh, "shop")
    keys = read_keys(wh, f.path).with_columns(pl.lit(f.path).alias("file"))
    (plan,), _ = plan_windows(
        keys.select("file", "row", "ts", "request_id", "replica"), 2**62, n, 0, None
    )
    result = run_window(
        wh, WindowSpec.from_plan("shop", plan), load_profile(settings), DetectConfig()
    )

    history = pl.read_parquet(wh.uri(result.history_path))
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
