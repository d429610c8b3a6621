"""Fill a landing zone directly through the real LandingWriter, and plan a window over it."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from analytics import WindowSpec
from analytics.windows import plan_windows
from harness import MODEL, REFERENCE
from harness.procs import driftlake_env, run_python
from ingest import ModelSchema, Warehouse
from ingest.capture import LandingWriter
from ingest.reader import list_landing, read_keys
from ingest.reference import load_reference
from serving.dataset import LABEL, split_breast_cancer

DAY = datetime(2026, 1, 1, tzinfo=UTC)  # a fixed day, for tests that place rows in hours


def hour_us(h: float, day: datetime = DAY) -> int:
    """Epoch microseconds ``h`` hours into ``day``."""
    return int((day + timedelta(hours=h)).timestamp() * 1e6)


def model_schema() -> ModelSchema:
    """The landing schema of the bundled reference's model."""
    return load_reference(REFERENCE, MODEL).schema


def holdout_rows(n: int, seed: int = 0, shift: dict[str, float] | None = None) -> np.ndarray:
    """``n`` held-out rows (sampled with replacement), features shifted by ``shift`` sigmas."""
    reference, holdout = split_breast_cancer()
    columns = [c for c in holdout.columns if c != LABEL]
    rows = holdout.select(columns).to_numpy()[
        np.random.default_rng(seed).integers(0, holdout.height, n)
    ]
    std = reference.select(columns).std().row(0)
    for name, sigmas in (shift or {}).items():
        rows[:, columns.index(name)] += sigmas * std[columns.index(name)]
    return rows


def landing_batch(
    schema: ModelSchema,
    features: Mapping[str, Any],
    *,
    start: datetime,
    step: timedelta = timedelta(milliseconds=1),
    request_ids: Sequence[str] | None = None,
    replica: str = "r1",
    version: str = "v1",
    prediction: Any = None,
    score: float = 0.5,
) -> pa.RecordBatch:
    """Landing rows of ``schema`` as the capture writer receives them.

    ``features`` holds every feature's values by name; row ``i`` is at ``start + i * step``
    with id ``request_ids[i]`` (``i`` zero-padded if None), ``prediction`` 1.0 unless given,
    and ``score`` for every row.
    """
    arrow = schema.arrow_schema()
    n = len(next(iter(features.values())))
    given = {
        "ts": [start + step * i for i in range(n)],
        "request_id": list(request_ids)
        if request_ids is not None
        else [f"{i:06d}" for i in range(n)],
        "replica": [replica] * n,
        "model_version": [version] * n,
        "prediction": np.ones(n) if prediction is None else prediction,
        "score": np.full(n, score),
        **features,
    }
    return pa.RecordBatch.from_arrays([_column(given[f.name], f.type) for f in arrow], schema=arrow)


def _column(values: Any, type_: pa.DataType) -> pa.Array:
    """``values`` as an Arrow array of ``type_`` (a categorical column's dictionary type from a
    numpy string array too, which ``pa.array`` cannot convert to directly)."""
    if pa.types.is_dictionary(type_):
        return pa.array(values, type_.value_type).dictionary_encode()
    return pa.array(values, type_)


def land(warehouse: Warehouse, schema: ModelSchema, batch: pa.RecordBatch) -> None:
    """Publish ``batch`` (from :func:`landing_batch`) as one landing file."""
    replica = batch.column(batch.schema.get_field_index("replica"))[0].as_py()
    writer = LandingWriter(warehouse, schema, replica, flush_rows=10**9, flush_interval=3600)
    writer.extend_checked([batch])  # in the landing schema already
    writer.close()


def only_window(warehouse: Warehouse, model: str) -> WindowSpec:
    """The one window that holds every row of the model's one landing file."""
    (f,) = list_landing(warehouse, model)
    keys = read_keys(warehouse, f.path).with_columns(pl.lit(f.path).alias("file"))
    columns = keys.select("file", "row", "ts", "request_id", "replica")
    (plan,), _ = plan_windows(columns, 2**62, keys.height, 0, None)
    return WindowSpec.from_plan(model, plan)


def write_landing(
    warehouse: Warehouse,
    rows: np.ndarray,
    *,
    replica: str = "r1",
    start: datetime | None = None,
    step: timedelta = timedelta(milliseconds=10),
    per_file: int = 50,
) -> list[str]:
    """Publish ``rows`` (of the bundled reference's features) as landing files of
    ``per_file`` rows; return their request ids."""
    schema = model_schema()
    names = [f.name for f in schema.features]
    start = start or datetime.now(UTC) - timedelta(minutes=5)
    writer = LandingWriter(warehouse, schema, replica, flush_rows=10**9, flush_interval=3600)
    ids = []
    for lo in range(0, len(rows), per_file):
        chunk = rows[lo : lo + per_file]
        rid = [f"{uuid.uuid4().hex}-{i}" for i in range(len(chunk))]
        batch = landing_batch(
            schema,
            {name: chunk[:, j] for j, name in enumerate(names)},
            start=start + step * lo,
            step=step,
            request_ids=rid,
            replica=replica,
            version="test",
            score=0.9,
        )
        writer.extend_checked([batch])
        writer.flush()
        ids += rid
    writer.close()
    return ids


def drain(warehouse: str | object, failpoint: str | None = None, **env: str) -> int:
    """Run ``python -m analytics run --drain`` over ``warehouse`` (100-row windows, two a
    cycle, one worker) with ``failpoint`` armed; return its exit code (0, or -SIGKILL at the
    failpoint). ``env`` adds variables (an s3:// warehouse's ``AWS_*``)."""
    settings: dict[str, Any] = {
        "warehouse": warehouse,
        "reference_path": REFERENCE,
        "window_size": 100,
        "max_windows_per_cycle": 2,
        "n_workers": 1,
        "dashboard_address": "",
    }
    if failpoint:
        settings["failpoint"] = failpoint
    proc = run_python(["-m", "analytics", "run", "--drain"], env=driftlake_env(**settings) | env)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(proc.stderr[-3000:])
    return proc.returncode
