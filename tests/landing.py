"""Test helpers that fill a landing zone directly through the real LandingWriter."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from ingest import ModelSchema, Warehouse
from ingest.capture import LandingWriter
from ingest.reference import load_reference
from serving.dataset import LABEL, split_breast_cancer
from tests.conftest import REFERENCE

MODEL = "breast_cancer"


def model_schema() -> ModelSchema:
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


def write_landing(
    warehouse: Warehouse,
    rows: np.ndarray,
    *,
    replica: str = "r1",
    start: datetime | None = None,
    step: timedelta = timedelta(milliseconds=10),
    per_file: int = 50,
) -> list[str]:
    """Publish ``rows`` as landing files of ``per_file`` rows; return their request ids."""
    schema = model_schema()
    start = start or datetime.now(UTC) - timedelta(minutes=5)
    writer = LandingWriter(warehouse, schema, replica, flush_rows=10**9, flush_interval=3600)
    ids = []
    for lo in range(0, len(rows), per_file):
        chunk = rows[lo : lo + per_file]
        n = len(chunk)
        rid = [f"{uuid.uuid4().hex}-{i}" for i in range(n)]
        ts = [start + step * (lo + i) for i in range(n)]
        cols = [
            pa.array(ts, pa.timestamp("us", tz="UTC")),
            pa.array(rid),
            pa.array([replica] * n),
            pa.array(["test"] * n),
            *[pa.array(chunk[:, j]) for j in range(chunk.shape[1])],
            pa.array(np.ones(n)),
            pa.array(np.full(n, 0.9)),
        ]
        writer.append(pa.RecordBatch.from_arrays(cols, schema=schema.arrow_schema()))
        writer.flush()
        ids += rid
    writer.close()
    return ids
