"""correct() flags drift with a controlled false-alarm rate; NaN p-values are never flagged.

Oracle: ``scipy.stats.false_discovery_control(p, method='bh')`` for 'fdr' (adjusted p-values
within 1e-12, absolute; flagged exactly where the adjusted value is <= alpha); the definitions
``min(1, p * k)`` and ``p <= alpha / k`` computed directly for 'bonferroni'; ``p <= alpha``
for 'none'. ``k`` counts the non-NaN p-values.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from analytics.correction import correct, correct_many
from ingest.errors import ConfigError

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]

TOL = 1e-12

# Exact 0 and 1, repeated values and NaNs are where corrections usually go wrong.
p_value = st.one_of(
    st.floats(0, 1), st.sampled_from([0.0, 1.0, 0.01, 0.05, 0.5]), st.just(float("nan"))
)
p_values = st.lists(p_value, min_size=0, max_size=40).map(np.array)
alphas = st.one_of(st.floats(1e-6, 0.999), st.sampled_from([0.01, 0.05, 0.1]))


@settings(max_examples=300, deadline=None)
@given(p=p_values, alpha=alphas)
def test_bonferroni(p, alpha):
    d = correct(p, alpha=alpha, method="bonferroni")
    tested = ~np.isnan(p)
    k = int(tested.sum())
    assert d.threshold == (alpha / k if k else alpha)
    np.testing.assert_array_equal(d.drifted, tested & (p <= alpha / max(k, 1)))
    np.testing.assert_array_equal(d.adjusted, np.minimum(1.0, p * k))


@settings(max_examples=300, deadline=None)
@given(p=p_values, alpha=alphas)
def test_fdr_matches_scipy_benjamini_hochberg(p, alpha):
    d = correct(p, alpha=alpha, method="fdr")
    tested = ~np.isnan(p)
    assert np.isnan(d.adjusted[~tested]).all()
    if tested.any():
        oracle = stats.false_discovery_control(p[tested], method="bh")
        np.testing.assert_allclose(d.adjusted[tested], oracle, rtol=0, atol=TOL)
        np.testing.assert_array_equal(d.drifted[tested], oracle <= alpha)
    assert not d.drifted[~tested].any()
    flagged = p[d.drifted]
    assert d.threshold == (flagged.max() if flagged.size else 0.0)


@settings(max_examples=200, deadline=None)
@given(p=p_values, alpha=alphas, method=st.sampled_from(["bonferroni", "fdr", "none"]))
def test_flags_are_exactly_the_tested_p_values_at_or_below_the_threshold(p, alpha, method):
    d = correct(p, alpha=alpha, method=method)
    np.testing.assert_array_equal(d.drifted, ~np.isnan(p) & (p <= d.threshold))
    assert d.drifted.dtype == bool and d.drifted.shape == p.shape
    # Correction never flags more than testing each feature at alpha would.
    assert not (d.drifted & ~(p <= alpha)).any()


def test_none_is_the_uncorrected_test():
    p = np.array([0.01, 0.05, 0.2, np.nan])
    d = correct(p, alpha=0.05, method="none")
    assert d.threshold == 0.05
    assert d.drifted.tolist() == [True, True, False, False]
    np.testing.assert_array_equal(d.adjusted, p)


def test_nan_features_do_not_count_in_k():
    # 0.02 survives Bonferroni over the two tested features (0.05 / 2), not over four.
    d = correct(np.array([0.02, np.nan, 0.9, np.nan]), alpha=0.05, method="bonferroni")
    assert d.threshold == 0.025
    assert d.drifted.tolist() == [True, False, False, False]


def test_thirty_null_features_rarely_alarm_after_bonferroni():
    # The seed's problem: 30 features at p < 0.05 each alarms in most windows under no drift.
    rng = np.random.default_rng(0)
    windows = rng.uniform(size=(2000, 30))
    raw = (windows <= 0.05).any(axis=1).mean()
    corrected = np.mean([correct(w).drifted.any() for w in windows])
    assert raw > 0.7
    assert corrected <= 0.07


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "holm"}, "bonferroni, fdr, none"),
        ({"alpha": 0.0}, "strictly between 0 and 1"),
        ({"alpha": 1.0}, "strictly between 0 and 1"),
        ({"alpha": float("nan")}, "strictly between 0 and 1"),
        ({"alpha": "0.05"}, "strictly between 0 and 1"),
    ],
)
def test_invalid_settings_raise_config_error_naming_the_expected_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        correct(np.array([0.5]), **kwargs)


def test_out_of_range_p_values_are_rejected():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        correct(np.array([0.5, 1.5]))


@settings(max_examples=200, deadline=None)
@given(
    rows=st.integers(0, 40).flatmap(
        lambda f: st.lists(st.lists(p_value, min_size=f, max_size=f), min_size=1, max_size=6)
    ),
    alpha=alphas,
    method=st.sampled_from(["bonferroni", "fdr", "none"]),
)
def test_many_windows_at_once_decide_each_as_alone_to_the_bit(rows, alpha, method):
    # a task judges all its windows in one call; each must be what correct() gives it alone
    drifted, threshold, adjusted = correct_many(np.array(rows, dtype=np.float64), alpha, method)
    for w, row in enumerate(rows):
        alone = correct(np.array(row, dtype=np.float64), alpha, method)
        assert drifted[w].tolist() == alone.drifted.tolist()
        assert threshold[w] == alone.threshold
        np.testing.assert_array_equal(adjusted[w], alone.adjusted)  # NaN where NaN, else bitwise
