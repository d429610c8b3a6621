"""The stattest registry: ks and chi2 registered, names checked, and a test added in one module.

This module registers a two-sample Wasserstein distance test, as a future
``analytics/stattests/_wasserstein.py`` would, and shows a window run picks it up by name with
no change to ``analytics/detect.py``. Oracles: ``scipy.stats.wasserstein_distance``,
``ks_2samp`` and ``chi2_contingency`` on each feature's non-missing values; statistics within
1e-12 relative (KS: identical), p-values within 1e-12 absolute.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from analytics import AnalyticsSettings, DetectConfig
from analytics import stattests as registry
from analytics.detect import run_batch
from analytics.ks import KSReference
from analytics.profile import load_profile
from analytics.stattests import StatTest, StatTestResult
from harness.landing import land, landing_batch, only_window
from ingest import Warehouse
from ingest.errors import ConfigError
from ingest.reference import load_reference

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

ROWS = 300
WASSERSTEIN_THRESHOLD = 0.25


def _wasserstein(
    reference: KSReference, window: np.ndarray, options: Mapping[str, Any]
) -> StatTestResult:
    """First Wasserstein distance between each column's reference and window values."""
    n_features = window.shape[1]
    statistic = np.full(n_features, np.nan)
    n_tested = np.zeros(n_features, dtype=np.int64)
    # a loop over columns: each has its own reference length and its own missing values
    for f, ref in enumerate(reference.sorted_values):
        win = np.sort(window[:, f][~np.isnan(window[:, f])])
        n_tested[f] = win.size
        if win.size == 0 or ref.size == 0:
            continue
        points = np.sort(np.concatenate([ref, win]))
        ref_cdf = np.searchsorted(ref, points[:-1], side="right") / ref.size
        win_cdf = np.searchsorted(win, points[:-1], side="right") / win.size
        statistic[f] = np.sum(np.abs(ref_cdf - win_cdf) * np.diff(points))
    return StatTestResult(
        statistic=statistic, p_value=np.full(n_features, np.nan), n_tested=n_tested
    )


WASSERSTEIN = registry.register(
    StatTest(
        name="wasserstein",
        kinds=frozenset({"numeric"}),
        func=_wasserstein,
        default_threshold=WASSERSTEIN_THRESHOLD,
        drift_when="statistic",
    )
)


@pytest.fixture(scope="module")
def window(tmp_path_factory) -> dict[str, Any]:
    """A landed window of ROWS rows (two numeric columns with NaNs, one categorical with an
    unseen category and nulls) against a reference, with everything a window run needs."""
    tmp = tmp_path_factory.mktemp("stattests")
    rng = np.random.default_rng(22)
    amount = rng.normal(size=400)
    amount[::37] = np.nan
    reference = pl.DataFrame(
        {
            "amount": amount,
            "income": rng.lognormal(size=400),
            "channel": rng.choice(["web", "app", "store"], 400, p=[0.5, 0.3, 0.2]),
            "target": rng.integers(0, 2, 400),
        }
    )
    ref_path = tmp / "ref.parquet"
    reference.write_parquet(ref_path)
    win_amount = rng.normal(0.6, 1.0, ROWS)
    win_amount[::11] = np.nan
    win_amount[7] = 50.0  # above the reference's maximum
    channel = rng.choice(["web", "app", "store", "kiosk"], ROWS, p=[0.3, 0.3, 0.2, 0.2])
    channel = [None if i % 29 == 0 else c for i, c in enumerate(channel)]
    prediction = rng.integers(0, 2, ROWS).astype(float)
    rows = {
        "amount": win_amount,
        "income": rng.lognormal(size=ROWS),
        "channel": channel,
        "prediction": prediction,
    }
    schema = load_reference(ref_path, "shop").schema
    wh = Warehouse(tmp / "wh")
    features = {k: v for k, v in rows.items() if k != "prediction"}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    land(wh, schema, landing_batch(schema, features, start=start, prediction=prediction))
    settings_ = AnalyticsSettings(warehouse=str(wh.root), reference_path=str(ref_path))
    settings_ = settings_.model_copy(update={"model_name": "shop"})
    reference = reference.with_columns(prediction=pl.col("target").cast(pl.Float64))
    return {
        "warehouse": wh,
        "spec": only_window(wh, "shop"),
        "profile": load_profile(settings_),
        "reference": reference,
        "rows": rows,
    }


