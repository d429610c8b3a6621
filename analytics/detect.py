"""Testing windows: read their rows, run every feature's test, decide, write their history.

:func:`run_batch` is what a Dask worker executes for a run of consecutive windows; rows
never pass through the driver, only the verdicts and the history rows do.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from distributed import Client, Future, as_completed

from analytics import stattests
from analytics._batch_rows import read_batch
from analytics.columns import KindOutcome, test_kind, test_numeric_many
from analytics.correction import Correction, correct
from analytics.profile import ReferenceProfile
from analytics.settings import AnalyticsSettings
from analytics.stattests import KINDS, Kind, StatTest
from analytics.windows import WindowPlan
from ingest import Warehouse
from ingest.errors import ConfigError
from ingest.paths import DRIFT, drift_windows_path

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


@dataclass(frozen=True, eq=False)  # eq=False: fields hold arrays, compare by identity
class WindowSpec:
    """What a worker needs to test one window: where its rows are, and its identity.

    Row ``i`` of the window (in event-time order) is row ``row_index[i]`` of the landing
    file ``files[file_index[i]]``.
    """

    model: str
    window_id: int
    files: tuple[str, ...]
    file_index: np.ndarray
    """uint32 [rows]: each row's landing file, an index into ``files``."""
    row_index: np.ndarray
    """uint32 [rows]: each row's position in its landing file."""
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
        return cls.from_plans(model, [plan], history_root)[0]

    @classmethod
    def from_plans(
        cls, model: str, plans: Sequence[WindowPlan], history_root: str = DRIFT
    ) -> list[WindowSpec]:
        """Describe planned windows, each as :meth:`from_plan` would (in one pass over all
        their keys: a window's own pass would cost more than testing it)."""
        plans = [p for p in plans if p.rows]
        if not plans:
            return []
        keys = pl.concat([p.keys for p in plans], rechunk=True)
        sizes = np.array([p.rows for p in plans], dtype=np.int64)
        ends = np.cumsum(sizes)
        starts = ends - sizes
        files = keys["file"].unique(maintain_order=True)
        codes = keys["file"].cast(pl.Enum(files)).to_physical().to_numpy()
        names = files.to_list()
        rows = keys["row"].to_numpy().astype(np.uint32, copy=False)
        ts = keys["ts"].to_numpy()
        first_ids = keys["request_id"].gather(starts).to_list()
        last_ids = keys["request_id"].gather(ends - 1).to_list()
        window = np.repeat(np.arange(len(plans)), sizes)
        replicas = (
            keys.select(pl.Series("w", window), "replica")
            .group_by("w", maintain_order=True)
            .agg(pl.col("replica").unique().sort())["replica"]
            .to_list()
        )
        # each window's files, and each row's index among them, for all windows at once:
        # the distinct (window, file) pairs, in window order
        pairs, pair_of_row = np.unique(window * len(names) + codes, return_inverse=True)
        bounds = np.searchsorted(pairs, np.arange(len(plans) + 1) * len(names))
        local = (pair_of_row.reshape(-1) - bounds[window]).astype(np.uint32)
        file_of_pair = (pairs % len(names)).tolist()
        out = []
        for i, plan in enumerate(plans):
            a, b = int(starts[i]), int(ends[i])
            out.append(
                cls(
                    model=model,
                    window_id=plan.window_id,
                    files=tuple(names[j] for j in file_of_pair[bounds[i] : bounds[i + 1]]),
                    file_index=local[a:b].copy(),
                    row_index=rows[a:b].copy(),
                    start_us=int(ts[a]),
                    end_us=int(ts[b - 1]),
                    first_request_id=first_ids[i],
                    last_request_id=last_ids[i],
                    rows=b - a,
                    replicas=tuple(replicas[i]),
                    late_rows=plan.late_rows,
                    history_root=history_root,
                )
            )
        return out


