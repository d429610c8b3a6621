"""Testing one window: read its rows, run every feature's test, decide, write its history.

:func:`run_window` is what a Dask worker executes; rows never pass through the driver.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
from distributed import Client, Future

from analytics import stattests
from analytics.columns import KindOutcome, test_kind
from analytics.correction import Correction, correct
from analytics.profile import ReferenceProfile
from analytics.settings import AnalyticsSettings
from analytics.stattests import KINDS, Kind, StatTest
from analytics.windows import WindowPlan
from ingest import Warehouse
from ingest.errors import ConfigError
from ingest.paths import DRIFT, drift_window_path
from ingest.reader import RowSelection, read_rows

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
    """How a window is judged: the registered test per column kind, and the thresholds.

    ``numeric_test`` and ``categorical_test`` name :mod:`analytics.stattests` tests, resolved
    here so a wrong name fails at startup; the resolved tests travel to the Dask workers with
    the config (pickled by reference to their module, which need only be importable there).
    """

    alpha: float = 0.05
    correction: Correction = "bonferroni"
    drift_share: float | None = None
    ks_method: str = "auto"
    min_statistic: float | None = None
    numeric_test: str = "ks"
    categorical_test: str = "chi2"
    _tests: dict[Kind, StatTest] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tests = {}
        for kind in KINDS:
            setting = f"{kind}_test"
            try:
                tests[kind] = stattests.get(getattr(self, setting), kind)
            except ConfigError as exc:
                raise ConfigError(f"{setting}: {exc} Fix the {setting} setting.") from None
        object.__setattr__(self, "_tests", tests)

    def test(self, kind: Kind) -> StatTest:
        """The registered test applied to the columns of ``kind``."""
        return self._tests[kind]

    @classmethod
    def from_settings(cls, settings: AnalyticsSettings) -> DetectConfig:
        return cls(
            alpha=settings.alpha,
            correction=settings.correction,
            drift_share=settings.drift_share,
            ks_method=settings.ks_method,
            min_statistic=settings.min_statistic,
            numeric_test=settings.numeric_test,
            categorical_test=settings.categorical_test,
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

    Each column kind is tested by the registered test ``config`` names for it, at once over
    all columns of that kind. Rewriting a window (a retried task, a restarted driver)
    replaces the same file, so history never holds a window twice.
    """
    kinds = [kind for kind in KINDS if profile.columns(kind)]
    features = tuple(c for kind in kinds for c in profile.columns(kind))
    frame = read_rows(warehouse, spec.selections, list(features))
    options = {f.name: getattr(config, f.name) for f in fields(config) if f.init}
    parts = [test_kind(kind, frame, profile, config.test(kind), options) for kind in kinds]

    tests = [p.test.name for p in parts for _ in p.columns]
    statistic = _per_column(parts, lambda o: o.result.statistic, np.float64)
    pvals = _per_column(parts, lambda o: o.result.p_value, np.float64)
    by_p = _per_column(parts, lambda o: o.test.drift_when == "p_value", bool)
    limit = _per_column(parts, lambda o: o.test.default_threshold, np.float64)
    # only p-value tests share the window's correction; a statistic test is judged alone
    decision = correct(np.where(by_p, pvals, np.nan), alpha=config.alpha, method=config.correction)
    with np.errstate(invalid="ignore"):
        drifted = np.asarray(decision.drifted, dtype=bool) | (~by_p & (statistic >= limit))
    if config.min_statistic is not None:
        # in very large windows a negligible shift is significant; require a real effect
        gated = by_p & _per_column(parts, lambda o: o.test.effect_size, bool)
        drifted &= ~gated | (np.nan_to_num(statistic) >= config.min_statistic)
    testable = int(np.where(by_p, np.isfinite(pvals), np.isfinite(statistic)).sum())
    if config.drift_share is None:
        dataset_drift = bool(drifted.any())
    else:
        dataset_drift = testable > 0 and drifted.sum() / testable >= config.drift_share

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
            "n_tested": _per_column(parts, lambda o: o.result.n_tested, np.int64),
            "statistic": statistic,
            "p_value": pvals,
            "adjusted_p_value": decision.adjusted,
            "threshold": np.where(by_p, decision.threshold, limit),
            "drifted": drifted,
            "null_share": _per_column(parts, lambda o: o.quality.null_share, np.float64),
            "out_of_range_share": _per_column(
                parts, lambda o: o.quality.out_of_range_share, np.float64
            ),
            "unseen_categories": [list(u) for p in parts for u in p.quality.unseen],
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
        p_value=pvals,
        drifted=drifted,
        threshold=decision.threshold,
        dataset_drift=dataset_drift,
        history_path=path,
    )


def _per_column(
    parts: list[KindOutcome], value: Callable[[KindOutcome], Any], dtype: type
) -> np.ndarray:
    """``value(part)`` for the columns of every kind, end to end; a scalar fills its kind."""
    arrays = [np.broadcast_to(np.asarray(value(p), dtype), len(p.columns)) for p in parts]
    return np.concatenate(arrays) if arrays else np.empty(0, dtype)
