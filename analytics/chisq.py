"""Chi-squared drift test for categorical features: window category counts vs the reference."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import distributions

__all__ = ["CategoricalReference", "ChiSquaredResult", "chisq_test"]


@dataclass(frozen=True, eq=False)  # eq=False: fields hold arrays, compare by identity
class CategoricalReference:
    """Per categorical feature: its reference categories (sorted) and their counts."""

    names: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]
    counts: tuple[np.ndarray, ...]
    """int64 counts aligned with ``categories``; nulls are not counted."""

    @classmethod
    def from_columns(cls, columns: Mapping[str, Sequence[str | None]]) -> CategoricalReference:
        """Count the categories of each feature's reference values.

        Parameters
        ----------
        columns
            Feature name -> the reference values; ``None`` marks a missing value.

        Returns
        -------
        CategoricalReference
            Sorted categories and counts per feature, in the mapping's order.

        Examples
        --------
        >>> ref = CategoricalReference.from_columns({"tier": ["gold", "free", None, "free"]})
        >>> ref.categories, ref.counts[0].tolist()
        ((('free', 'gold'),), [2, 1])
        """
        names = tuple(columns)
        categories, counts = [], []
        for name in names:
            counter = _count(columns[name])
            cats = tuple(sorted(counter))
            categories.append(cats)
            counts.append(np.array([counter[c] for c in cats], dtype=np.int64))
        return cls(names=names, categories=tuple(categories), counts=tuple(counts))

    @property
    def n_reference(self) -> np.ndarray:
        """Number of non-null reference values per feature, int64 [F]."""
        return np.array([c.sum() for c in self.counts], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class ChiSquaredResult:
    """Per-feature outcome of :func:`chisq_test`, in ``CategoricalReference.names`` order.

    ``statistic`` and ``pvalue`` are NaN where the window (or the reference) has no non-null
    value; ``dof`` is then 0.
    """

    statistic: np.ndarray
    """float64 [F]: Pearson's chi-squared statistic of the 2 x K table."""
    pvalue: np.ndarray
    """float64 [F]."""
    n_window: np.ndarray
    """int64 [F]: non-null window values."""
    unseen: tuple[tuple[str, ...], ...]
    """Per feature, the window's categories absent from the reference, sorted."""
    dof: np.ndarray
    """int64 [F]: degrees of freedom, K - 1 for K categories seen in either sample."""


def chisq_test(
    reference: CategoricalReference, window: Mapping[str, Sequence[str | None]]
) -> ChiSquaredResult:
    """Chi-squared test of homogeneity of each categorical feature's window vs its reference.

    The table is 2 x K: reference counts and window counts over the K categories seen in
    either sample (nulls dropped). A category the reference never had is its own column with
    a reference count of 0, so new categories count as evidence of drift. Equal to
    ``scipy.stats.chi2_contingency(table, correction=False)``; with a single category overall
    the test is degenerate and reports statistic 0 and p-value 1.

    Parameters
    ----------
    reference
        The reference counts, built once with :meth:`CategoricalReference.from_columns`.
    window
        Feature name -> the window's values (``None`` = missing), for every reference feature.

    Returns
    -------
    ChiSquaredResult
        Statistic, p-value, window size, degrees of freedom and unseen categories per feature.

    Raises
    ------
    ValueError
        If ``window`` lacks a feature of the reference.

    Examples
    --------
    >>> ref = CategoricalReference.from_columns({"tier": ["free"] * 90 + ["gold"] * 10})
    >>> res = chisq_test(ref, {"tier": ["free"] * 5 + ["gold"] * 4 + ["trial"]})
    >>> res.unseen, bool(res.pvalue[0] < 0.001)
    ((('trial',),), True)
    """
    missing = [name for name in reference.names if name not in window]
    if missing:
        raise ValueError(
            f"window has no values for categorical feature(s) {', '.join(missing)}; "
            f"expected every reference feature ({', '.join(reference.names)})"
        )
    n_features = len(reference.names)
    statistic = np.full(n_features, np.nan)
    n_window = np.zeros(n_features, dtype=np.int64)
    dof = np.zeros(n_features, dtype=np.int64)
    unseen: list[tuple[str, ...]] = []
    # One small table per feature, each with its own number of categories: no common shape to
    # vectorize over, and the work per feature is O(K) once the window is counted.
    for f, name in enumerate(reference.names):
        counter = _count(window[name])
        known = reference.categories[f]
        new = tuple(sorted(set(counter).difference(known)))
        unseen.append(new)
        observed = np.zeros((2, len(known) + len(new)), dtype=np.int64)
        observed[0, : len(known)] = reference.counts[f]
        observed[1] = [counter.get(c, 0) for c in (*known, *new)]
        n_window[f] = observed[1].sum()
        if n_window[f] == 0 or observed[0].sum() == 0:
            continue
        dof[f] = observed.shape[1] - 1
        statistic[f] = _pearson(observed) if dof[f] else 0.0
    pvalue = np.full(n_features, np.nan)
    pvalue[~np.isnan(statistic) & (dof == 0)] = 1.0
    tested = dof > 0
    pvalue[tested] = distributions.chi2.sf(statistic[tested], dof[tested])
    return ChiSquaredResult(
        statistic=statistic, pvalue=pvalue, n_window=n_window, unseen=tuple(unseen), dof=dof
    )


def _count(values: Iterable[str | None]) -> Counter[str]:
    """Non-null category counts; Counter counts in C, faster than sorting strings."""
    counter = Counter(values)
    counter.pop(None, None)
    if any(not isinstance(c, str) for c in counter):
        # Keep keys sortable and comparable with the reference's whatever the source type.
        merged: Counter[str] = Counter()
        for c, k in counter.items():
            merged[str(c)] += k
        counter = merged
    return counter


def _pearson(observed: np.ndarray) -> float:
    """Pearson's statistic with the arithmetic of scipy's chi2_contingency."""
    table = observed.astype(np.float64)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())
