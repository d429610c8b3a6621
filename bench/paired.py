"""Paired comparisons of benchmark rounds, so a target is judged against the noise: the
median of each round's own ratio or difference with a distribution-free interval, and a
latency percentile of all rounds' requests pooled, with an interval from resampling rounds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import quantile_test

# one round's latencies: distinct values (ascending) and how many requests had each
Histogram = tuple[np.ndarray, np.ndarray]


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


def williams_orders(n: int) -> list[tuple[int, ...]]:
    """Orders of ``n`` variants, one per round, in which each variant runs right after each
    other equally often (a Williams design: n orders for even n, 2n for odd n).

    A plain rotation always runs a variant after the same one, so whatever a round leaves
    behind (the previous server's flusher still writing, a warm or cold cache) lands on
    one variant only; 20 rounds of two identical servers so rotated differed by 6% in
    throughput and 2 ms in p99.
    """
    first = [0]
    for k in range(1, n):
        first.append((k + 1) // 2 if k % 2 else n - k // 2)
    rows = [tuple((v + i) % n for v in first) for i in range(n)]
    if n % 2:
        rows += [row[::-1] for row in rows]
    return rows


def histogram_ms(
    latency_us: Sequence[int] | np.ndarray, counts: Sequence[int] | np.ndarray
) -> Histogram:
    """A wrk latency histogram (distinct values in us, a count each) with its values in ms."""
    return np.asarray(latency_us) / 1e3, np.asarray(counts)


def pooled_quantile(rounds: Sequence[Histogram], q: float) -> float:
    """The ``q`` quantile of every request of ``rounds`` together: the smallest value at
    least a fraction ``q`` of them do not exceed (wrk's own definition of a percentile)."""
    values, weights = _union(rounds)
    return float(_quantiles(values, weights.sum(axis=0, keepdims=True), q)[0])


def pooled_difference(
    a: Sequence[Histogram],
    b: Sequence[Histogram],
    q: float = 0.99,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Median:
    """``a``'s pooled ``q`` quantile minus ``b``'s, rounds paired by position, with a
    percentile bootstrap interval that resamples whole rounds (the same draws for both).

    A round is the unit that varies: a stall of the machine lifts every request in flight
    during it, so requests are not independent but rounds nearly are. Pooling many short
    rounds gives a long run's percentile that still alternates with the other variants.
    """
    if len(a) != len(b) or not a:
        raise ValueError("pooled_difference needs the same number of rounds on both sides")
    values, weights = _union([*a, *b])
    wa, wb = weights[: len(a)], weights[len(a) :]
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, resamples, 200):  # in chunks: a draw weighs every distinct value
        n = min(200, resamples - start)
        draws = rng.multinomial(len(a), np.full(len(a), 1 / len(a)), size=n).astype(float)
        diffs.append(_quantiles(values, draws @ wa, q) - _quantiles(values, draws @ wb, q))
    d = np.concatenate(diffs)
    low, high = np.quantile(d, [(1 - level) / 2, (1 + level) / 2])
    value = pooled_quantile(a, q) - pooled_quantile(b, q)
    return Median(value, float(low), float(high), len(a))


def _union(rounds: Sequence[Histogram]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of all ``rounds`` and a (rounds x values) matrix of counts."""
    values = np.unique(np.concatenate([v for v, _ in rounds]))
    weights = np.zeros((len(rounds), len(values)))
    for i, (v, c) in enumerate(rounds):
        weights[i, np.searchsorted(values, v)] = c
    return values, weights


def _quantiles(values: np.ndarray, weights: np.ndarray, q: float) -> np.ndarray:
    """Per row of ``weights`` (counts over ``values``), the ``q`` quantile."""
    cum = np.cumsum(weights, axis=1)
    reached = cum >= q * cum[:, -1:] - 1e-9
    return values[reached.argmax(axis=1)]
