"""Exact two-sided KS p-values, memoized: scipy's compiled routine, or ks_2samp if it is gone."""

from __future__ import annotations

import logging
import warnings
from functools import lru_cache

import numpy as np
from scipy.stats import ks_2samp

# The logger of analytics.ks, whose exact path this is: one name for the KS test's events.
log = logging.getLogger("driftlake.analytics.ks")

try:
    # scipy's own exact two-sided helper (compiled, releases the GIL), private to scipy: the
    # pin in pyproject.toml bounds scipy to the versions the tests prove it in. Calling it,
    # rather than porting it, is what keeps exact p-values equal to ks_2samp's.
    from scipy.stats._stats_py import _attempt_exact_2kssamp
except ImportError:  # a scipy outside the pin: same p-values through the public API
    _attempt_exact_2kssamp = None
    log.warning(
        "event=scipy_private_missing name=scipy.stats._stats_py._attempt_exact_2kssamp "
        "action=exact_p_values_through_public_ks_2samp cost=slower_exact_p_values"
    )


def clear_exact_cache() -> None:
    """Forget memoized exact p-values (benchmarks use it to measure a cold start)."""
    exact_two_sided.cache_clear()


@lru_cache(maxsize=1 << 16)
def exact_two_sided(m: int, n: int, h: int) -> tuple[bool, float, float]:
    """(success, D, p) of ks_2samp's exact path for samples of m and n and D = h / lcm."""
    g = int(np.gcd(m, n))
    lcm = (m // g) * n
    if _attempt_exact_2kssamp is not None:
        return _attempt_exact_2kssamp(m, n, g, h / lcm, "two-sided")
    return _exact_two_sided_public(m, n, h)


def _exact_two_sided_public(m: int, n: int, h: int) -> tuple[bool, float, float]:
    """:func:`exact_two_sided` through ``scipy.stats.ks_2samp`` alone.

    D = h / lcm(m, n) is a lattice point i/m - j/n with 0 <= i <= m, 0 <= j <= n. Samples of
    i zeros and m - i ones against j zeros and n - j ones have exactly that statistic, so
    ks_2samp's exact branch runs on the same (m, n, D) and returns the same p-value.
    """
    g = int(np.gcd(m, n))
    mg, ng = m // g, n // g
    # i * ng - j * mg = h: i = h * ng^-1 (mod mg), then the smallest j >= 0 on that line
    i = (h * pow(ng, -1, mg)) % mg if mg > 1 else 0
    j = (i * ng - h) // mg
    if j < 0:
        steps = (ng - 1 - j) // ng  # ceil(-j / ng)
        i, j = i + steps * mg, j + steps * ng
    x = np.r_[np.zeros(i), np.ones(m - i)]
    y = np.r_[np.zeros(j), np.ones(n - j)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        res = ks_2samp(x, y, method="exact")
    ok = not any("Exact calculation unsuccessful" in str(w.message) for w in caught)
    return ok, float(res.statistic), float(res.pvalue)
