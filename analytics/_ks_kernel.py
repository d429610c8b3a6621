"""Compiled KS statistic: each sorted window walked once along its sorted reference.

Imported on first use by :mod:`analytics.ks`, so that importing ``analytics`` does not import
numba. The kernel is compiled for its one signature when this module is imported (about 2 s)
and cached on disk, in ``NUMBA_CACHE_DIR`` if set and writable, else next to this file or in
the user's cache directory, whichever is writable; with none, every process compiles it in
memory once. fastmath stays off: each gap must be the float64 operations
``scipy.stats.ks_2samp`` performs.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Values of the counted sample compared per step of the walk, all of them, so that the step
# costs no branch a value.
_BLOCK = 8
# Blocks compared before a longer jump gallops instead: without the gallop a walk would cost
# O(n + m), the larger sample's size (a large reference) for every window.
_BLOCKS = 4

_SIGNATURE = (
    "Tuple((float64[:, ::1], int64[:, ::1]))"
    "(float64[:, :, ::1], float64[::1], int64[::1], int64[::1])"
)


@njit(inline="always")
def _gallop(b: np.ndarray, lo: int, v: float, inclusive: bool) -> int:
    """The first k in ``[lo, b.size]`` with ``k == b.size`` or ``b[k] > v`` (``inclusive``),
    else ``b[k] >= v``, for ``b`` sorted and every ``b[:lo]`` before that point: steps that
    double, then bisection, so a far point costs O(log distance) comparisons."""
    end = b.size
    step = 1
    while True:
        hi = lo + step
        if hi >= end:
            hi = end
            break
        if b[hi] > v if inclusive else b[hi] >= v:
            break
        lo, step = hi + 1, 2 * step
    while lo < hi:  # the point is in [lo, hi]
        mid = (lo + hi) >> 1
        if b[mid] > v if inclusive else b[mid] >= v:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(inline="always")
def _past(b: np.ndarray, j: int, v: float, inclusive: bool) -> int:
    """As :func:`_gallop`, for the point mostly a few values past ``j``."""
    # consecutive values of the walked sample are mostly a few values of the other apart: a
    # block or two holds the point (b is sorted, so the count of hits is how far it is); a
    # longer jump, or one near the end of b, gallops
    for _ in range(_BLOCKS):
        if j + _BLOCK > b.size:
            return _gallop(b, j, v, inclusive)
        c = 0
        for k in range(_BLOCK):
            c += (b[j + k] <= v) if inclusive else (b[j + k] < v)
        j += c
        if c < _BLOCK:
            return j
    return _gallop(b, j, v, inclusive)


@njit(inline="always")
def _largest_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Largest ECDF gap between samples ``a`` and ``b``, both sorted and non-empty, walking
    the runs of equal values of ``a``.

    A run of v at ranks ``s..e`` of ``a`` gives two gaps: ``|s/na - #b<v / nb|`` just below v
    and ``|(e + 1)/na - #b<=v / nb|`` at v. Between two runs of ``a`` its ECDF is flat and that
    of ``b`` only rises, so the gap moves monotonically there (in float64 too: division and
    subtraction round monotonically) and is largest at one end, so these are the largest gap
    of all. Each is ks_2samp's ``cdf1 - cdf2`` at a point of the pooled sample (or 0), the
    same two int-to-float64 divisions and subtraction up to a sign that ``abs`` drops, so the
    maximum is bitwise ks_2samp's whichever sample ``a`` is.
    """
    na, nb = a.size, b.size
    largest = 0.0
    i = 0
    j = 0  # #b < v, then #b <= v: only moves forward
    while i < na:
        v = a[i]
        j = _past(b, j, v, False)
        gap = abs(i / na - j / nb)
        if gap > largest:
            largest = gap
        i += 1
        while i < na and a[i] == v:  # to the run's end
            i += 1
        if j < nb and b[j] == v:  # only then does #b <= v exceed #b < v
            j = _past(b, j, v, True)
        gap = abs(i / na - j / nb)
        if gap > largest:
            largest = gap
    return largest


def _cached_jit(signature: str):
    """njit compiled now for ``signature``, cached on disk when numba finds a writable cache
    directory, else in memory only."""

    def decorate(fn):
        try:
            return njit(signature, cache=True, nogil=True)(fn)
        except RuntimeError:  # numba's "no locator available": nowhere writable to cache
            return njit(signature, nogil=True)(fn)

    return decorate


@_cached_jit(_SIGNATURE)
def ks_statistics(
    windows: np.ndarray, references: np.ndarray, starts: np.ndarray, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """KS statistic and non-NaN count of each window, both ``[F, W]``.

    ``windows[f, w]`` holds window w's values of feature f sorted with NaNs last (the NaNs
    are not part of the sample). Feature f's reference is
    ``references[starts[f]:starts[f] + sizes[f]]``, sorted and NaN-free. The statistic is NaN
    where the window or the reference is empty.

    Raises ValueError if a reference lies outside ``references``.
    """
    n_features, n_windows, n_rows = windows.shape
    if starts.size != n_features or sizes.size != n_features:
        raise ValueError("ks_statistics: one reference start and size per feature")
    for f in range(n_features):
        if starts[f] < 0 or sizes[f] < 0 or starts[f] + sizes[f] > references.size:
            raise ValueError("ks_statistics: a reference lies outside the references array")
    statistic = np.empty((n_features, n_windows))
    counts = np.empty((n_features, n_windows), dtype=np.int64)
    for f in range(n_features):
        reference = references[starts[f] : starts[f] + sizes[f]]
        for w in range(n_windows):
            row = windows[f, w]
            n = n_rows
            while n > 0 and math.isnan(row[n - 1]):
                n -= 1
            counts[f, w] = n
            if n == 0 or reference.size == 0:
                statistic[f, w] = np.nan
            elif n <= reference.size:  # walk the smaller sample, count into the larger
                statistic[f, w] = _largest_gap(row[:n], reference)
            else:
                statistic[f, w] = _largest_gap(reference, row[:n])
    return statistic, counts
