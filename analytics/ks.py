"""Two-sample Kolmogorov-Smirnov drift test, vectorized over all numeric features of a window."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import numpy as np
from scipy.stats import distributions

from analytics._ks_exact import clear_exact_cache, exact_two_sided
from ingest.errors import ConfigError

KSMethod = Literal["auto", "exact", "asymp"]

_METHODS = ("auto", "exact", "asymp")
# ks_2samp's MAX_AUTO_N: 'auto' is exact only while both samples have at most this many values.
_MAX_AUTO_N = 10_000
_INT32_MAX = np.iinfo(np.int32).max
# Bounds each [features x rows] temporary of the statistic to ~8 MiB on a 50,000-row window.
_BLOCK_ELEMENTS = 1 << 20

__all__ = ["KSMethod", "KSReference", "KSResult", "clear_exact_cache", "ks_test"]


@dataclass(frozen=True, eq=False)  # eq=False: fields are arrays, compare by identity
class KSReference:
    """Per-feature reference samples, sorted once (NaNs dropped), reused for every window.

    Pickles as one contiguous float64 buffer plus offsets (see ``__reduce__``), so sending it
    to Dask workers costs a single memory copy whatever the number of features.
    """

    names: tuple[str, ...]
    sorted_values: tuple[np.ndarray, ...]

    @classmethod
    def from_columns(cls, columns: Mapping[str, np.ndarray]) -> KSReference:
        """Build the reference from one array of training values per numeric feature.

        Parameters
        ----------
        columns
            Feature name -> 1-D array-like of float values; NaN marks a missing value. The
            mapping's order is the column order ``ks_test`` expects in its window.

        Returns
        -------
        KSReference
            The sorted, NaN-free samples. A feature whose values are all missing keeps an
            empty array and is reported untestable (NaN) by ``ks_test``.

        Examples
        --------
        >>> ref = KSReference.from_columns({"age": [30.0, float("nan"), 21.0]})
        >>> ref.sorted_values[0]
        array([21., 30.])
        """
        names = tuple(columns)
        arrays = []
        for name in names:
            values = np.asarray(columns[name], dtype=np.float64).ravel()
            arrays.append(values[~np.isnan(values)])
        offsets = np.cumsum([0, *(a.size for a in arrays)], dtype=np.int64)
        packed = np.concatenate([np.empty(0), *arrays])
        for start, stop in pairwise(offsets):
            packed[start:stop].sort()
        return cls._from_packed(names, packed, offsets)

    @classmethod
    def _from_packed(
        cls, names: tuple[str, ...], packed: np.ndarray, offsets: np.ndarray
    ) -> KSReference:
        packed.flags.writeable = False
        views = tuple(packed[a:b] for a, b in pairwise(offsets))
        return cls(names=names, sorted_values=views)

    def __reduce__(self):
        lengths = [v.size for v in self.sorted_values]
        offsets = np.cumsum([0, *lengths], dtype=np.int64)
        packed = np.concatenate([np.empty(0), *self.sorted_values])
        return (KSReference._from_packed, (self.names, packed, offsets))

    @property
    def n_reference(self) -> np.ndarray:
        """Number of (non-NaN) reference values per feature, int64 [F]."""
        return np.array([v.size for v in self.sorted_values], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class KSResult:
    """Per-feature outcome of :func:`ks_test`, arrays in ``KSReference.names`` order.

    ``statistic`` and ``pvalue`` are NaN, and ``method`` is ``'none'``, for a feature with no
    non-NaN value in the window (or in the reference): it could not be tested.
    """

    statistic: np.ndarray
    pvalue: np.ndarray
    n_window: np.ndarray
    n_reference: np.ndarray
    method: tuple[str, ...]


def ks_test(reference: KSReference, window: np.ndarray, method: KSMethod = "auto") -> KSResult:
    """Two-sided two-sample KS test of every feature of a window against its reference.

    Each feature's statistic is identical (``==``) to ``scipy.stats.ks_2samp(ref, win,
    method=method).statistic`` on that feature's non-NaN window values, and its p-value equal
    within 1e-12, including scipy's choice of exact or asymptotic distribution.

    Parameters
    ----------
    reference
        The sorted reference samples, built once with :meth:`KSReference.from_columns`.
    window
        float64 array ``[n_rows, F]``, columns in ``reference.names`` order, NaN = missing.
        A Fortran-ordered array (what Polars' ``to_numpy`` returns) avoids one copy.
    method
        ``'auto'`` (exact when both samples have at most 10,000 values, else asymptotic),
        ``'exact'`` or ``'asymp'``, as in ``scipy.stats.ks_2samp``.

    Returns
    -------
    KSResult
        Statistic, p-value, sample sizes and the method used, per feature.

    Raises
    ------
    ConfigError
        If ``method`` is not one of ``'auto'``, ``'exact'``, ``'asymp'``.
    ValueError
        If ``window`` is not 2-D with one column per reference feature.

    Notes
    -----
    Cost: one sort of the window and ``O(n log m)`` binary searches; the reference is never
    re-sorted nor scanned. Exact p-values (``'auto'`` up to 10,000 values) run scipy's
    compiled lattice recursion, ``O(D * m * n)`` per feature as inside ``ks_2samp``, which
    dominates e.g. 1,000 window rows against 10,000 reference values. It is memoized on
    ``(m, n, round(D * lcm(m, n)))``, which recurs across NaN-free windows of a fixed size.

    Examples
    --------
    >>> ref = KSReference.from_columns({"x": np.arange(100.0)})
    >>> res = ks_test(ref, np.arange(50.0, 60.0).reshape(-1, 1))
    >>> float(res.statistic[0]), res.method
    (0.5, ('exact',))
    """
    if method not in _METHODS:
        raise ConfigError(
            f"KS method must be one of {', '.join(_METHODS)}; got {method!r}. "
            "Fix the ks_method setting."
        )
    values = np.asarray(window, dtype=np.float64)
    n_features = len(reference.names)
    if values.ndim != 2 or values.shape[1] != n_features:
        raise ValueError(
            f"window must be a 2-D array [rows, {n_features}] with one column per reference "
            f"feature ({', '.join(reference.names)}); got shape {values.shape}"
        )
    m = reference.n_reference
    statistic, n = _statistic(reference.sorted_values, values, m)
    testable = (n > 0) & (m > 0)
    pvalue = np.full(n_features, np.nan)
    used = np.full(n_features, "none", dtype=object)

    g = np.gcd(m, n)
    mg, ng = m // np.maximum(g, 1), n // np.maximum(g, 1)
    if method == "auto":
        exact = testable & (np.maximum(m, n) <= _MAX_AUTO_N)
    elif method == "exact":
        # ks_2samp's guard: beyond int32 the lattice is too large and it falls back to asymp.
        with np.errstate(divide="ignore"):
            exact = testable & ~(mg >= _INT32_MAX / ng)
    else:
        exact = np.zeros(n_features, dtype=bool)

    # A loop over features because scipy's exact recursion is scalar; its cost (not the loop)
    # is what matters, and the cache removes repeats.
    for f in np.flatnonzero(exact):
        lcm = int(mg[f]) * int(n[f])
        h = int(np.round(statistic[f] * lcm))
        ok, d, p = exact_two_sided(int(m[f]), int(n[f]), h)
        statistic[f] = d  # ks_2samp reports D snapped to the lattice, h / lcm
        if ok:
            pvalue[f], used[f] = p, "exact"

    asymp = testable & np.isnan(pvalue)
    if asymp.any():
        big = np.maximum(m[asymp], n[asymp]).astype(np.float64)
        small = np.minimum(m[asymp], n[asymp]).astype(np.float64)
        en = big * small / (big + small)
        # en rounds to 0 only for m = n = 1: scipy's p-value is then NaN, and so is ours.
        with np.errstate(divide="ignore", invalid="ignore"):
            p_asymp = distributions.kstwo.sf(statistic[asymp], np.round(en))
        pvalue[asymp] = np.clip(p_asymp, 0, 1)
        used[asymp] = "asymp"

    return KSResult(
        statistic=statistic,
        pvalue=pvalue,
        n_window=n.astype(np.int64),
        n_reference=m,
        method=tuple(used),
    )


def _statistic(
    sorted_reference: tuple[np.ndarray, ...], values: np.ndarray, m: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """KS statistic and non-NaN window count per feature of ``values`` [rows, F].

    Between two consecutive distinct window values the window ECDF is flat and the reference
    ECDF can only rise, so the largest gap is found at a window value: either just below it
    (reference count ``#ref < v``) or at it (``#ref <= v``). Each gap is computed as ks_2samp
    does, count_ref / m - count_win / n in float64, so the maximum is bitwise the same.
    """
    n_rows, n_features = values.shape
    statistic = np.full(n_features, np.nan)
    n = np.zeros(n_features, dtype=np.int64)
    if n_rows == 0:
        return statistic, n
    block = max(1, _BLOCK_ELEMENTS // n_rows)
    rank = np.arange(n_rows, dtype=np.int64)
    for lo in range(0, n_features, block):  # blocks bound memory; the work is vectorized
        # Copying a few columns at a time into rows reads whole cache lines even from a
        # C-ordered window; from a Fortran-ordered one (Polars) it is a plain copy.
        x = np.array(values[:, lo : lo + block].T, order="C")
        x.sort(axis=1)  # NaN sorts last: each row's first n values are its sample
        hi = lo + x.shape[0]
        n[lo:hi] = n_rows - np.isnan(x).sum(axis=1)
        nb, mb = n[lo:hi, None], m[lo:hi, None]
        valid = rank < nb
        starts = np.empty(x.shape, dtype=bool)  # first element of each run of equal values
        starts[:, 0] = True
        np.not_equal(x[:, 1:], x[:, :-1], out=starts[:, 1:])
        ends = np.empty(x.shape, dtype=bool)  # last element of each run
        ends[:, -1] = True
        ends[:, :-1] = starts[:, 1:]
        below = np.zeros(x.shape, dtype=np.int64)  # #ref < x, read at run starts
        at = np.zeros(x.shape, dtype=np.int64)  # #ref <= x, read at run ends
        # np.searchsorted is 1-D and reference lengths differ: a few C calls per feature.
        for i, f in enumerate(range(lo, hi)):
            _reference_counts(sorted_reference[f], x[i, : n[f]], below[i], at[i])
        safe_m, safe_n = np.maximum(mb, 1), np.maximum(nb, 1)
        gap_below = np.abs(below / safe_m - rank / safe_n)
        gap_at = np.abs(at / safe_m - (rank + 1) / safe_n)
        gap_below[~(starts & valid)] = 0.0
        gap_at[~(ends & valid)] = 0.0
        statistic[lo:hi] = np.maximum(gap_below.max(axis=1), gap_at.max(axis=1))
    statistic[(n == 0) | (m == 0)] = np.nan
    return statistic, n


def _reference_counts(ref: np.ndarray, win: np.ndarray, below: np.ndarray, at: np.ndarray):
    """Fill ``below[k] = #ref < win[k]`` at run starts, ``at[k] = #ref <= win[k]`` at run ends.

    Binary searches go from the smaller sample into the larger one: the window's values into
    the reference or, for a window longer than the reference, the reference's values into the
    window, turned into counts by a cumulative histogram. That works because, for a reference
    value r and a run of equal window values starting at s and ending at k, ``#win < r`` and
    ``#win <= r`` never fall strictly inside the run: ``#win < r <= k`` exactly when
    ``r <= win[k]``, and ``#win <= r <= s`` exactly when ``r < win[s]``.
    """
    k = win.size
    if k == 0 or ref.size == 0:
        return
    if k <= ref.size:
        left = np.searchsorted(ref, win, side="left")
        below[:k] = at[:k] = left
        # #ref <= v differs from #ref < v only where v is also a reference value: search
        # again just for those (few, unless the data are discrete).
        tied = ref[np.minimum(left, ref.size - 1)] == win
        if tied.any():
            at[:k][tied] = np.searchsorted(ref, win[tied], side="right")
    else:
        at[:k] = _at_most(np.searchsorted(win, ref, side="left"), k)
        below[:k] = _at_most(np.searchsorted(win, ref, side="right"), k)


def _at_most(positions: np.ndarray, k: int) -> np.ndarray:
    """``out[j] = #(positions <= j)`` for j in 0..k-1."""
    return np.bincount(positions, minlength=k + 1)[:k].cumsum()
