"""Testing windows: read their rows, run every feature's test, decide, write their history.

:func:`run_batch` is what a Dask worker executes for a run of consecutive windows; rows
never pass through the driver, only the verdicts and the history rows do.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, overload

import numpy as np
import polars as pl
import pyarrow as pa
from distributed import Client, Future, as_completed

from analytics import stattests
from analytics._batch_rows import read_batch
from analytics.columns import KindOutcome, test_kind, test_numeric_many
from analytics.correction import Correction, correct_many
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
        # each window's files, and each row's index among them, for all windows at once:
        # the distinct (window, file) pairs, in window order
        pairs, pair_of_row = np.unique(window * len(names) + codes, return_inverse=True)
        bounds = np.searchsorted(pairs, np.arange(len(plans) + 1) * len(names))
        local = (pair_of_row.reshape(-1) - bounds[window]).astype(np.uint32)
        file_of_pair = (pairs % len(names)).tolist()
        # each window's replicas, sorted: the distinct (window, replica) pairs likewise, with
        # replica codes in name order
        replica_names = keys["replica"].unique().sort()
        r = len(replica_names)
        replica_codes = keys["replica"].cast(pl.Enum(replica_names)).to_physical().to_numpy()
        replica_pairs = np.unique(window * r + replica_codes)
        replica_bounds = np.searchsorted(replica_pairs, np.arange(len(plans) + 1) * r)
        named = replica_names.to_list()
        replica_of_pair = [named[j] for j in (replica_pairs % r).tolist()]
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
                    replicas=tuple(replica_of_pair[replica_bounds[i] : replica_bounds[i + 1]]),
                    late_rows=plan.late_rows,
                    history_root=history_root,
                )
            )
        return out


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
    return list(run.finish())


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
        batches = [_SpecBatch(b) for b in _batches(specs, self.batch_rows, threads)]
        self._futures += self.client.map(
            _run_batch_task,
            [self.warehouse] * len(batches),
            batches,
            profile=self.profile,
            config=self.config,
            pure=False,
            retries=2,
        )
        self.specs += specs

    def finish(self) -> Verdicts:
        """Wait for every window, publish their history as one file and return the verdicts.

        Raises
        ------
        CorruptFileError, FileVanishedError
            If a task could not read a landing file.
        """
        if not self.specs:
            return Verdicts([], None, "")
        index = {f.key: i for i, f in enumerate(self._futures)}
        tested: list[Any] = [None] * len(self._futures)
        # each result is fetched as its task ends, while the others still run
        for future, result in as_completed(self._futures, with_results=True):
            tested[index[future.key]] = result
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
        return Verdicts(self.specs, _Judged.concat([judged for judged, _ in tested]), path)


@dataclass(frozen=True, eq=False)  # eq=False: fields hold arrays, compare by identity
class _Judged:
    """The verdicts on consecutive windows, a row per window: what a task sends back (a few
    arrays however many windows it tested; an object per window would cost the driver more
    than the window's test)."""

    features: tuple[str, ...]
    tests: tuple[str, ...]
    statistic: np.ndarray
    """float64 [W, F], and so ``p_value``, ``null_share``, ``out_of_range_share``."""
    p_value: np.ndarray
    drifted: np.ndarray
    """bool [W, F]."""
    null_share: np.ndarray
    out_of_range_share: np.ndarray
    threshold: np.ndarray
    """float64 [W]: each window's p-value threshold after correction."""
    dataset_drift: np.ndarray
    """bool [W]."""

    @classmethod
    def concat(cls, parts: Sequence[_Judged]) -> _Judged:
        return cls(
            features=parts[0].features,
            tests=parts[0].tests,
            **{
                f.name: np.concatenate([getattr(p, f.name) for p in parts])
                for f in fields(cls)
                if f.name not in ("features", "tests")
            },
        )

    def result(self, i: int, spec: WindowSpec, history_path: str) -> WindowResult:
        """The verdict on window ``i``, whose spec is ``spec``."""
        return WindowResult(
            spec=spec,
            features=self.features,
            tests=self.tests,
            statistic=self.statistic[i],
            p_value=self.p_value[i],
            drifted=self.drifted[i],
            threshold=float(self.threshold[i]),
            dataset_drift=bool(self.dataset_drift[i]),
            history_path=history_path,
            null_share=self.null_share[i],
            out_of_range_share=self.out_of_range_share[i],
        )


class Verdicts(Sequence[WindowResult]):
    """The verdicts on a run's windows, in spec order, each built when asked for (a backfill
    needs only :attr:`dataset_drift`)."""

    def __init__(self, specs: Sequence[WindowSpec], judged: _Judged | None, path: str) -> None:
        self._specs = specs
        self._judged = judged
        self.history_path = path
        """Where the windows' history was published."""

    @property
    def dataset_drift(self) -> np.ndarray:
        """bool [windows]: each window's verdict."""
        return np.zeros(0, bool) if self._judged is None else self._judged.dataset_drift

    def __len__(self) -> int:
        return len(self._specs)

    @overload
    def __getitem__(self, i: int) -> WindowResult: ...
    @overload
    def __getitem__(self, i: slice) -> list[WindowResult]: ...
    def __getitem__(self, i: int | slice) -> WindowResult | list[WindowResult]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if self._judged is None:
            raise IndexError(i)
        j = range(len(self))[i]
        return self._judged.result(j, self._specs[j], self.history_path)


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


class _SpecBatch(Sequence[WindowSpec]):
    """A task's consecutive window specs, pickled as a few arrays and lists and built again
    only where used: one array per window would be its own frame in each of Dask's messages,
    and the scheduler, which unpickles every task to place it, never looks at them."""

    __slots__ = ("_packed", "_specs")

    def __init__(self, specs: Sequence[WindowSpec]) -> None:
        self._specs: tuple[WindowSpec, ...] | None = tuple(specs)
        self._packed: tuple[Any, ...] | None = None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _packed_batch, (self._packed or _pack_specs(self._built()),)

    def _built(self) -> tuple[WindowSpec, ...]:
        if self._specs is None:
            assert self._packed is not None
            self._specs = _unpack_specs(*self._packed)
        return self._specs

    def __len__(self) -> int:
        return len(self._built())

    @overload
    def __getitem__(self, i: int) -> WindowSpec: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[WindowSpec, ...]: ...
    def __getitem__(self, i: int | slice) -> WindowSpec | tuple[WindowSpec, ...]:
        return self._built()[i]


def _packed_batch(packed: tuple[Any, ...]) -> _SpecBatch:
    batch = _SpecBatch(())
    batch._specs, batch._packed = None, packed
    return batch


_SPEC_ARRAYS = ("file_index", "row_index")
_SPEC_SCALARS = tuple(f.name for f in fields(WindowSpec) if f.name not in {"files", *_SPEC_ARRAYS})


def _pack_specs(specs: Sequence[WindowSpec]) -> tuple[Any, ...]:
    names = list(dict.fromkeys(f for spec in specs for f in spec.files))
    where = {name: i for i, name in enumerate(names)}
    scalars = [
        (*(getattr(spec, f) for f in _SPEC_SCALARS), tuple(where[f] for f in spec.files))
        for spec in specs
    ]
    none = np.empty(0, np.uint32)
    arrays = [np.concatenate([none, *(getattr(s, f) for s in specs)]) for f in _SPEC_ARRAYS]
    return names, scalars, *arrays


def _unpack_specs(
    names: list[str], scalars: list[tuple[Any, ...]], file_index: np.ndarray, row_index: np.ndarray
) -> tuple[WindowSpec, ...]:
    specs, at = [], 0
    for *values, files in scalars:
        spec = dict(zip(_SPEC_SCALARS, values, strict=True))
        end = at + spec["rows"]
        specs.append(
            WindowSpec(
                **spec,
                files=tuple(names[i] for i in files),
                file_index=file_index[at:end],
                row_index=row_index[at:end],
            )
        )
        at = end
    return tuple(specs)


def run_batch(
    warehouse: Warehouse,
    specs: Sequence[WindowSpec],
    profile: ReferenceProfile,
    config: DetectConfig,
) -> tuple[list[WindowResult], pa.Table]:
    """Test consecutive windows; return their verdicts and their history rows (not written).

    Each landing file the windows share is read once (only the monitored columns), and
    windows of one size are tested together where their test allows (one vectorized call
    for all of them).
    """
    judged, history = _run_batch_task(warehouse, specs, profile, config)
    return [judged.result(i, spec, "") for i, spec in enumerate(specs)], history


def _run_batch_task(
    warehouse: Warehouse,
    specs: Sequence[WindowSpec],
    profile: ReferenceProfile,
    config: DetectConfig,
) -> tuple[_Judged, pa.Table]:
    """:func:`run_batch` as a Dask task runs it: the verdicts as a few arrays."""
    kinds = [kind for kind in KINDS if profile.columns(kind)]
    features = tuple(c for kind in kinds for c in profile.columns(kind))
    options = {f.name: getattr(config, f.name) for f in fields(config) if f.init}
    numeric_columns = profile.columns("numeric") if "numeric" in kinds else ()
    other_columns = profile.columns("categorical") if "categorical" in kinds else ()
    matrix, frame = read_batch(warehouse, specs, numeric_columns, other_columns)
    by_kind: list[list[KindOutcome]] = []
    for kind in kinds:
        test = config.test(kind)
        if kind == "numeric":
            assert matrix is not None
            by_kind.append(_numeric_outcomes(specs, matrix, profile, test, options))
        else:
            assert frame is not None
            outcomes = []
            at = 0
            for spec in specs:
                window = frame.slice(at, spec.rows)
                outcomes.append(test_kind(kind, window, profile, test, options))
                at += spec.rows
            by_kind.append(outcomes)
    return _judge(by_kind, specs, config, features)


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


def _judge(
    by_kind: list[list[KindOutcome]],
    specs: Sequence[WindowSpec],
    config: DetectConfig,
    features: tuple[str, ...],
) -> tuple[_Judged, pa.Table]:
    """Judge consecutive windows from the outcome of each column kind's test (``by_kind``, in
    :data:`KINDS` order, a list of one outcome per window each), all windows at once; return
    the verdicts and their history rows (a row per window and feature)."""
    kinds = [outcomes[0] for outcomes in by_kind]  # the tests, columns are every window's

    def stacked(value: Callable[[KindOutcome], Any], dtype: type) -> np.ndarray:
        """[W, F]: ``value`` of each window's outcome of each kind, kinds side by side."""
        return np.concatenate(
            [np.stack([np.asarray(value(o), dtype) for o in outcomes]) for outcomes in by_kind],
            axis=1,
        )

    def per_column(value: Callable[[KindOutcome], Any], dtype: type) -> np.ndarray:
        """[F]: ``value`` of each kind's test, for each of its columns."""
        return np.concatenate([np.full(len(k.columns), value(k), dtype) for k in kinds])

    tests = tuple(k.test.name for k in kinds for _ in k.columns)
    statistic = stacked(lambda o: o.result.statistic, np.float64)
    pvals = stacked(lambda o: o.result.p_value, np.float64)
    by_p = per_column(lambda k: k.test.drift_when == "p_value", bool)
    limit = per_column(lambda k: k.test.default_threshold, np.float64)
    # only p-value tests share the window's correction; a statistic test is judged alone
    flagged, threshold, adjusted = correct_many(
        np.where(by_p, pvals, np.nan), alpha=config.alpha, method=config.correction
    )
    with np.errstate(invalid="ignore"):
        drifted = flagged | (~by_p & (statistic >= limit))
    if config.min_statistic is not None:
        # in very large windows a negligible shift is significant; require a real effect
        gated = by_p & per_column(lambda k: k.test.effect_size, bool)
        drifted &= ~gated | (np.nan_to_num(statistic) >= config.min_statistic)
    testable = np.where(by_p, np.isfinite(pvals), np.isfinite(statistic)).sum(axis=1)
    drifting = drifted.sum(axis=1)
    if config.drift_share is None:
        dataset_drift = drifting > 0
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            dataset_drift = (testable > 0) & (drifting / testable >= config.drift_share)
    judged = _Judged(
        features=features,
        tests=tests,
        statistic=statistic,
        p_value=pvals,
        drifted=drifted,
        null_share=stacked(lambda o: o.quality.null_share, np.float64),
        out_of_range_share=stacked(lambda o: o.quality.out_of_range_share, np.float64),
        threshold=threshold,
        dataset_drift=dataset_drift,
    )
    n_tested = stacked(lambda o: o.result.n_tested, np.int64)
    unseen = [
        u for w in range(len(specs)) for outcomes in by_kind for u in outcomes[w].quality.unseen
    ]
    return judged, _history_table(judged, specs, config, adjusted, n_tested, limit, by_p, unseen)


_ARROW_HISTORY = pl.DataFrame(schema=HISTORY_SCHEMA).to_arrow().schema


def _history_table(
    judged: _Judged,
    specs: Sequence[WindowSpec],
    config: DetectConfig,
    adjusted: np.ndarray,
    n_tested: np.ndarray,
    limit: np.ndarray,
    by_p: np.ndarray,
    unseen: list[tuple[str, ...]],
) -> pa.Table:
    """The history rows of judged windows (a row per window and feature, window-major) as one
    Arrow table of :data:`HISTORY_SCHEMA` (as Polars writes it), built a column at a time:
    a frame per window, or a Python object per row, costs more than testing the window."""
    n_windows, n = judged.statistic.shape
    each_window = pa.array(np.repeat(np.arange(n_windows), n))  # a window's value, per row
    each_feature = pa.array(np.tile(np.arange(n), n_windows))  # a feature's value, per row

    def windows(values: Sequence[Any], dtype: Any = None) -> np.ndarray | pa.Array:
        if dtype is not None:
            return np.repeat(np.asarray(values, dtype), n)
        return pa.array(values).take(each_window)

    def lists(rows: Sequence[Sequence[str]]) -> pa.Array:
        offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum([len(r) for r in rows], out=offsets[1:])
        values = pa.array(list(itertools.chain.from_iterable(rows)), pa.large_string())
        return pa.LargeListArray.from_arrays(pa.array(offsets), values)

    columns: dict[str, Any] = {
        "model": pa.repeat(specs[0].model, n_windows * n),
        "window_id": windows([s.window_id for s in specs], np.int64),
        "window_start": windows([s.start_us for s in specs], np.int64),
        "window_end": windows([s.end_us for s in specs], np.int64),
        "first_request_id": windows([s.first_request_id for s in specs]),
        "last_request_id": windows([s.last_request_id for s in specs]),
        "rows": windows([s.rows for s in specs], np.int64),
        "replicas": windows([len(s.replicas) for s in specs], np.int32),
        "replica_names": lists([s.replicas for s in specs]).take(each_window),
        "late_rows": windows([s.late_rows for s in specs], np.int64),
        "feature": pa.array(judged.features).take(each_feature),
        "test": pa.array(judged.tests).take(each_feature),
        "n_tested": n_tested.ravel(),
        "statistic": judged.statistic.ravel(),
        "p_value": judged.p_value.ravel(),
        "adjusted_p_value": adjusted.ravel(),
        "threshold": np.where(by_p, judged.threshold[:, None], limit).ravel(),
        "drifted": judged.drifted.ravel(),
        "null_share": judged.null_share.ravel(),
        "out_of_range_share": judged.out_of_range_share.ravel(),
        "unseen_categories": lists(unseen),
        "dataset_drift": np.repeat(judged.dataset_drift, n),
        "features_drifting": np.repeat(judged.drifted.sum(axis=1).astype(np.int32), n),
        "correction": pa.repeat(config.correction, n_windows * n),
        "alpha": np.full(n_windows * n, config.alpha, np.float64),
        "computed_at": np.full(n_windows * n, time.time_ns() // 1000, np.int64),
    }
    arrays = [pa.array(columns[f.name]).cast(f.type) for f in _ARROW_HISTORY]
    return pa.Table.from_arrays(arrays, schema=_ARROW_HISTORY)
