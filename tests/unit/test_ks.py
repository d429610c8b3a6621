"""ks_test equals scipy.stats.ks_2samp, feature by feature, on random data with ties and NaNs.

Oracle: ``scipy.stats.ks_2samp(reference, window_without_nans, method=...)`` per feature.
Tolerance: the statistic is identical (``==``); the p-value within 1e-12 (absolute).
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from analytics.ks import KSReference, ks_test, ks_test_many
from ingest.errors import ConfigError

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]

P_TOL = 1e-12
METHODS = ("auto", "exact", "asymp")


def scipy_oracle(ref: np.ndarray, win: np.ndarray, method: str) -> tuple[float, float, str]:
    """ks_2samp's statistic, p-value and the method it really used (it warns when it falls back)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = stats.ks_2samp(ref, win, method=method)
    fell_back = any("asymp" in str(w.message) for w in caught)
    if method == "asymp" or fell_back or (method == "auto" and max(ref.size, win.size) > 10_000):
        used = "asymp"
    else:
        used = "exact"
    return float(res.statistic), float(res.pvalue), used


def assert_matches_scipy(columns: dict[str, np.ndarray], window: np.ndarray, method: str) -> None:
    ref = KSReference.from_columns(columns)
    res = ks_test(ref, window, method=method)
    for f, name in enumerate(ref.names):
        reference = columns[name][~np.isnan(columns[name])]
        win = window[:, f][~np.isnan(window[:, f])]
        assert res.n_window[f] == win.size
        assert res.n_reference[f] == reference.size
        if win.size == 0 or reference.size == 0:
            assert np.isnan(res.statistic[f]) and np.isnan(res.pvalue[f])
            assert res.method[f] == "none"
            continue
        statistic, pvalue, used = scipy_oracle(reference, win, method)
        assert res.statistic[f] == statistic, (name, res.statistic[f], statistic)
        # NaN on both sides is agreement: asymp with m = n = 1 rounds en to 0 in scipy too.
        same_nan = np.isnan(res.pvalue[f]) and np.isnan(pvalue)
        assert same_nan or abs(res.pvalue[f] - pvalue) <= P_TOL, (name, res.pvalue[f], pvalue)
        assert res.method[f] == used


def sample(rng: np.random.Generator, size: int, kind: str, shift: float) -> np.ndarray:
    if kind == "ties":  # heavy ties: a handful of distinct values
        return rng.integers(-2, 3, size=size).astype(np.float64) + np.round(shift)
    if kind == "rounded":  # many ties across both samples, but not only a few values
        return np.round(rng.normal(shift, 1.0, size=size), 1)
    return rng.normal(shift, 1.0, size=size)


@st.composite
def drift_cases(draw: st.DrawFn) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Several features with their own reference lengths; tiny or larger windows with NaNs."""
    n_features = draw(st.integers(1, 4))
    rows = draw(st.one_of(st.integers(0, 5), st.integers(6, 3000)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    columns, window = {}, np.empty((rows, n_features))
    for f in range(n_features):
        kind = draw(st.sampled_from(["ties", "rounded", "continuous"]))
        ref_size = draw(st.integers(1, 400))
        columns[f"x{f}"] = sample(rng, ref_size, kind, 0.0)
        if draw(st.booleans()):  # some NaNs in the reference too: from_columns drops them
            columns[f"x{f}"][rng.random(ref_size) < 0.1] = np.nan
        window[:, f] = sample(rng, rows, kind, draw(st.sampled_from([0.0, 0.0, 0.3, 2.0])))
        nan_share = draw(st.sampled_from([0.0, 0.0, 0.2, 0.9, 1.0]))
        window[rng.random(rows) < nan_share, f] = np.nan
    return columns, window


@st.composite
def tiny_cases(draw: st.DrawFn) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Hand-sized samples drawn value by value, so hypothesis shrinks to a minimal example."""
    value = st.one_of(st.integers(-3, 3).map(float), st.floats(-5, 5, allow_subnormal=False))
    ref = draw(st.lists(value, min_size=1, max_size=12))
    win = draw(st.lists(st.one_of(value, st.just(float("nan"))), min_size=1, max_size=8))
    return {"x": np.array(ref)}, np.array(win).reshape(-1, 1)


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=drift_cases())
def test_matches_ks_2samp_on_random_windows(method, case):
    columns, window = case
    assert_matches_scipy(columns, window, method)


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=150, deadline=None)
@given(case=tiny_cases())
def test_matches_ks_2samp_on_tiny_samples(method, case):
    columns, window = case
    assert_matches_scipy(columns, window, method)


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=drift_cases(), windows=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_many_windows_at_once_equal_each_window_alone(method, case, windows, seed):
    columns, window = case
    rng = np.random.default_rng(seed)
    # windows of one size: the case's window, shuffled and with more NaNs in some
    stack = np.stack([rng.permutation(window) for _ in range(windows)])
    stack[rng.random(stack.shape) < rng.choice([0.0, 0.3], size=(windows, 1, 1))] = np.nan
    ref = KSReference.from_columns(columns)
    many = ks_test_many(ref, stack, method=method)
    assert many.statistic.shape == many.pvalue.shape == (windows, len(columns))
    for w in range(windows):
        alone = ks_test(ref, stack[w], method=method)
        np.testing.assert_array_equal(many.statistic[w], alone.statistic)
        np.testing.assert_array_equal(many.pvalue[w], alone.pvalue)
        np.testing.assert_array_equal(many.n_window[w], alone.n_window)
        assert many.method[w] == alone.method
        assert_matches_scipy(columns, stack[w], method)


