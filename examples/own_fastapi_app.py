"""A user's own FastAPI churn-scoring service, monitored by driftlake in a few lines.

Run it (every driftlake setting from ``DRIFTLAKE_*``; see docs/capture.md)::

    DRIFTLAKE_WAREHOUSE=warehouse uv run uvicorn examples.own_fastapi_app:app

    curl -s localhost:8000/score -H 'content-type: application/json' -d \
      '{"tenure_months": 3, "monthly_charges": 90, "support_calls": 4,
        "plan": "basic", "region": "north"}' -D -

Every 200 answer of ``POST /score`` lands as a row of model ``churn_api`` in the warehouse's
landing zone, its id in the ``x-driftlake-request-ids`` header; the analytics job
(``python -m analytics run`` with the same environment) tests it for drift against the
training data, which the app saves at ``DRIFTLAKE_REFERENCE_PATH``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel, Field

from driftlake import CaptureMiddleware, CaptureRoute, Monitor
from examples import churn_model

# the app's defaults; the environment wins (the analytics job reads the same variables)
os.environ.setdefault("DRIFTLAKE_MODEL_NAME", "churn_api")
REFERENCE = Path(os.environ.setdefault("DRIFTLAKE_REFERENCE_PATH", "churn_reference.parquet"))


class Customer(BaseModel):
    """The request: one customer."""

    tenure_months: float = Field(ge=0)
    monthly_charges: float = Field(ge=0)
    support_calls: int = Field(ge=0)
    plan: Literal["basic", "standard", "premium"]
    region: str


class Score(BaseModel):
    """The answer: will the customer churn, and how likely."""

    churn: int
    probability: float


training = churn_model.generate(2000, seed=0)
model = churn_model.train(training)
# the reference the drift is measured against: the training data (written whole, then moved)
training.to_parquet(f"{REFERENCE}.{os.getpid()}.tmp", index=False)
os.replace(f"{REFERENCE}.{os.getpid()}.tmp", REFERENCE)

app = FastAPI(title="churn scoring")

# driftlake: these two statements are all the capture there is
monitor = Monitor.from_settings()  # DRIFTLAKE_WAREHOUSE, _MODEL_NAME, _REFERENCE_PATH...
app.add_middleware(
    CaptureMiddleware,
    monitor=monitor,
    routes=[CaptureRoute("/score", prediction="churn", score="probability")],
)


@app.post("/score")
def score(customer: Customer) -> Score:
    """Score one customer."""
    x = pd.DataFrame([customer.model_dump()])
    probability = float(model.predict_proba(x)[0, 1])
    return Score(churn=int(probability >= 0.5), probability=probability)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