def history_of(window: dict[str, Any], config: DetectConfig) -> dict[str, dict[str, Any]]:
    _, table = run_batch(window["warehouse"], [window["spec"]], window["profile"], config)
    frame = pl.from_arrow(table)
    return {row["feature"]: row for row in frame.iter_rows(named=True)}


def non_missing(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array[~np.isnan(array)]


def test_registry_lists_ks_and_chi2_with_their_kinds_and_defaults() -> None:
    tests = {t.name: t for t in registry.registered()}
    assert {"ks", "chi2"} <= set(tests)
    ks, chi2 = tests["ks"], tests["chi2"]
    assert (ks.kinds, ks.drift_when, ks.default_threshold) == ({"numeric"}, "p_value", 0.05)
    assert (chi2.kinds, chi2.drift_when, chi2.default_threshold) == (
        {"categorical"},
        "p_value",
        0.05,
    )
    assert ks.effect_size and not chi2.effect_size  # min_statistic gates KS's D only
    assert [t.name for t in registry.registered("categorical")] == ["chi2"]
    assert {t.name for t in registry.registered("numeric")} == {"ks", "wasserstein"}
    config = DetectConfig()
    assert (config.test("numeric"), config.test("categorical")) == (ks, chi2)


def test_an_unknown_test_name_is_a_config_error_naming_the_registered_ones() -> None:
    with pytest.raises(ConfigError) as unknown:
        DetectConfig(numeric_test="psi")
    assert "unknown stattest 'psi'; registered: chi2, ks, wasserstein" in str(unknown.value)
    assert "Fix the numeric_test setting" in str(unknown.value)
    with pytest.raises(ConfigError, match="registered: chi2, ks, wasserstein"):
        registry.get("psi")
    with pytest.raises(ConfigError) as wrong_kind:
        DetectConfig(categorical_test="ks")
    message = str(wrong_kind.value)
    assert "'ks' applies to numeric columns, not categorical" in message
    assert "categorical tests: chi2" in message


def test_a_second_test_under_a_registered_name_is_refused() -> None:
    impostor = StatTest(name="ks", kinds=frozenset({"numeric"}), func=_wasserstein)
    with pytest.raises(ValueError, match="already registered as 'ks'"):
        registry.register(impostor)
    assert registry.get("ks").func.__module__ == "analytics.stattests._ks"
    assert registry.register(WASSERSTEIN) is WASSERSTEIN  # the same object again: no-op


def test_a_test_returning_the_wrong_number_of_values_is_named_in_the_error() -> None:
    def one_value(reference: Any, window: Any, options: Mapping[str, Any]) -> StatTestResult:
        return StatTestResult(np.zeros(1), np.zeros(1), np.zeros(1, dtype=np.int64))

    broken = StatTest(name="broken", kinds=frozenset({"numeric"}), func=one_value)
    reference = KSReference.from_columns({"a": np.arange(3.0), "b": np.arange(3.0)})
    with pytest.raises(ValueError, match=r"'broken' returned statistic of shape \(1,\)"):
        broken(reference, np.zeros((4, 2)), {})


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=60),
    st.lists(st.one_of(st.floats(-1e3, 1e3), st.just(float("nan"))), min_size=1, max_size=60),
)
def test_the_module_defined_wasserstein_equals_scipy(ref: list[float], win: list[float]) -> None:
    reference = KSReference.from_columns({"x": np.array(ref)})
    result = WASSERSTEIN(reference, np.array(win).reshape(-1, 1), {})
    values = non_missing(win)
    assert result.n_tested[0] == values.size
    if values.size == 0:
        assert np.isnan(result.statistic[0])
        return
    expected = stats.wasserstein_distance(ref, values)
    assert result.statistic[0] == pytest.approx(expected, rel=1e-12, abs=1e-9)


