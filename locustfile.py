"""Load test: POST reference-like rows to ``/get-prediction`` through the gateway.

Rows are sampled from the reference data (the label column excluded), so with the defaults the
live distribution matches the reference and no drift should be reported. Settings, from the
environment:

- ``DRIFTLAKE_LOCUST_DRIFT_SHARE`` (default 0): share of the features to shift, 0..1; the first
  ``ceil(share x features)`` feature columns, in reference order, are shifted.
- ``DRIFTLAKE_LOCUST_DRIFT_SHIFT`` (default 1.0): shift of those features, in reference
  standard deviations.
- ``DRIFTLAKE_LOCUST_ROWS`` (default 1): rows per request.
- ``DRIFTLAKE_LOCUST_PATH`` (default ``/get-prediction``): or ``/model/get-prediction``.
- ``DRIFTLAKE_REFERENCE`` (default ``reference.parquet`` next to this file) and
  ``DRIFTLAKE_LOCUST_LABEL`` (default ``target``): the data to sample and the column to leave out.
- ``DRIFTLAKE_LOCUST_SEED``: seed the row sampling (per user: seed + user number).

Run it headless against the stack's gateway::

    uv run locust -f locustfile.py --headless -u 8 -r 4 -t 20s \\
        --host http://127.0.0.1:8002 --csv results/locust
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from locust import HttpUser, between, events, task

log = logging.getLogger("driftlake.locust")


@dataclass(frozen=True)
class Workload:
    """The rows to sample from, already shifted where drift is asked for."""

    columns: list[str]
    rows: np.ndarray
    shifted: list[str]
    rows_per_request: int
    path: str


def _env_float(name: str, default: float, low: float | None = None, high: float | None = None):
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise SystemExit(f"{name} must be within [{low}, {high}], got {value}")
    return value


def load_workload() -> Workload:
    """Read the reference with Polars and apply the drift settings from the environment."""
    default = Path(__file__).with_name("reference.parquet")
    path = Path(os.environ.get("DRIFTLAKE_REFERENCE") or default)
    if not path.exists():
        raise SystemExit(f"reference data {path} not found: set DRIFTLAKE_REFERENCE")
    label = os.environ.get("DRIFTLAKE_LOCUST_LABEL", "target")
    frame = pl.read_parquet(path)
    numeric = [c for c, t in frame.schema.items() if c != label and t.is_numeric()]
    if not numeric:
        raise SystemExit(f"{path} has no numeric feature columns besides {label!r}")
    rows = frame.select(numeric).cast(pl.Float64).to_numpy().copy()
    share = _env_float("DRIFTLAKE_LOCUST_DRIFT_SHARE", 0.0, 0.0, 1.0)
    shift = _env_float("DRIFTLAKE_LOCUST_DRIFT_SHIFT", 1.0)
    n_shift = math.ceil(share * len(numeric))
    # shift whole columns at once: the features are few, the rows many
    std = np.nanstd(rows[:, :n_shift], axis=0)
    rows[:, :n_shift] += shift * np.where(std > 0, std, 1.0)
    per_request = int(_env_float("DRIFTLAKE_LOCUST_ROWS", 1, 1, 10_000))
    target_path = os.environ.get("DRIFTLAKE_LOCUST_PATH", "/get-prediction")
    return Workload(numeric, rows, numeric[:n_shift], per_request, target_path)


WORKLOAD = load_workload()
_user_numbers = itertools.count()


@events.test_start.add_listener
def _announce(environment, **_kwargs) -> None:
    w = WORKLOAD
    log.info(
        "workload rows=%d features=%d rows_per_request=%d path=%s shifted=%s",
        len(w.rows),
        len(w.columns),
        w.rows_per_request,
        w.path,
        w.shifted or "none",
    )


class PredictionUser(HttpUser):
    """One client posting ``{"features": {"columns": [...], "data": [[...]]}}`` payloads."""

    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        seed = os.environ.get("DRIFTLAKE_LOCUST_SEED")
        number = next(_user_numbers)
        self.rng = np.random.default_rng(None if seed is None else int(seed) + number)

    @task
    def predict(self) -> None:
        w = WORKLOAD
        picked = w.rows[self.rng.integers(0, len(w.rows), size=w.rows_per_request)]
        payload = {"features": {"columns": w.columns, "data": picked.tolist()}}
        with self.client.post(w.path, json=payload, name=w.path, catch_response=True) as resp:
            if resp.status_code != 200:
                detail = resp.error if resp.status_code == 0 else (resp.text or "")[:200]
                resp.failure(f"HTTP {resp.status_code}: {detail}")
