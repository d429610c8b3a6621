"""Testing windows: read their rows, run every feature's test, decide, write their history.

:func:`run_batch` is what a Dask worker executes for a run of consecutive windows; rows
never pass through the driver, only the verdicts and the history rows do.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from distributed import Client

from analytics import stattests
from analytics.columns import KindOutcome, numeric_matrix, test_kind
from analytics.correction import Correction, correct
from analytics.profile import ReferenceProfile
from analytics.settings import AnalyticsSettings
from analytics.stattests import KINDS, Kind, StatTest
from analytics.windows import WindowPlan
from ingest import Warehouse
from ingest.errors import ConfigError
from ingest.paths import DRIFT, drift_windows_path
from ingest.reader import RowSelection, read_rows

# rows a task tests (bench.analytics measures the per-task cost it spreads)
BATCH_ROWS = 20_000
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
    profile: ReferenceProfile,
    config: DetectConfig,
    batch_rows: int = BATCH_ROWS,
) -> list[WindowResult]:
    """Test every spec on the Dask cluster and publish their history as one file; results in
    spec order.

    Consecutive windows go to one task until it holds ``batch_rows`` rows (fewer when that
    leaves a worker thread idle): a task reads each landing file it needs once and pays the
    per-task cost once for all its windows. A task lost with its worker is retried on
    another one. The history file is named by the first and last window id, so writing the
    same windows again (a restarted driver) replaces it, never duplicates them.
    """
    if not specs:
        return []
    threads = sum(client.nthreads().values()) or 1
    batches = _batches(specs, batch_rows, threads)
    futures = client.map(
        run_batch,
        [warehouse] * len(batches),
        batches,
        profile=profile,
        config=config,
        pure=False,
        retries=2,
    )
    tested = client.gather(futures)
    results = [r for part, _ in tested for r in part]
    first, last = specs[0], specs[-1]
    path = drift_windows_path(
        first.model,
        datetime.fromtimestamp(last.end_us / 1e6, tz=UTC),
        first.window_id,
        last.window_id,
        first.history_root,
    )
    history = pa.concat_tables([table for _, table in tested])
    warehouse.publish_table(history, path, compression="zstd")
    return [dataclasses.replace(r, history_path=path) for r in results]


def _batches(
    specs: Sequence[WindowSpec], batch_rows: int, threads: int
) -> list[tuple[WindowSpec, ...]]:
    """Cut consecutive specs into runs of about ``batch_rows`` rows, at least ``threads``
    runs when there are that many windows."""
    total = sum(s.rows for s in specs)
    target = max(1, min(batch_rows, -(-total // threads)))
    out: list[tuple[WindowSpec, ...]] = []
    run: list[WindowSpec] = []
    rows = 0
    for spec in specs:
        run.append(spec)
        rows += spec.rows
        if rows >= target:
            out.append(tuple(run))
            run, rows = [], 0
    if run:
        out.append(tuple(run))
    return out


def run_batch(
    warehouse: Warehouse,
    specs: Sequence[WindowSpec],
    profile: ReferenceProfile,
    config: DetectConfig,
) -> tuple[list[WindowResult], pa.Table]:
    """Test consecutive windows; return their verdicts and their history rows (not written).

    Each landing file the windows share is read once (only the monitored columns).
    """
    kinds = [kind for kind in KINDS if profile.columns(kind)]
    features = tuple(c for kind in kinds for c in profile.columns(kind))
    options = {f.name: getattr(config, f.name) for f in fields(config) if f.init}
    # all the batch's rows at once, in window order: each file read once, one conversion
    selections = [s for spec in specs for s in spec.selections]
    rows = read_rows(warehouse, selections, list(features))
    numeric = numeric_matrix(rows, profile.columns("numeric")) if "numeric" in kinds else None
    results, columns, at = [], [], 0
    for spec in specs:
        frame = rows.slice(at, spec.rows)
        window = None if numeric is None else numeric[at : at + spec.rows]
        result, history = _test_window(
            frame, window, spec, profile, config, kinds, features, options
        )
        results.append(result)
        columns.append(history)
        at += spec.rows
    return results, _history_table(columns)


def _test_window(
    frame: pl.DataFrame,
    numeric: np.ndarray | None,
    spec: WindowSpec,
    profile: ReferenceProfile,
    config: DetectConfig,
    kinds: list[Kind],
    features: tuple[str, ...],
    options: dict[str, Any],
) -> tuple[WindowResult, dict[str, Any]]:
    """Test one window's rows with the registered test of each column kind (all columns of
    a kind at once); return the verdict and its history columns, one entry per feature."""
    parts = [test_kind(kind, frame, profile, config.test(kind), options, numeric) for kind in kinds]
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

    n = len(features)
    history = {
        "model": [spec.model] * n,
        "window_id": np.full(n, spec.window_id, np.int64),
        "window_start": np.full(n, spec.start_us, np.int64),
        "window_end": np.full(n, spec.end_us, np.int64),
        "first_request_id": [spec.first_request_id] * n,
        "last_request_id": [spec.last_request_id] * n,
        "rows": np.full(n, spec.rows, np.int64),
        "replicas": np.full(n, len(spec.replicas), np.int32),
        "replica_names": [list(spec.replicas)] * n,
        "late_rows": np.full(n, spec.late_rows, np.int64),
        "feature": list(features),
        "test": tests,
        "n_tested": _per_column(parts, lambda o: o.result.n_tested, np.int64),
        "statistic": statistic,
        "p_value": pvals,
        "adjusted_p_value": np.asarray(decision.adjusted, np.float64),
        "threshold": np.where(by_p, decision.threshold, limit).astype(np.float64),
        "drifted": drifted,
        "null_share": _per_column(parts, lambda o: o.quality.null_share, np.float64),
        "out_of_range_share": _per_column(
            parts, lambda o: o.quality.out_of_range_share, np.float64
        ),
        "unseen_categories": [list(u) for p in parts for u in p.quality.unseen],
        "dataset_drift": np.full(n, dataset_drift, bool),
        "features_drifting": np.full(n, int(drifted.sum()), np.int32),
        "correction": [config.correction] * n,
        "alpha": np.full(n, config.alpha, np.float64),
        "computed_at": np.full(n, time.time_ns() // 1000, np.int64),
    }
    result = WindowResult(
        spec=spec,
        features=features,
        tests=tuple(tests),
        statistic=statistic,
        p_value=pvals,
        drifted=drifted,
        threshold=decision.threshold,
        dataset_drift=dataset_drift,
        history_path="",
    )
    return result, history


_TIMES = ("window_start", "window_end", "computed_at")


def _history_table(windows: list[dict[str, Any]]) -> pa.Table:
    """The history rows of several windows as one Arrow table of :data:`HISTORY_SCHEMA`
    (built once per task: a frame per window costs more than testing it)."""
    data: dict[str, Any] = {}
    for name, dtype in HISTORY_SCHEMA.items():
        parts = [w[name] for w in windows]
        if isinstance(parts[0], np.ndarray):
            data[name] = pl.Series(name, np.concatenate(parts))
        else:
            data[name] = pl.Series(name, [v for p in parts for v in p], dtype=dtype)
    frame = pl.DataFrame(data).with_columns(
        pl.col(c).cast(pl.Datetime("us")).dt.replace_time_zone("UTC") for c in _TIMES
    )
    return frame.cast(HISTORY_SCHEMA).to_arrow()


def _per_column(
    parts: list[KindOutcome], value: Callable[[KindOutcome], Any], dtype: type
) -> np.ndarray:
    """``value(part)`` for the columns of every kind, end to end; a scalar fills its kind."""
    arrays = [np.broadcast_to(np.asarray(value(p), dtype), len(p.columns)) for p in parts]
    return np.concatenate(arrays) if arrays else np.empty(0, dtype)