@dataclass(frozen=True)
class WindowResult:
    """The verdict on one window, as written to history and pushed to Prometheus
    (``spec`` is None only in what a Dask task sends back, see :func:`run_batch`)."""

    spec: WindowSpec
    features: tuple[str, ...]
    tests: tuple[str, ...]
    statistic: np.ndarray
    p_value: np.ndarray
    drifted: np.ndarray
    threshold: float
    dataset_drift: bool
    history_path: str
    null_share: np.ndarray
    """float64 [F]: share of the window's rows missing each feature."""
    out_of_range_share: np.ndarray
    """float64 [F]: share of rows outside the reference (below its minimum or above its
    maximum; for a categorical feature, a category the reference never had)."""

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
    spec order (see :class:`WindowRun`)."""
    run = WindowRun(client, warehouse, profile, config, batch_rows)
    run.submit(specs)
    return run.finish()


class WindowRun:
    """Consecutive windows tested on the Dask cluster, their history published as one file.

    :meth:`submit` sends runs of consecutive specs as they are planned (the workers start at
    once); :meth:`finish` collects the verdicts, in spec order, and publishes the history.
    Consecutive windows go to one task until it holds ``batch_rows`` rows (fewer when that
    leaves a worker thread idle): a task reads each landing file it needs once and pays the
    per-task cost once for all its windows. A task lost with its worker is retried on
    another one. The history file is named by the first and last window id, so writing the
    same windows again (a restarted driver) replaces it, never duplicates them.
    """

    def __init__(
        self,
        client: Client,
        warehouse: Warehouse,
        profile: ReferenceProfile,
        config: DetectConfig,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        self.client = client
        self.warehouse = warehouse
        self.profile = profile
        self.config = config
        self.batch_rows = batch_rows
        self.specs: list[WindowSpec] = []
        self._futures: list[Future] = []

    def submit(self, specs: Sequence[WindowSpec]) -> None:
        """Start testing ``specs``, the windows that follow those submitted before."""
        if not specs:
            return
        threads = sum(self.client.nthreads().values()) or 1
        batches = _batches(specs, self.batch_rows, threads)
        self._futures += self.client.map(
            run_batch,
            [self.warehouse] * len(batches),
            batches,
            profile=self.profile,
            config=self.config,
            detach=True,  # the verdicts come back without the specs this process holds
            pure=False,
            retries=2,
        )
        self.specs += specs

    def finish(self) -> list[WindowResult]:
        """Wait for every window, publish their history as one file and return the verdicts.

        Raises
        ------
        CorruptFileError, FileVanishedError
            If a task could not read a landing file.
        """
        if not self.specs:
            return []
        index = {f.key: i for i, f in enumerate(self._futures)}
        tested: list[Any] = [None] * len(self._futures)
        # each result is fetched as its task ends, while the others still run
        for future, result in as_completed(self._futures, with_results=True):
            tested[index[future.key]] = result
        results = [r for part, _ in tested for r in part]
        first, last = self.specs[0], self.specs[-1]
        path = drift_windows_path(
            first.model,
            datetime.fromtimestamp(last.end_us / 1e6, tz=UTC),
            first.window_id,
            last.window_id,
            first.history_root,
        )
        history = pa.concat_tables([table for _, table in tested])
        self.warehouse.publish_table(history, path, compression="zstd")
        return [
            dataclasses.replace(r, spec=spec, history_path=path)
            for r, spec in zip(results, self.specs, strict=True)
        ]


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
    *,
    detach: bool = False,
) -> tuple[list[WindowResult], pa.Table]:
    """Test consecutive windows; return their verdicts and their history rows (not written).

    Each landing file the windows share is read once (only the monitored columns), and
    windows of one size are tested together where their test allows (one vectorized call
    for all of them). With ``detach`` the verdicts' ``spec`` is None: a Dask task sends
    back only what the driver, which holds the specs, does not have.
    """
    kinds = [kind for kind in KINDS if profile.columns(kind)]
    features = tuple(c for kind in kinds for c in profile.columns(kind))
    options = {f.name: getattr(config, f.name) for f in fields(config) if f.init}
    numeric_columns = profile.columns("numeric") if "numeric" in kinds else ()
    other_columns = profile.columns("categorical") if "categorical" in kinds else ()
    matrix, frame = read_batch(warehouse, specs, numeric_columns, other_columns)
    parts: list[list[KindOutcome]] = [[] for _ in specs]
    for kind in kinds:
        test = config.test(kind)
        if kind == "numeric":
            assert matrix is not None
            outcomes = _numeric_outcomes(specs, matrix, profile, test, options)
        else:
            assert frame is not None
            outcomes = []
            at = 0
            for spec in specs:
                window = frame.slice(at, spec.rows)
                outcomes.append(test_kind(kind, window, profile, test, options))
                at += spec.rows
        for mine, outcome in zip(parts, outcomes, strict=True):
            mine.append(outcome)
    results, columns = [], []
    for spec, mine in zip(specs, parts, strict=True):
        result, history = _test_window(mine, spec, config, features)
        results.append(dataclasses.replace(result, spec=None) if detach else result)
        columns.append(history)
    return results, _history_table(columns)


def _numeric_outcomes(
    specs: Sequence[WindowSpec],
    matrix: np.ndarray,
    profile: ReferenceProfile,
    test: StatTest,
    options: dict[str, Any],
) -> list[KindOutcome]:
    """The numeric outcome of each window (its rows ``matrix``'s next ``spec.rows``): runs of
    windows of one size are tested in one call."""
    out: list[KindOutcome] = []
    at = 0
    for rows, run in itertools.groupby(specs, key=lambda s: s.rows):
        count = len(list(run))
        windows = matrix[at : at + rows * count].reshape(count, rows, matrix.shape[1])
        out += test_numeric_many(windows, profile, test, options)
        at += rows * count
    return out


def _test_window(
    parts: list[KindOutcome],
    spec: WindowSpec,
    config: DetectConfig,
    features: tuple[str, ...],
) -> tuple[WindowResult, dict[str, Any]]:
    """Judge one window from the outcome of each column kind's test (``parts``, in
    :data:`KINDS` order); return the verdict and its history columns, one entry per
    feature."""
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
    null_share = _per_column(parts, lambda o: o.quality.null_share, np.float64)
    out_of_range = _per_column(parts, lambda o: o.quality.out_of_range_share, np.float64)
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
        "null_share": null_share,
        "out_of_range_share": out_of_range,
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
        null_share=null_share,
        out_of_range_share=out_of_range,
    )
    return result, history


_ARROW_HISTORY = pl.DataFrame(schema=HISTORY_SCHEMA).to_arrow().schema


def _history_table(windows: list[dict[str, Any]]) -> pa.Table:
    """The history rows of several windows as one Arrow table of :data:`HISTORY_SCHEMA`
    (as Polars writes it), built column by column from the windows' arrays and lists: a
    frame per window, or a Python object per row, costs more than testing the window."""
    arrays = []
    for f in _ARROW_HISTORY:
        parts = [w[f.name] for w in windows]
        if isinstance(parts[0], np.ndarray):
            arrays.append(pa.array(np.concatenate(parts)).cast(f.type))
        elif pa.types.is_large_list(f.type):
            rows = list(itertools.chain.from_iterable(parts))
            offsets = np.zeros(len(rows) + 1, np.int64)
            np.cumsum([len(r) for r in rows], out=offsets[1:])
            values = pa.array(list(itertools.chain.from_iterable(rows)), f.type.value_type)
            arrays.append(pa.LargeListArray.from_arrays(pa.array(offsets), values))
        else:
            arrays.append(pa.array(list(itertools.chain.from_iterable(parts)), f.type))
    return pa.Table.from_arrays(arrays, schema=_ARROW_HISTORY)


def _per_column(
    parts: list[KindOutcome], value: Callable[[KindOutcome], Any], dtype: type
) -> np.ndarray:
    """``value(part)`` for the columns of every kind, end to end; a scalar fills its kind."""
    arrays = [np.broadcast_to(np.asarray(value(p), dtype), len(p.columns)) for p in parts]
    return np.concatenate(arrays) if arrays else np.empty(0, dtype)
