"""chisq_test equals scipy's chi-squared test of homogeneity on the 2 x K count table.

Oracle: ``scipy.stats.chi2_contingency(table, correction=False)`` on a table built here from
``collections.Counter`` (reference row, window row; one column per category seen in either,
nulls dropped). Tolerance: statistic within 1e-12 relative, p-value within 1e-12 absolute.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from analytics.chisq import CategoricalReference, chisq_test

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]

TOL = 1e-12

category = st.one_of(st.sampled_from(["a", "b", "c", "d"]), st.none())
window_category = st.one_of(st.sampled_from(["a", "b", "c", "d", "new", "other"]), st.none())


@st.composite
def features(draw: st.DrawFn) -> tuple[dict[str, list], dict[str, list]]:
    n = draw(st.integers(1, 3))
    reference = {f"c{i}": draw(st.lists(category, max_size=200)) for i in range(n)}
    window = {f"c{i}": draw(st.lists(window_category, max_size=200)) for i in range(n)}
    return reference, window


def oracle(reference: list, window: list) -> tuple[float, float, tuple[str, ...]]:
    ref, win = (
        Counter(x for x in reference if x is not None),
        Counter(x for x in window if x is not None),
    )
    cats = sorted(set(ref) | set(win))
    table = np.array([[ref[c] for c in cats], [win[c] for c in cats]])
    res = stats.chi2_contingency(table, correction=False)
    return float(res.statistic), float(res.pvalue), tuple(sorted(set(win) - set(ref)))


@settings(max_examples=200, deadline=None)
@given(case=features())
def test_matches_chi2_contingency(case):
    reference, window = case
    res = chisq_test(CategoricalReference.from_columns(reference), window)
    for f, name in enumerate(reference):
        n_ref = sum(x is not None for x in reference[name])
        n_win = sum(x is not None for x in window[name])
        assert res.n_window[f] == n_win
        if n_ref == 0 or n_win == 0:
            assert math.isnan(res.statistic[f]) and math.isnan(res.pvalue[f])
            continue
        statistic, pvalue, unseen = oracle(reference[name], window[name])
        assert math.isclose(res.statistic[f], statistic, rel_tol=TOL, abs_tol=TOL)
        assert abs(res.pvalue[f] - pvalue) <= TOL
        assert res.unseen[f] == unseen


def test_unseen_categories_are_reported_and_count_as_drift():
    ref = CategoricalReference.from_columns({"tier": ["free"] * 500 + ["gold"] * 500})
    res = chisq_test(ref, {"tier": ["free"] * 40 + ["gold"] * 40 + ["trial"] * 20 + [None]})
    assert res.unseen == (("trial",),)
    assert res.n_window.tolist() == [100]
    assert res.dof.tolist() == [2]
    assert res.pvalue[0] < 1e-6


def test_same_proportions_do_not_drift():
    ref = CategoricalReference.from_columns({"tier": ["free"] * 600 + ["gold"] * 400})
    res = chisq_test(ref, {"tier": ["free"] * 60 + ["gold"] * 40})
    assert res.statistic[0] == 0.0 and res.pvalue[0] == 1.0 and res.unseen == ((),)


def test_a_single_category_overall_is_degenerate_p_one():
    ref = CategoricalReference.from_columns({"only": ["x", "x", None]})
    res = chisq_test(ref, {"only": ["x"] * 7})
    assert res.statistic[0] == 0.0 and res.pvalue[0] == 1.0 and res.dof[0] == 0
    _, p, _ = oracle(["x", "x"], ["x"] * 7)
    assert p == 1.0


def test_window_without_values_is_untestable():
    ref = CategoricalReference.from_columns({"a": ["x", "y"], "b": ["x", "y"]})
    res = chisq_test(ref, {"a": [None, None], "b": []})
    assert np.isnan(res.statistic).all() and np.isnan(res.pvalue).all()
    assert res.n_window.tolist() == [0, 0]


def test_reference_counts_sorted_categories_and_drops_nulls():
    ref = CategoricalReference.from_columns({"a": ["y", None, "x", "y"]})
    assert ref.categories == (("x", "y"),)
    assert ref.counts[0].tolist() == [1, 2]
    assert ref.n_reference.tolist() == [3]


def test_missing_feature_in_window_is_an_error_naming_it():
    ref = CategoricalReference.from_columns({"a": ["x"], "b": ["y"]})
    with pytest.raises(ValueError, match=r"categorical feature.*b"):
        chisq_test(ref, {"a": ["x"]})
