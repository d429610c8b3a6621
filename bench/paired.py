"""Paired comparisons of benchmark rounds: the median of each round's own ratio or difference,
with a distribution-free confidence interval, so a target is judged against the noise."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import quantile_test


@dataclass(frozen=True)
class Median:
    """A median of per-round values and its confidence interval (NaN bounds when too few
    rounds give one at the level asked)."""

    value: float
    low: float
    high: float
    rounds: int

    def show(self, fmt: str = "{:+.2f}") -> str:
        """``value [low, high]`` in ``fmt``; the interval left out when there is none."""
        if math.isnan(self.low):
            return fmt.format(self.value)
        return f"{fmt.format(self.value)} [{fmt.format(self.low)}, {fmt.format(self.high)}]"


def median_ci(values: Sequence[float], level: float = 0.95) -> Median:
    """The median of ``values`` with the sign test's confidence interval for it.

    The interval is a pair of order statistics (``scipy.stats.quantile_test``): it covers
    the true median with probability at least ``level`` whatever the values' distribution,
    which round-to-round noise on a shared machine (a heavy tail of slow rounds) needs.
    Six rounds are the fewest that give a 95% interval.
    """
    if not values:
        raise ValueError("median_ci needs at least one value")
    mid = statistics.median(values)
    ci = quantile_test(list(values), q=mid, p=0.5).confidence_interval(level)
    return Median(mid, float(ci.low), float(ci.high), len(values))
