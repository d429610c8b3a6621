"""The ``chi2`` stattest: :func:`analytics.chisq.chisq_test` registered for categorical columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from analytics.chisq import CategoricalReference, chisq_test
from analytics.stattests._registry import StatTest, StatTestResult, register


def _chi2(
    reference: CategoricalReference,
    window: Mapping[str, Sequence[str | None]],
    options: Mapping[str, Any],
) -> StatTestResult:
    """Chi-squared homogeneity test of every categorical column's window counts."""
    result = chisq_test(reference, window)
    return StatTestResult(
        statistic=result.statistic, p_value=result.pvalue, n_tested=result.n_window
    )


CHI2 = register(
    StatTest(
        name="chi2",
        kinds=frozenset({"categorical"}),
        func=_chi2,
        default_threshold=0.05,
        drift_when="p_value",
        effect_size=False,  # the statistic grows with the window size: not an effect size
    )
)
