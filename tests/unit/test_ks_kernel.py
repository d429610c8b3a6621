"""The compiled KS statistic is bitwise scipy.stats.ks_2samp's, whatever the samples' shapes.

Oracle: ``scipy.stats.ks_2samp(reference, window_without_nans, method="asymp").statistic``,
the raw D (the exact method snaps D to its lattice, which ``ks_test_many`` does after).
Tolerance: none, the float64 bits are equal; an empty window or reference gives NaN.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from analytics._ks_kernel import ks_statistics
from analytics.ks import KSReference, _statistic

pytestmark = [
    pytest.mark.unit,
    pytest.mark.timeout(120),
    # ks_2samp's asymptotic p-value, unused here, divides by zero for one-value samples
    pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning"),
]


def values(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    if kind == "discrete":  # a handful of values: long runs and ties across the samples
        return rng.integers(-2, 3, size=size).astype(np.float64)
    if kind == "rounded":
        return np.round(rng.normal(size=size), 1)
    if kind == "constant":
        return np.full(size, 1.5)
    if kind == "extremes":  # infinities and both zeros, which compare equal
        return rng.choice([-np.inf, -1.0, -0.0, 0.0, 2.0, np.inf], size=size)
    if kind == "far":  # a few values beyond the other sample's range, so the walk gallops
        out = rng.normal(size=size)
        out[rng.random(size) < 0.05] += 1e6
        return out
    return rng.normal(rng.choice([0.0, 0.5]), 1.0, size=size)


KINDS = ["continuous", "discrete", "rounded", "constant", "extremes", "far"]


def assert_bitwise_ks_2samp(reference: KSReference, windows: np.ndarray) -> None:
    statistic, n = _statistic(reference, windows)
    assert statistic.shape == n.shape == (windows.shape[0], windows.shape[2])
    for w in range(windows.shape[0]):
        for f, ref in enumerate(reference.sorted_values):
            win = windows[w, :, f][~np.isnan(windows[w, :, f])]
            assert n[w, f] == win.size
            if win.size == 0 or ref.size == 0:
                assert np.isnan(statistic[w, f])
                continue
            want = stats.ks_2samp(ref, win, method="asymp").statistic
            got = statistic[w, f]
            assert np.float64(got).tobytes() == np.float64(want).tobytes(), (w, f, got, want)


@st.composite
def samples(draw: st.DrawFn) -> tuple[KSReference, np.ndarray]:
    """Up to 4 features, each with its own reference length (0 included) and kind of data;
    windows from empty to 8x longer than a reference, with NaN shares from none to all."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_features = draw(st.integers(1, 4))
    n_windows = draw(st.integers(1, 4))
    rows = draw(st.one_of(st.integers(0, 12), st.integers(13, 1500)))
    columns, windows = {}, np.empty((n_windows, rows, n_features))
    for f in range(n_features):
        size = draw(st.one_of(st.just(0), st.integers(1, 12), st.integers(13, 600)))
        columns[f"x{f}"] = values(rng, size, draw(st.sampled_from(KINDS)))
        windows[:, :, f] = values(rng, n_windows * rows, draw(st.sampled_from(KINDS))).reshape(
            n_windows, rows
        )
        nan_share = draw(st.sampled_from([0.0, 0.0, 0.3, 0.95, 1.0]))
        windows[:, :, f][rng.random((n_windows, rows)) < nan_share] = np.nan
    return KSReference.from_columns(columns), windows


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=samples())
def test_statistic_is_bitwise_ks_2samp(case):
    reference, windows = case
    assert_bitwise_ks_2samp(reference, windows)


@settings(max_examples=300, deadline=None)
@given(
    ref=st.lists(st.floats(allow_nan=False, allow_subnormal=False, width=64), max_size=20),
    win=st.lists(st.one_of(st.floats(width=64), st.sampled_from([0.0, -0.0, 1.0])), max_size=20),
)
def test_statistic_is_bitwise_ks_2samp_on_any_floats(ref, win):
    # hypothesis shrinks failures to a minimal pair of samples; any float64 but NaN in the
    # reference (from_columns drops NaN), NaN meaning missing in the window
    assert_bitwise_ks_2samp(
        KSReference.from_columns({"x": np.array(ref, dtype=np.float64)}),
        np.array(win, dtype=np.float64).reshape(1, -1, 1),
    )


@pytest.mark.parametrize(
    ("rows", "size"),
    [(3, 50_000), (50_000, 3), (1, 1), (2_000, 2_000), (20_000, 700)],
    ids=["tiny-window", "tiny-reference", "one-each", "equal", "long-window"],
)
def test_far_apart_sizes_and_long_jumps(rows, size):
    rng = np.random.default_rng(rows + size)
    reference = KSReference.from_columns(
        {"continuous": rng.normal(size=size), "discrete": rng.integers(0, 4, size).astype(float)}
    )
    windows = np.stack(
        [rng.normal(0.1, 1.0, size=rows), rng.integers(0, 4, rows).astype(float)], axis=-1
    )[None]
    assert_bitwise_ks_2samp(reference, windows)


def test_kernel_refuses_a_reference_outside_its_buffer():
    """numba checks no index: the kernel checks each reference's bounds before slicing."""
    windows = np.array([[[1.5, 3.0, np.nan]]])
    references = np.array([1.0, 2.0])
    statistic, n = ks_statistics(windows, references, np.array([0]), np.array([2]))
    assert n.tolist() == [[2]]
    assert statistic[0, 0] == stats.ks_2samp([1.0, 2.0], [1.5, 3.0]).statistic
    for start, size in [(1, 2), (-1, 1), (0, -1)]:
        with pytest.raises(ValueError, match="outside"):
            ks_statistics(windows, references, np.array([start]), np.array([size]))
