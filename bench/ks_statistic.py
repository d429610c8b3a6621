"""Benchmark: the compiled KS statistic (analytics._ks_kernel) vs the numpy one it replaced.

Run with ``uv run python -m bench.ks_statistic [--repeats N]``. Each row times, on the same
windows and taking turns within every repeat, the KS statistic alone (``analytics.ks.
_statistic``) and a whole ``ks_test_many`` call (statistic, p-values, method), once with the
compiled kernel and once with the previous numpy formulation (``bench._ks_searchsorted``:
np.searchsorted over ``[features, windows, rows]`` arrays); every repeat checks the two
statistics are bitwise equal. Reported: median CPU milliseconds per 100 windows and the
ratio. The exact p-value memo is warm (a running job's state). The first line reports the
one-off cost of loading numba and the kernel in a fresh process, before anything else runs.

Windows are cut from one float64 matrix as analytics.detect cuts them: Fortran-ordered, as
Polars' ``DataFrame.to_numpy`` gives it (layout F), except one row in C order, the layout of
an array built row by row.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from unittest import mock

import numpy as np

from analytics import AnalyticsSettings
from analytics import ks as ks_module
from analytics.ks import KSReference, ks_test_many
from analytics.profile import load_profile
from bench import _ks_searchsorted
from harness import REFERENCE


@dataclass(frozen=True)
class Case:
    """One row of the table: ``windows`` windows of ``rows`` rows against ``reference``."""

    reference: str  # "profile": the demo's reference profile; else synthetic, this many rows
    windows: int
    rows: int
    layout: str = "F"


CASES = (
    Case("profile", 100, 200),
    Case("profile", 100, 200, layout="C"),
    Case("profile", 20, 5_000),
    Case("1000", 5, 10_000),
    Case("100000", 20, 200),
)


def profile_reference() -> KSReference:
    settings = AnalyticsSettings(
        warehouse="/nonexistent", reference_path=str(REFERENCE), dashboard_address=None
    )
    return load_profile(settings).numeric


def synthetic_reference(rows: int, features: int, rng: np.random.Generator) -> KSReference:
    # a third of the features rounded, i.e. heavily tied, like ages or counts
    columns = {}
    for f in range(features):
        values = rng.normal(size=rows)
        columns[f"x{f}"] = np.round(values, 1) if f % 3 == 2 else values
    return KSReference.from_columns(columns)


def make_windows(reference: KSReference, case: Case, rng: np.random.Generator) -> np.ndarray:
    """No-drift windows, 1% missing: resampled reference values, with 1% noise unless the
    feature is discrete (ties kept)."""
    total = case.windows * case.rows
    matrix = np.empty((total, len(reference.names)), order=case.layout)
    for f, values in enumerate(reference.sorted_values):
        column = rng.choice(values, size=total)
        if np.unique(values).size > values.size // 4:
            column *= 1 + 0.01 * rng.standard_normal(total)
        matrix[:, f] = column
    matrix[rng.random(matrix.shape) < 0.01] = np.nan
    return matrix.reshape(case.windows, case.rows, matrix.shape[1])


def baseline_statistic(reference: KSReference, values: np.ndarray):
    return _ks_searchsorted.statistic(reference, values)


def cpu_seconds(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.process_time()
    value = fn()
    return time.process_time() - start, value


def run_case(case: Case, repeats: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    if case.reference == "profile":
        reference = profile_reference()
    else:
        reference = synthetic_reference(int(case.reference), 31, rng)
    windows = make_windows(reference, case, rng)
    for statistic_fn in (ks_module._statistic, baseline_statistic):  # warm memo and caches
        with mock.patch.object(ks_module, "_statistic", statistic_fn):
            ks_test_many(reference, windows)
    times: dict[str, list[float]] = {key: [] for key in ("old", "new", "old_many", "new_many")}
    for _ in range(repeats):
        t_old, old = cpu_seconds(lambda: baseline_statistic(reference, windows))
        t_new, new = cpu_seconds(lambda: ks_module._statistic(reference, windows))
        if old[0].tobytes() != new[0].tobytes() or not np.array_equal(old[1], new[1]):
            raise AssertionError(f"{case}: the statistics differ")
        with mock.patch.object(ks_module, "_statistic", baseline_statistic):
            t_old_many, _ = cpu_seconds(lambda: ks_test_many(reference, windows))
        t_new_many, _ = cpu_seconds(lambda: ks_test_many(reference, windows))
        for key, value in zip(times, (t_old, t_new, t_old_many, t_new_many), strict=True):
            times[key].append(value)
    per_100 = 100 / case.windows
    return {key: statistics.median(values) * 1e3 * per_100 for key, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per row")
    args = parser.parse_args()

    start = time.perf_counter()
    from analytics._ks_kernel import ks_statistics

    loaded = time.perf_counter() - start
    source = "disk cache" if ks_statistics.stats.cache_hits else "compiled now"
    print(f"kernel load in a fresh process: {loaded:.2f} s wall ({source})")
    print(f"median CPU ms per 100 windows, {args.repeats} repeats, statistics bitwise equal")
    header = (
        f"{'reference x windows x rows':>28} {'layout':>6} | {'stat numpy':>10} "
        f"{'compiled':>9} {'ratio':>6} | {'many numpy':>10} {'compiled':>9} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for seed, case in enumerate(CASES):
        t = run_case(case, args.repeats, seed)
        ref = "31 x 398 (profile)" if case.reference == "profile" else f"31 x {case.reference}"
        shape = f"{ref} x {case.windows} x {case.rows:,}"
        print(
            f"{shape:>28} {case.layout:>6} | {t['old']:10.1f} {t['new']:9.1f} "
            f"{t['old'] / t['new']:5.1f}x | {t['old_many']:10.1f} {t['new_many']:9.1f} "
            f"{t['old_many'] / t['new_many']:5.1f}x"
        )
    print("stat = analytics.ks._statistic; many = ks_test_many (statistic, p-values, method).")


if __name__ == "__main__":
    main()
