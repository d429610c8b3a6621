"""Two-sample Kolmogorov-Smirnov drift test, vectorized over all numeric features of a window."""

from __future__ import annotations

import math
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

__all__ = [
    "KSMethod",
    "KSReference",
    "KSResult",
    "clear_exact_cache",
    "ks_test",
    "ks_test_many",
]


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
    :func:`ks_test_many` tests many windows of one size in one call.

    Examples
    --------
    >>> ref = KSReference.from_columns({"x": np.arange(100.0)})
    >>> res = ks_test(ref, np.arange(50.0, 60.0).reshape(-1, 1))
    >>> float(res.statistic[0]), res.method
    (0.5, ('exact',))
    """
    values = np.asarray(window, dtype=np.float64)
    n_features = len(reference.names)
    if values.ndim != 2 or values.shape[1] != n_features:
        raise ValueError(
            f"window must be a 2-D array [rows, {n_features}] with one column per reference "
            f"feature ({', '.join(reference.names)}); got shape {values.shape}"
        )
    many = ks_test_many(reference, values[None], method)
    return KSResult(
        statistic=many.statistic[0],
        pvalue=many.pvalue[0],
        n_window=many.n_window[0],
        n_reference=many.n_reference,
        method=many.method[0],
    )


def ks_test_many(
    reference: KSReference, windows: np.ndarray, method: KSMethod = "auto"
) -> KSResult:
    """:func:`ks_test` of many windows of the same number of rows at once.

    Parameters
    ----------
    reference
        As for :func:`ks_test`.
    windows
        float64 array ``[W, n_rows, F]``: ``windows[w]`` is a window as :func:`ks_test`
        takes it (NaN = missing, so windows with fewer values pad with NaN).
    method
        As for :func:`ks_test`.

    Returns
    -------
    KSResult
        ``statistic``, ``pvalue`` and ``n_window`` of shape ``[W, F]``, ``n_reference`` of
        shape ``[F]``, ``method`` a tuple of ``W`` tuples of ``F``; ``[w]`` of each is
        exactly what :func:`ks_test` returns for ``windows[w]``.

    Raises
    ------
    ConfigError, ValueError
        As :func:`ks_test` (``windows`` must be 3-D with one column per feature).
    """
    if method not in _METHODS:
        raise ConfigError(
            f"KS method must be one of {', '.join(_METHODS)}; got {method!r}. "
            "Fix the ks_method setting."
        )
    values = np.asarray(windows, dtype=np.float64)
    n_features = len(reference.names)
    if values.ndim != 3 or values.shape[2] != n_features:
        raise ValueError(
            f"windows must be a 3-D array [windows, rows, {n_features}] with one column per "
            f"reference feature ({', '.join(reference.names)}); got shape {values.shape}"
        )
    m1 = reference.n_reference
    statistic, n = _statistic(reference.sorted_values, values, m1)
    m = np.broadcast_to(m1, n.shape)
    testable = (n > 0) & (m > 0)
    pvalue = np.full(n.shape, np.nan)
    used = np.full(n.shape, "none", dtype=object)

    g = np.gcd(m, n)
    mg, ng = m // np.maximum(g, 1), n // np.maximum(g, 1)
    if method == "auto":
        exact = testable & (np.maximum(m, n) <= _MAX_AUTO_N)
    elif method == "exact":
        # ks_2samp's guard: beyond int32 the lattice is too large and it falls back to asymp.
        with np.errstate(divide="ignore"):
            exact = testable & ~(mg >= _INT32_MAX / ng)
    else:
        exact = np.zeros(n.shape, dtype=bool)

    if exact.any():
        # scipy's exact recursion is scalar: one call per distinct (m, n, D) of the windows
        # (D takes few lattice values), each memoized across calls
        lcm = mg[exact] * n[exact]
        h = np.round(statistic[exact] * lcm).astype(np.int64)
        distinct, inverse = _distinct_rows(m[exact], n[exact], h)
        found = [exact_two_sided(int(a), int(b), int(c)) for a, b, c in distinct.tolist()]
        ok = np.array([f[0] for f in found], dtype=bool)[inverse]
        d = np.array([f[1] for f in found], dtype=np.float64)[inverse]
        p = np.array([f[2] for f in found], dtype=np.float64)[inverse]
        statistic[exact] = d  # ks_2samp reports D snapped to the lattice, h / lcm
        where = np.flatnonzero(exact.ravel())[ok]
        pvalue.ravel()[where] = p[ok]
        used.ravel()[where] = "exact"

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
        n_reference=m1,
        method=tuple(tuple(row) for row in used.tolist()),
    )


def _distinct_rows(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of non-negative int64 ``columns`` (as ``[k, len(columns)]``) and
    each row's index among them; one int64 key a row when the columns' ranges fit in it."""
    spans = [int(c.max()) + 1 if c.size else 1 for c in columns]
    if math.prod(spans) < 2**63:
        key = np.zeros(columns[0].shape, dtype=np.int64)
        for c, span in zip(columns, spans, strict=True):
            key = key * span + c
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        return np.stack(columns, axis=1)[first], inverse.reshape(-1)
    distinct, inverse = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
    return distinct, inverse.reshape(-1)


