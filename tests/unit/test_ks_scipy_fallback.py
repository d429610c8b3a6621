"""Exact KS p-values stay equal to scipy's when scipy's private exact routine is missing.

Oracle: ``scipy.stats._stats_py._attempt_exact_2kssamp`` (what ks_2samp's exact branch calls).
Tolerance: statistic identical, p-value within 1e-12. The whole fallback, run in a Python
without the private name, is ``tests/integration/test_ks_without_private_scipy.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats._stats_py import _attempt_exact_2kssamp

from analytics._ks_exact import _exact_two_sided_public

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]


@st.composite
def lattice_points(draw: st.DrawFn) -> tuple[int, int, int]:
    """(m, n, h): sample sizes and a statistic D = i/m - j/n >= 0 as h = D * lcm(m, n)."""
    m = draw(st.integers(1, 400))
    n = draw(st.integers(1, 400))
    i = draw(st.integers(0, m))
    j = draw(st.integers(0, n))
    if i * n < j * m:
        i, j = m - i, n - j
    g = int(np.gcd(m, n))
    return m, n, (i * n - j * m) // g


@settings(max_examples=300, deadline=None)
@given(lattice_points())
def test_public_path_equals_scipys_private_exact_routine(point: tuple[int, int, int]) -> None:
    m, n, h = point
    g = int(np.gcd(m, n))
    ok, d, p = _attempt_exact_2kssamp(m, n, g, h / (m // g * n), "two-sided")
    ok2, d2, p2 = _exact_two_sided_public(m, n, h)
    assert (ok2, d2) == (ok, d)
    if ok:  # when the exact routine gives up, its p-value is not used (asymp is)
        assert abs(p2 - p) <= 1e-12
