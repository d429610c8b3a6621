"""A user's own model, as the examples use it: customer churn, trained on generated data.

Nothing here knows driftlake. ``generate`` draws customers (``drift=True``: pricier and
more premium plans, the other columns alike), ``train`` fits a scikit-learn pipeline on them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMERIC = ("tenure_months", "monthly_charges", "support_calls")
CATEGORICAL = ("plan", "region")
FEATURES = {**dict.fromkeys(NUMERIC, "numeric"), **dict.fromkeys(CATEGORICAL, "categorical")}
LABEL = "target"
PLANS = ("basic", "standard", "premium")
REGIONS = ("north", "south", "east", "west")


def generate(rows: int, seed: int, *, drift: bool = False) -> pd.DataFrame:
    """``rows`` customers and whether each churned (``target``), reproducible by ``seed``."""
    rng = np.random.default_rng(seed)
    plan_p = (0.15, 0.25, 0.60) if drift else (0.5, 0.35, 0.15)
    frame = pd.DataFrame(
        {
            "tenure_months": rng.gamma(2.0, 12.0, rows).round(1),
            "monthly_charges": rng.normal(85.0 if drift else 65.0, 15.0, rows).round(2),
            "support_calls": rng.poisson(1.5, rows),
            "plan": rng.choice(PLANS, rows, p=plan_p),
            "region": rng.choice(REGIONS, rows),
        }
    )
    logit = (
        -1.0
        - 0.05 * frame["tenure_months"]
        + 0.03 * (frame["monthly_charges"] - 65)
        + 0.4 * frame["support_calls"]
        + frame["plan"].map({"basic": 0.5, "standard": 0.0, "premium": -0.5})
    )
    frame[LABEL] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return frame


def train(frame: pd.DataFrame) -> Pipeline:
    """Scale the numbers, one-hot the categories, fit a logistic regression."""
    model = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("numeric", StandardScaler(), list(NUMERIC)),
                        ("categorical", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
                    ]
                ),
            ),
            ("classifier", LogisticRegression()),
        ]
    )
    return model.fit(frame[[*NUMERIC, *CATEGORICAL]], frame[LABEL])
