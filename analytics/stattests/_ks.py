"""The ``ks`` stattest: :func:`analytics.ks.ks_test` registered for numeric columns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from analytics.ks import KSReference, ks_test, ks_test_many
from analytics.stattests._registry import StatTest, StatTestResult, register


def _ks(reference: KSReference, window: np.ndarray, options: Mapping[str, Any]) -> StatTestResult:
    """Two-sample KS of every numeric column, p-values by the configured ``ks_method``."""
    result = ks_test(reference, window, method=options.get("ks_method", "auto"))
    return StatTestResult(
        statistic=result.statistic, p_value=result.pvalue, n_tested=result.n_window
    )


def _ks_many(
    reference: KSReference, windows: np.ndarray, options: Mapping[str, Any]
) -> StatTestResult:
    """:func:`_ks` of many windows of one size: arrays ``[W, F]``."""
    result = ks_test_many(reference, windows, method=options.get("ks_method", "auto"))
    return StatTestResult(
        statistic=result.statistic, p_value=result.pvalue, n_tested=result.n_window
    )


KS = register(
    StatTest(
        name="ks",
        kinds=frozenset({"numeric"}),
        func=_ks,
        default_threshold=0.05,
        drift_when="p_value",
        effect_size=True,  # D is the largest gap between the two ECDFs, in [0, 1]
        many=_ks_many,
    )
)
