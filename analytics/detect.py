"""Testing one window: read its rows, run every feature's test, decide, write its history.

:func:`run_window` is what a Dask worker executes; rows never pass through the driver.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl
from distributed import Client, Future

from analytics.chisq import chisq_test
from analytics.correction import Correction, correct
from analytics.ks import ks_test
from analytics.profile import ReferenceProfile
from analytics.settings import AnalyticsSettings
from analytics.windows import WindowPlan
from ingest import RowSelection, Warehouse, read_rows
from ingest.paths import DRIFT, drift_window_path

HISTORY_SCHEMA = {
    "model": pl.String,
    "window_id": pl.Int64,
    "window_start": pl.Datetime("us", "UTC"),
    "window_end": pl.Datetime("us", "UTC"),
    "first_request_id": pl.String,
    "last_request_id": pl.String,
    "rows": pl.Int64,
    "replicas": pl.Int32,
    "replica_names": pl.List(pl.String),
    "late_rows": pl.Int64,
    "feature": pl.String,
    "test": pl.String,
    "n_tested": pl.Int64,
    "statistic": pl.Float64,
    "p_value": pl.Float64,
    "adjusted_p_value": pl.Float64,
    "threshold": pl.Float64,
    "drifted": pl.Boolean,
    "null_share": pl.Float64,
    "out_of_range_share": pl.Float64,
    "unseen_categories": pl.List(pl.String),
    "dataset_drift": pl.Boolean,
    "features_drifting": pl.Int32,
    "correction": pl.String,
    "alpha": pl.Float64,
    "computed_at": pl.Datetime("us", "UTC"),
}


@dataclass(frozen=True)
class DetectConfig:
    """How a window is judged."""

    alpha: float = 0.05
    correction: Correction = "bonferroni"
    drift_share: float | None = None
    ks_method: str = "auto"
    min_statistic: float | None = None

    @classmethod
    def from_settings(cls, settings: AnalyticsSettings) -> DetectConfig:
        return cls(
            alpha=settings.alpha,
            correction=settings.correction,
            drift_share=settings.drift_share,
            ks_method=settings.ks_method,
            min_statistic=settings.min_statistic,
        )


@dataclass(frozen=True)
class WindowSpec:
    """What a worker needs to test one window: where its rows are, and its identity."""

    model: str
    window_id: int
    selections: tuple[RowSelection, ...]
    start_us: int
    end_us: int
    first_request_id: str
    last_request_id: str
    rows: int
    replicas: tuple[str, ...]
    late_rows: int
    history_root: str = DRIFT

    @classmethod
    def from_plan(cls, model: str, plan: WindowPlan, history_root: str = DRIFT) -> WindowSpec:
        """Describe a planned window for the worker that will test it."""
        return cls(
            model=model,
            window_id=plan.window_id,
            selections=tuple(plan.selections()),
            start_us=plan.start_us,
            end_us=plan.end_us,
            first_request_id=str(plan.keys["request_id"][0]),
            last_request_id=str(plan.keys["request_id"][-1]),
            rows=plan.rows,
            replicas=plan.replicas,
            late_rows=plan.late_rows,
            history_root=history_root,
        )


@dataclass(frozen=True)
class WindowResult:
    """The verdict on one window, as written to history and pushed to Prometheus."""

    spec: WindowSpec
    features: tuple[str, ...]
    tests: tuple[str, ...]
    statistic: np.ndarray
    p_value: np.ndarray
    drifted: np.ndarray
    threshold: float
    dataset_drift: bool
    history_path: str

    @property
    def features_drifting(self) -> int:
        return int(self.drifted.sum())

    @property
    def drifted_features(self) -> tuple[str, ...]:
        return tuple(f for f, d in zip(self.features, self.drifted, strict=True) if d)

    @property
    def min_p_value(self) -> float:
        finite = self.p_value[np.isfinite(self.p_value)]
        return float(finite.min()) if finite.size else float("nan")


def run_windows(
    client: Client,
    warehouse: Warehouse,
    specs: Sequence[WindowSpec],
    profile: ReferenceProfile | Future,
    config: DetectConfig,
) -> list[WindowResult]:
    """Run :func:`run_window` for every spec on the Dask cluster; results in spec order.

    A task lost with its worker is retried on another one; its history file is simply
    rewritten, so a retry never duplicates a window.
    """
    if not specs:
        return []
    futures = client.map(
        run_window,
        [warehouse] * len(specs),
        specs,
        profile=profile,
        config=config,
        pure=False,
        retries=2,
    )
    return client.gather(futures)


def run_window(
    warehouse: Warehouse, spec: WindowSpec, profile: ReferenceProfile, config: DetectConfig
) -> WindowResult:
    """Read one window's rows, test every monitored column, and write its history file.

    Rewriting a window (a retried task, a restarted driver) replaces the same file, so
    history never holds a window twice.
    """
    num_cols = profile.numeric_columns
    cat_cols = profile.categorical_columns
    frame = read_rows(warehouse, spec.selections, [*num_cols, *cat_cols])
    numeric = frame.select(pl.col(c).cast(pl.Float64) for c in num_cols).to_numpy()
    numeric = np.asarray(numeric, dtype=np.float64).reshape(frame.height, len(num_cols))
    ks = ks_test(profile.numeric, numeric, method=config.ks_method)

    n = max(frame.height, 1)
    present = ~np.isnan(numeric)
    null_share = list(1.0 - present.sum(axis=0) / n)
    with np.errstate(invalid="ignore"):
        outside = present & ((numeric < profile.low) | (numeric > profile.high))
    out_share = list(outside.sum(axis=0) / n)
    stats, pvals, n_tested = list(ks.statistic), list(ks.pvalue), list(ks.n_window)
    tests = ["ks"] * len(num_cols)
    unseen: list[list[str]] = [[] for _ in num_cols]
    if cat_cols and profile.categorical is not None:
        values = {c: frame[c].to_list() for c in cat_cols}
        chi = chisq_test(profile.categorical, values)
        stats += list(chi.statistic)
        pvals += list(chi.pvalue)
        n_tested += list(chi.n_window)
        tests += ["chi2"] * len(cat_cols)
        unseen += [list(u) for u in chi.unseen]
        nulls = [frame[c].null_count() / n for c in cat_cols]
        null_share += nulls
        out_share += [
            sum(values[c].count(u) for u in chi.unseen[i]) / n for i, c in enumerate(cat_cols)
        ]

    p = np.asarray(pvals, dtype=np.float64)
    decision = correct(p, alpha=config.alpha, method=config.correction)
    drifted = np.asarray(decision.drifted, dtype=bool)
    statistic = np.asarray(stats, dtype=np.float64)
    if config.min_statistic is not None:
        # in very large windows a negligible shift is significant; require a real effect
        is_ks = np.asarray(tests) == "ks"
        drifted &= ~is_ks | (np.nan_to_num(statistic) >= config.min_statistic)
    testable = int(np.isfinite(p).sum())
    if config.drift_share is None:
        dataset_drift = bool(drifted.any())
    else:
        dataset_drift = testable > 0 and drifted.sum() / testable >= config.drift_share

    features = (*num_cols, *cat_cols)
    end = datetime.fromtimestamp(spec.end_us / 1e6, tz=UTC)
    history = pl.DataFrame(
        {
            "model": spec.model,
            "window_id": spec.window_id,
            "window_start": datetime.fromtimestamp(spec.start_us / 1e6, tz=UTC),
            "window_end": end,
            "first_request_id": spec.first_request_id,
            "last_request_id": spec.last_request_id,
            "rows": spec.rows,
            "replicas": len(spec.replicas),
            "replica_names": [list(spec.replicas)] * len(features),
            "late_rows": spec.late_rows,
            "feature": list(features),
            "test": tests,
            "n_tested": n_tested,
            "statistic": stats,
            "p_value": pvals,
            "adjusted_p_value": list(decision.adjusted),
            "threshold": decision.threshold,
            "drifted": list(drifted),
            "null_share": null_share,
            "out_of_range_share": out_share,
            "unseen_categories": unseen,
            "dataset_drift": dataset_drift,
            "features_drifting": int(drifted.sum()),
            "correction": config.correction,
            "alpha": config.alpha,
            "computed_at": datetime.fromtimestamp(time.time(), tz=UTC),
        },
        schema=HISTORY_SCHEMA,
    )
    path = drift_window_path(spec.model, end, spec.window_id, spec.history_root)
    warehouse.publish_table(history.to_arrow(), path, compression="zstd")
    return WindowResult(
        spec=spec,
        features=features,
        tests=tuple(tests),
        statistic=statistic,
        p_value=p,
        drifted=drifted,
        threshold=decision.threshold,
        dataset_drift=dataset_drift,
        history_path=path,
    )
