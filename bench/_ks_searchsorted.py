"""The numpy KS statistic that analytics._ks_kernel replaced, kept as bench.ks_statistic's
baseline: np.searchsorted of every window value into the reference, gaps over
``[features, windows, rows]`` arrays. Same results, bitwise."""

from __future__ import annotations

import numpy as np

from analytics.ks import KSReference

_BLOCK_ELEMENTS = 1 << 20


def statistic(reference: KSReference, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """As ``analytics.ks._statistic``: KS statistic and non-NaN count, each ``[W, F]``."""
    sorted_reference, m = reference.sorted_values, reference.n_reference
    n_windows, n_rows, n_features = values.shape
    result = np.full((n_windows, n_features), np.nan)
    n = np.zeros((n_windows, n_features), dtype=np.int64)
    if n_rows == 0 or n_windows == 0:
        return result, n
    block = max(1, _BLOCK_ELEMENTS // (n_rows * n_windows))
    rank = np.arange(n_rows, dtype=np.int64)
    for lo in range(0, n_features, block):
        x = np.array(values[:, :, lo : lo + block].transpose(2, 0, 1), order="C")
        x.sort(axis=2)
        hi = lo + x.shape[0]
        nb = n_rows - np.isnan(x).sum(axis=2)
        n[:, lo:hi] = nb.T
        valid = rank < nb[:, :, None]
        starts = np.empty(x.shape, dtype=bool)
        starts[:, :, 0] = True
        np.not_equal(x[:, :, 1:], x[:, :, :-1], out=starts[:, :, 1:])
        ends = np.empty(x.shape, dtype=bool)
        ends[:, :, -1] = True
        ends[:, :, :-1] = starts[:, :, 1:]
        below = np.zeros(x.shape, dtype=np.int64)
        at = np.zeros(x.shape, dtype=np.int64)
        for i, f in enumerate(range(lo, hi)):
            ref = sorted_reference[f]
            if ref.size == 0:
                continue
            if n_rows <= 8 * ref.size:
                _search_reference(ref, x[i].reshape(-1), below[i].reshape(-1), at[i].reshape(-1))
            else:
                for w in range(n_windows):
                    k = nb[i, w]
                    _reference_counts(ref, x[i, w, :k], below[i, w], at[i, w])
        safe_m = np.maximum(m[lo:hi], 1)[:, None, None]
        safe_n = np.maximum(nb, 1)[:, :, None]
        gap_below = np.abs(below / safe_m - rank / safe_n)
        gap_at = np.abs(at / safe_m - (rank + 1) / safe_n)
        largest = np.maximum(
            (gap_below * (starts & valid)).max(axis=2), (gap_at * (ends & valid)).max(axis=2)
        )
        result[:, lo:hi] = largest.T
    result[(n == 0) | (m[None, :] == 0)] = np.nan
    return result, n


def _reference_counts(ref: np.ndarray, win: np.ndarray, below: np.ndarray, at: np.ndarray):
    k = win.size
    if k == 0 or ref.size == 0:
        return
    if k <= ref.size:
        _search_reference(ref, win, below[:k], at[:k])
    else:
        at[:k] = _at_most(np.searchsorted(win, ref, side="left"), k)
        below[:k] = _at_most(np.searchsorted(win, ref, side="right"), k)


def _search_reference(ref: np.ndarray, win: np.ndarray, below: np.ndarray, at: np.ndarray):
    left = np.searchsorted(ref, win, side="left")
    below[:] = left
    at[:] = left
    tied = ref[np.minimum(left, ref.size - 1)] == win
    if tied.any():
        at[tied] = np.searchsorted(ref, win[tied], side="right")


def _at_most(positions: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(positions, minlength=k + 1)[:k].cumsum()