def _statistic(
    sorted_reference: tuple[np.ndarray, ...], values: np.ndarray, m: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """KS statistic and non-NaN window count per window and feature of ``values``
    ``[W, rows, F]``, each ``[W, F]``.

    Between two consecutive distinct window values the window ECDF is flat and the reference
    ECDF can only rise, so the largest gap is found at a window value: either just below it
    (reference count ``#ref < v``) or at it (``#ref <= v``). Each gap is computed as ks_2samp
    does, count_ref / m - count_win / n in float64, so the maximum is bitwise the same.
    """
    n_windows, n_rows, n_features = values.shape
    statistic = np.full((n_windows, n_features), np.nan)
    n = np.zeros((n_windows, n_features), dtype=np.int64)
    if n_rows == 0 or n_windows == 0:
        return statistic, n
    block = max(1, _BLOCK_ELEMENTS // (n_rows * n_windows))
    rank = np.arange(n_rows, dtype=np.int64)
    for lo in range(0, n_features, block):  # blocks bound memory; the work is vectorized
        # [features, windows, rows]: each (feature, window) a row of values, sorted
        x = np.array(values[:, :, lo : lo + block].transpose(2, 0, 1), order="C")
        x.sort(axis=2)  # NaN sorts last: each row's first n values are its sample
        hi = lo + x.shape[0]
        nb = n_rows - np.isnan(x).sum(axis=2)  # [features, windows]
        n[:, lo:hi] = nb.T
        valid = rank < nb[:, :, None]
        starts = np.empty(x.shape, dtype=bool)  # first element of each run of equal values
        starts[:, :, 0] = True
        np.not_equal(x[:, :, 1:], x[:, :, :-1], out=starts[:, :, 1:])
        ends = np.empty(x.shape, dtype=bool)  # last element of each run
        ends[:, :, -1] = True
        ends[:, :, :-1] = starts[:, :, 1:]
        below = np.zeros(x.shape, dtype=np.int64)  # #ref < x, read at run starts
        at = np.zeros(x.shape, dtype=np.int64)  # #ref <= x, read at run ends
        # np.searchsorted is 1-D and reference lengths differ: a few C calls per feature
        for i, f in enumerate(range(lo, hi)):
            ref = sorted_reference[f]
            if ref.size == 0:
                continue
            if n_rows <= 8 * ref.size:  # every window's values into the reference at once
                _search_reference(ref, x[i].reshape(-1), below[i].reshape(-1), at[i].reshape(-1))
            else:
                for w in range(n_windows):
                    k = nb[i, w]
                    _reference_counts(ref, x[i, w, :k], below[i, w], at[i, w])
        safe_m = np.maximum(m[lo:hi], 1)[:, None, None]
        safe_n = np.maximum(nb, 1)[:, :, None]
        gap_below = np.abs(below / safe_m - rank / safe_n)
        gap_at = np.abs(at / safe_m - (rank + 1) / safe_n)
        # a gap counts only at its run's start (below) or end (at): the others are zeroed
        # by a product (gaps are finite and >= 0), which is cheaper than masking them out
        largest = np.maximum(
            (gap_below * (starts & valid)).max(axis=2), (gap_at * (ends & valid)).max(axis=2)
        )
        statistic[:, lo:hi] = largest.T
    statistic[(n == 0) | (m[None, :] == 0)] = np.nan
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
        _search_reference(ref, win, below[:k], at[:k])
    else:
        at[:k] = _at_most(np.searchsorted(win, ref, side="left"), k)
        below[:k] = _at_most(np.searchsorted(win, ref, side="right"), k)


def _search_reference(ref: np.ndarray, win: np.ndarray, below: np.ndarray, at: np.ndarray):
    """Fill ``below = #ref < win`` and ``at = #ref <= win`` elementwise (views written
    through) by binary searches of ``win`` into the non-empty ``ref``; a NaN counts all of
    ``ref`` as below it."""
    left = np.searchsorted(ref, win, side="left")
    below[:] = left
    at[:] = left
    # #ref <= v differs from #ref < v only where v is also a reference value: search
    # again just for those (few, unless the data are discrete).
    tied = ref[np.minimum(left, ref.size - 1)] == win
    if tied.any():
        at[tied] = np.searchsorted(ref, win[tied], side="right")


def _at_most(positions: np.ndarray, k: int) -> np.ndarray:
    """``out[j] = #(positions <= j)`` for j in 0..k-1."""
    return np.bincount(positions, minlength=k + 1)[:k].cumsum()
