"""Two-sample Kolmogorov-Smirnov drift test, vectorized over all numeric features of a window."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
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
# Bounds the statistic's sorted copy of the windows to ~8 MiB a block of features.
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

    @cached_property
    def _packed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The samples as :func:`analytics._ks_kernel.ks_statistics` takes them: one writable
        float64 buffer holding them all, each one's start in it, and size."""
        sizes = self.n_reference
        starts = np.zeros(sizes.size, dtype=np.int64)
        np.cumsum(sizes[:-1], out=starts[1:])
        return np.concatenate([np.empty(0), *self.sorted_values]), starts, sizes

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
    Cost: one sort of the window, then one compiled walk of the smaller sample along the
    larger, ``O(min(n, m) log(max(n, m) / min(n, m)))`` comparisons; the reference is never
    re-sorted. The first call in a process loads numba and the compiled
    kernel (about a second; it is compiled once and cached on disk). Exact p-values
    (``'auto'`` up to 10,000 values) run scipy's compiled lattice recursion, ``O(D * m * n)``
    per feature as inside ``ks_2samp``, which dominates e.g. 1,000 window rows against 10,000
    reference values. It is memoized on ``(m, n, round(D * lcm(m, n)))``, which recurs across
    NaN-free windows of a fixed size.
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
    statistic, n = _statistic(reference, values)
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


def _statistic(reference: KSReference, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KS statistic and non-NaN window count per window and feature of ``values``
    ``[W, rows, F]``, each ``[W, F]``; the statistic is NaN where either sample is empty.

    numpy sorts each (feature, window) row, NaN last; the compiled kernel
    (:func:`analytics._ks_kernel.ks_statistics`) walks it along the sorted reference and
    computes each gap as ks_2samp does, so the statistic is bitwise ks_2samp's.
    """
    from analytics._ks_kernel import ks_statistics  # numba loads on first use only

    n_windows, n_rows, n_features = values.shape
    statistic = np.full((n_windows, n_features), np.nan)
    n = np.zeros((n_windows, n_features), dtype=np.int64)
    if n_rows == 0 or n_windows == 0:
        return statistic, n
    references, starts, sizes = reference._packed
    block = max(1, _BLOCK_ELEMENTS // (n_rows * n_windows))
    for lo in range(0, n_features, block):
        hi = min(lo + block, n_features)
        # [features, windows, rows]: each (feature, window) a row of values, sorted NaN last
        x = np.array(values[:, :, lo:hi].transpose(2, 0, 1), order="C")
        x.sort(axis=2)
        block_statistic, block_n = ks_statistics(x, references, starts[lo:hi], sizes[lo:hi])
        statistic[:, lo:hi] = block_statistic.T
        n[:, lo:hi] = block_n.T
    return statistic, n
