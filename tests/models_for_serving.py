"""Models the serving tests name by import path (``tests.models_for_serving:<name>``), and the
mixed-schema reference file they are served with.

A model server started from the repository root (as :func:`harness.servers.model_server`
starts it) imports this module as ``tests.models_for_serving``; keep it light: numpy and
polars only at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

if TYPE_CHECKING:
    import pandas as pd

MODULE = "tests.models_for_serving"
LABEL = "churned"
NUMERIC = ("age", "tenure")
CATEGORICAL = ("plan", "payment")  # payment has nulls in the reference, plan none
PLANS = ("basic", "pro", "team")


def mixed_frame(rows: int = 400, seed: int = 0) -> pl.DataFrame:
    """A small churn-like frame: two numeric features, two categorical ones, a 0/1 label.

    The label depends on plan and tenure, so a model has something to learn.
    """
    rng = np.random.default_rng(seed)
    plan = rng.choice(PLANS, rows, p=[0.5, 0.3, 0.2])
    payment = rng.choice(["card", "bank"], rows).astype(object)
    payment[rng.random(rows) < 0.1] = None
    tenure = rng.integers(1, 72, rows)
    age = np.round(rng.normal(42, 12, rows), 1)
    z = -0.5 + 1.2 * (plan == "basic") - 0.04 * tenure + 0.01 * (age - 42)
    churned = (rng.random(rows) < 1 / (1 + np.exp(-z))).astype(np.int64)
    return pl.DataFrame(
        {
            "age": age,
            "tenure": tenure,
            "plan": plan.tolist(),
            "payment": payment.tolist(),
            LABEL: churned,
        },
        schema={
            "age": pl.Float64,
            "tenure": pl.Int64,
            "plan": pl.String,
            "payment": pl.String,
            LABEL: pl.Int64,
        },
    )


def write_mixed_reference(path: Path, rows: int = 400) -> Path:
    """Write :func:`mixed_frame` as a reference Parquet file; return ``path``."""
    mixed_frame(rows).write_parquet(path)
    return path


def as_pandas(frame: pl.DataFrame) -> pd.DataFrame:
    """``frame``'s features as pandas, the categorical ones of category dtype (LightGBM's)."""
    out = frame.drop(LABEL, strict=False).to_pandas()
    for name in CATEGORICAL:
        out[name] = out[name].astype("category")
    return out


# --- callables named by import path ---------------------------------------------------------


def churn_rule(rows: pl.DataFrame) -> pl.Series:
    """Declares a polars frame: 1 for the basic plan with short tenure, else 0."""
    assert isinstance(rows, pl.DataFrame), type(rows)
    return ((rows["plan"] == "basic") & (rows["tenure"] < 24)).cast(pl.Int64)


def tenure_years(rows):  # no annotation: numpy for the breast-cancer schema, polars for mixed
    """A plain function returning numbers (a regressor's output)."""
    if isinstance(rows, np.ndarray):
        return rows[:, 0] / 12.0
    return (rows["tenure"] / 12.0).to_numpy()


def plan_is_basic(rows: pa.Table) -> list[int]:
    """Declares an Arrow table; 1 for the basic plan."""
    assert isinstance(rows, pa.Table), type(rows)
    return [int(plan == "basic") for plan in rows.column("plan").to_pylist()]


def yes_no(rows: pl.DataFrame) -> list[str]:
    """String labels that are not the reference's (its label is 0/1)."""
    return ["yes" if plan == "basic" else "no" for plan in rows["plan"]]


def payment_seen(rows: pd.DataFrame) -> np.ndarray:
    """Declares a pandas frame (by a string annotation); 1 where a payment method is known."""
    assert type(rows).__module__.startswith("pandas"), type(rows)
    return rows["payment"].notna().to_numpy().astype(np.int64)


def fails_on_old_customers(rows: pl.DataFrame) -> pl.Series:
    """Answers the reference's first rows, raises for a tenure over 1,000 months."""
    if (rows["tenure"] > 1000).any():
        raise RuntimeError("secret internals: tenure table overflow")
    return rows["tenure"] * 0


def takes_numpy(rows: np.ndarray) -> np.ndarray:
    """Declares a float64 array: refused for a reference with categorical features."""
    return rows[:, 0]


def always_fails(rows: pl.DataFrame) -> pl.Series:
    raise ValueError("this model cannot predict anything")


def one_short(rows: pl.DataFrame) -> list[int]:
    """One output fewer than rows."""
    return [0] * (rows.height - 1)


def two_columns(rows: pl.DataFrame) -> np.ndarray:
    return np.zeros((rows.height, 2))


class ScoreCard:
    """An object with predict and predict_proba (not scikit-learn): string classes."""

    classes_ = np.array(["churn", "stay"])

    def predict_proba(self, rows: pl.DataFrame) -> np.ndarray:
        stay = np.where(rows["plan"].to_numpy() == "basic", 0.3, 0.8)
        return np.column_stack([1 - stay, stay])

    def predict(self, rows: pl.DataFrame) -> np.ndarray:
        return self.classes_[(self.predict_proba(rows)[:, 1] > 0.5).astype(int)]


score_card = ScoreCard()
NOT_A_MODEL = 42
