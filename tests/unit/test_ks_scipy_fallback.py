"""Exact KS p-values stay equal to scipy's when scipy's private exact routine is missing.

Oracle: ``scipy.stats._stats_py._attempt_exact_2kssamp`` (what ks_2samp's exact branch calls)
and ``scipy.stats.ks_2samp``. Tolerance: statistic identical, p-value within 1e-12.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats._stats_py import _attempt_exact_2kssamp

from analytics.ks import _exact_two_sided_public
from tests.conftest import ROOT

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
    assert abs(p2 - p) <= 1e-12


def test_without_scipys_private_name_ks_test_warns_and_still_equals_ks_2samp() -> None:
    script = textwrap.dedent(
        """
        import logging, sys, types
        import numpy as np
        import scipy.stats._stats_py as private
        from scipy import stats
        # as a scipy that renamed it: scipy's own code still has it, the name is gone
        renamed = types.ModuleType(private.__name__)
        renamed.__dict__.update(
            {k: v for k, v in vars(private).items() if k != "_attempt_exact_2kssamp"}
        )
        sys.modules[private.__name__] = renamed
        logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
        from analytics.ks import KSReference, ks_test
        rng = np.random.default_rng(7)
        ref = rng.normal(size=(300, 3))
        win = rng.normal(0.3, 1.0, size=(120, 3))
        res = ks_test(KSReference.from_columns({str(i): ref[:, i] for i in range(3)}), win)
        for f in range(3):
            want = stats.ks_2samp(ref[:, f], win[:, f], method="exact")
            assert res.method[f] == "exact", res.method
            assert res.statistic[f] == want.statistic, (res.statistic[f], want.statistic)
            assert abs(res.pvalue[f] - want.pvalue) <= 1e-12, (res.pvalue[f], want.pvalue)
        print("OK")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "event=scipy_private_missing" in out.stdout
    assert out.stdout.strip().endswith("OK")