@pytest.mark.parametrize("method", METHODS)
def test_single_row_window(method):
    rng = np.random.default_rng(1)
    columns = {"a": rng.normal(size=500), "b": rng.integers(0, 3, size=40).astype(float)}
    assert_matches_scipy(columns, np.array([[0.1, 1.0]]), method)


def test_equal_sizes_use_the_closed_form_exact_path():
    rng = np.random.default_rng(2)
    columns = {"a": rng.normal(size=300), "b": rng.integers(0, 4, size=300).astype(float)}
    window = np.column_stack([rng.normal(0.2, 1, 300), rng.integers(0, 4, 300).astype(float)])
    for method in METHODS:
        assert_matches_scipy(columns, window, method)


def test_50000_row_window_and_auto_switch_to_asymp():
    rng = np.random.default_rng(3)
    columns = {"a": rng.normal(size=2000), "b": np.round(rng.normal(size=10_000), 1)}
    window = np.column_stack([rng.normal(0.05, 1, 50_000), np.round(rng.normal(0, 1, 50_000), 1)])
    window[rng.random(50_000) < 0.01, 0] = np.nan
    assert_matches_scipy(columns, window, "auto")
    assert ks_test(KSReference.from_columns(columns), window).method == ("asymp", "asymp")


def test_auto_is_exact_up_to_10000_values_and_asymp_beyond():
    rng = np.random.default_rng(4)
    columns = {"a": rng.normal(size=60)}
    ref = KSReference.from_columns(columns)
    for rows, expected in [(10_000, "exact"), (10_001, "asymp")]:
        window = rng.normal(0.3, 1, size=(rows, 1))
        assert ks_test(ref, window).method == (expected,)
        assert_matches_scipy(columns, window, "auto")


def test_exact_beyond_int32_lattice_falls_back_to_asymp_like_scipy():
    rng = np.random.default_rng(5)
    columns = {"a": rng.normal(size=50_000)}
    window = rng.normal(size=(49_999, 1))
    assert_matches_scipy(columns, window, "exact")
    assert ks_test(KSReference.from_columns(columns), window, "exact").method == ("asymp",)


def test_untestable_features_are_nan_and_the_rest_still_tested():
    columns = {"empty_ref": np.array([np.nan]), "all_nan": np.arange(10.0), "ok": np.arange(10.0)}
    window = np.array([[1.0, np.nan, 3.0], [2.0, np.nan, 30.0]])
    res = ks_test(KSReference.from_columns(columns), window)
    assert np.isnan(res.statistic[:2]).all() and np.isnan(res.pvalue[:2]).all()
    assert res.method[:2] == ("none", "none")
    assert res.n_window.tolist() == [2, 0, 2]
    assert res.n_reference.tolist() == [0, 10, 10]
    assert_matches_scipy(columns, window, "auto")


def test_empty_window_and_no_features():
    ref = KSReference.from_columns({"a": np.arange(5.0)})
    res = ks_test(ref, np.empty((0, 1)))
    assert np.isnan(res.pvalue).all() and res.n_window.tolist() == [0]
    none = ks_test(KSReference.from_columns({}), np.empty((7, 0)))
    assert none.statistic.shape == (0,) and none.method == ()


def test_reference_is_sorted_nan_free_read_only_and_pickles_as_one_buffer():
    ref = KSReference.from_columns({"a": [3.0, np.nan, 1.0, 2.0], "b": [], "c": [5.0, -1.0]})
    assert [v.tolist() for v in ref.sorted_values] == [[1.0, 2.0, 3.0], [], [-1.0, 5.0]]
    assert not any(v.flags.writeable for v in ref.sorted_values)
    back = pickle.loads(pickle.dumps(ref))
    assert back.names == ref.names
    assert [v.tolist() for v in back.sorted_values] == [v.tolist() for v in ref.sorted_values]
    assert back.sorted_values[0].base is back.sorted_values[2].base  # one shared buffer


def test_window_is_not_modified_and_column_order_is_irrelevant():
    rng = np.random.default_rng(6)
    columns = {"a": rng.normal(size=200), "b": rng.normal(size=300)}
    window = rng.normal(size=(400, 2))
    before = window.copy()
    ref = KSReference.from_columns(columns)
    c_order = ks_test(ref, window)
    f_order = ks_test(ref, np.asfortranarray(window))
    np.testing.assert_array_equal(window, before)
    np.testing.assert_array_equal(c_order.statistic, f_order.statistic)
    np.testing.assert_array_equal(c_order.pvalue, f_order.pvalue)


def test_bad_method_or_shape_is_rejected_with_the_expected_values():
    ref = KSReference.from_columns({"a": np.arange(5.0), "b": np.arange(5.0)})
    with pytest.raises(ConfigError, match="auto, exact, asymp"):
        ks_test(ref, np.zeros((3, 2)), method="approx")
    with pytest.raises(ValueError, match=r"\[rows, 2\]"):
        ks_test(ref, np.zeros((3, 3)))
