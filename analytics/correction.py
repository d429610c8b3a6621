"""Multiple-testing correction over the per-feature p-values of one window."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from ingest.errors import ConfigError

Correction = Literal["bonferroni", "fdr", "none"]

_CORRECTIONS: tuple[str, ...] = get_args(Correction)

__all__ = ["Correction", "Decision", "correct", "correct_many"]


@dataclass(frozen=True, eq=False)  # eq=False: fields hold arrays, compare by identity
class Decision:
    """Which features drift after correction, and how that was decided.

    A feature is flagged exactly when its raw p-value is ``<= threshold`` (NaN never is).
    """

    drifted: np.ndarray
    """bool [F]: flagged after correction."""
    threshold: float
    """The per-test p-value threshold applied: ``alpha / k`` (bonferroni), the largest p-value
    Benjamini-Hochberg rejects or 0.0 if none (fdr), ``alpha`` (none)."""
    adjusted: np.ndarray
    """float64 [F]: ``min(1, p * k)`` (bonferroni), BH-adjusted (fdr) or ``p`` (none); NaN
    where ``p`` is NaN."""


def correct(
    pvalues: np.ndarray, alpha: float = 0.05, method: Correction = "bonferroni"
) -> Decision:
    """Flag drifting features while controlling false alarms across the features of a window.

    Parameters
    ----------
    pvalues
        Raw p-values, one per feature; NaN marks a feature that could not be tested. NaNs are
        never flagged and do not count in the number of tests ``k``.
    alpha
        Family-wise error rate (bonferroni), false discovery rate (fdr) or per-test level
        (none); ``0 < alpha < 1``.
    method
        ``'bonferroni'`` (default), ``'fdr'`` (Benjamini-Hochberg step-up) or ``'none'``.

    Returns
    -------
    Decision
        The flags, the threshold applied to raw p-values, and the adjusted p-values.

    Raises
    ------
    ConfigError
        If ``method`` or ``alpha`` is not one of the accepted values.
    ValueError
        If a p-value is outside [0, 1] or ``pvalues`` is not 1-D.

    Examples
    --------
    >>> d = correct(np.array([0.001, 0.03, np.nan]), alpha=0.05, method="bonferroni")
    >>> d.drifted.tolist(), d.threshold
    ([True, False, False], 0.025)
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be a 1-D array, one per feature; got shape {p.shape}")
    drifted, threshold, adjusted = correct_many(p[None, :], alpha, method)
    return Decision(drifted=drifted[0], threshold=float(threshold[0]), adjusted=adjusted[0])


def correct_many(
    pvalues: np.ndarray, alpha: float = 0.05, method: Correction = "bonferroni"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`correct` of each row of ``pvalues`` (float64 ``[W, F]``, a window a row) at once.

    Returns
    -------
    drifted, threshold, adjusted
        bool ``[W, F]``, float64 ``[W]`` and float64 ``[W, F]``: row ``w`` of each is the
        ``Decision`` field :func:`correct` gives for ``pvalues[w]``, to the bit.

    Raises
    ------
    ConfigError, ValueError
        As :func:`correct` (``pvalues`` must be 2-D).
    """
    if method not in _CORRECTIONS:
        raise ConfigError(
            f"correction must be one of {', '.join(_CORRECTIONS)}; got {method!r}. "
            "Fix the correction setting."
        )
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, int | float | np.floating | np.integer)
        or not math.isfinite(alpha)
        or not 0 < alpha < 1
    ):
        raise ConfigError(
            f"alpha must be a number strictly between 0 and 1 (e.g. 0.05); got {alpha!r}. "
            "Fix the alpha setting."
        )
    alpha = float(alpha)
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"pvalues must be a 2-D array [windows, features]; got shape {p.shape}")
    tested = ~np.isnan(p)
    if np.any((p[tested] < 0) | (p[tested] > 1)):
        raise ValueError("pvalues must lie in [0, 1] (NaN for untestable features)")
    k = tested.sum(axis=1)

    if method == "none":
        threshold, adjusted = np.full(len(p), alpha), p.copy()
    elif method == "bonferroni":
        # With nothing tested nothing can be flagged; alpha keeps the threshold meaningful.
        threshold = np.where(k > 0, alpha / np.maximum(k, 1), alpha)
        adjusted = np.minimum(1.0, p * k[:, None])
    else:
        threshold = np.zeros(len(p))
        adjusted = np.full(p.shape, np.nan)
        for w, row in enumerate(p):
            mask = tested[w]
            adjusted[w, mask] = _benjamini_hochberg(row[mask])
            rejected = mask & (adjusted[w] <= alpha)
            # Adjusted values are monotone in p, so BH rejects exactly the p-values up to
            # this one.
            threshold[w] = row[rejected].max() if rejected.any() else 0.0
    drifted = tested & (p <= threshold[:, None])
    return drifted, threshold, adjusted


def _benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values, with the arithmetic of scipy.stats.false_discovery_control."""
    k = p.size
    if k <= 1:
        return p.copy()
    order = np.argsort(p)
    ranked = p[order] * (k / np.arange(1, k + 1, dtype=np.float64))
    # Step-up: each adjusted value is the smallest scaled p-value at or above its rank.
    np.minimum.accumulate(ranked[::-1], out=ranked[::-1])
    adjusted = np.empty(k)
    adjusted[order] = np.clip(ranked, 0, 1)
    return adjusted