def test_a_test_registered_outside_analytics_is_run_by_a_window_by_name(window) -> None:
    history = history_of(window, DetectConfig(numeric_test="wasserstein"))
    reference, rows = window["reference"], window["rows"]
    for feature in ("amount", "income", "prediction"):
        row = history[feature]
        expected = stats.wasserstein_distance(
            non_missing(reference[feature]), non_missing(rows[feature])
        )
        assert row["test"] == "wasserstein"
        assert row["statistic"] == pytest.approx(expected, rel=1e-12)
        assert row["n_tested"] == non_missing(rows[feature]).size
        assert np.isnan(row["p_value"]) and np.isnan(row["adjusted_p_value"])
        assert row["threshold"] == WASSERSTEIN_THRESHOLD
        assert row["drifted"] == (expected >= WASSERSTEIN_THRESHOLD)
    assert history["amount"]["drifted"] and not history["income"]["drifted"]
    # chi2 stays alone in the Bonferroni family: k = 1, so its threshold is alpha itself
    assert history["channel"]["test"] == "chi2"
    assert history["channel"]["threshold"] == 0.05
    assert history["channel"]["adjusted_p_value"] == history["channel"]["p_value"]
    assert history["amount"]["features_drifting"] == sum(r["drifted"] for r in history.values())


def test_a_config_naming_a_registered_test_carries_it_to_a_worker_by_reference(
    monkeypatch,
) -> None:
    blob = pickle.dumps(DetectConfig(numeric_test="wasserstein"))
    # a Dask worker that never imported this module has no such name in its registry
    monkeypatch.delitem(registry._registry._REGISTRY, "wasserstein")
    config = pickle.loads(blob)
    assert config.test("numeric").func is _wasserstein
    assert config.test("categorical") == registry.get("chi2")


def test_a_ks_and_chi2_window_history_equals_scipy_column_by_column(window) -> None:
    history = history_of(window, DetectConfig())
    reference, rows = window["reference"], window["rows"]
    assert list(history) == ["amount", "income", "prediction", "channel"]
    k = 4  # every feature has values on both sides: four p-values share alpha
    for feature in ("amount", "income", "prediction"):
        row, ref, win = history[feature], non_missing(reference[feature]), rows[feature]
        expected = stats.ks_2samp(ref, non_missing(win), method="auto")
        present = ~np.isnan(np.asarray(win, dtype=np.float64))
        outside = present & ((win < ref.min()) | (win > ref.max()))
        assert row["test"] == "ks" and row["statistic"] == expected.statistic
        assert abs(row["p_value"] - expected.pvalue) <= 1e-12
        assert row["n_tested"] == present.sum()
        assert row["null_share"] == pytest.approx(1 - present.mean(), abs=1e-15)
        assert row["out_of_range_share"] == pytest.approx(outside.mean(), abs=1e-15)
        assert row["unseen_categories"] == []
    cats = ["app", "kiosk", "store", "web"]
    window_channel = [c for c in rows["channel"] if c is not None]
    table = [
        [int((reference["channel"] == c).sum()) for c in cats],
        [window_channel.count(c) for c in cats],
    ]
    expected = stats.chi2_contingency(np.array(table), correction=False)
    channel = history["channel"]
    assert channel["test"] == "chi2" and channel["unseen_categories"] == ["kiosk"]
    assert channel["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert abs(channel["p_value"] - expected.pvalue) <= 1e-12
    assert channel["null_share"] == pytest.approx(rows["channel"].count(None) / ROWS)
    assert channel["out_of_range_share"] == pytest.approx(window_channel.count("kiosk") / ROWS)
    for row in history.values():
        assert row["threshold"] == 0.05 / k
        assert row["adjusted_p_value"] == pytest.approx(min(1.0, row["p_value"] * k), rel=1e-15)
        assert row["drifted"] == (row["p_value"] <= 0.05 / k)
        assert row["correction"] == "bonferroni" and row["alpha"] == 0.05
    assert history["amount"]["drifted"] and history["channel"]["drifted"]
    assert history["amount"]["dataset_drift"]
