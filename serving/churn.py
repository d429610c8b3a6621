"""The churn demo data: a generated customer set with categorical inputs, its split and drift.

Regenerate ``reference_churn.parquet`` with ``uv run python -m serving.churn``; the same
library versions write the same bytes, and any versions the same frame (a unit test checks).

The recipe (no network, one seeded ``numpy.random.Generator``; columns drawn in this order):

- ``country`` in US, GB, DE, FR, IN, BR with shares 35/15/15/10/15/10 %;
- ``device`` in desktop, mobile, tablet (45/45/10 %);
- ``plan`` in basic, standard, premium (50/35/15 %);
- ``payment_method`` in card, bank_transfer, paypal (55/25/20 %), missing (null) for 4 % of
  customers, as when no payment method is on file;
- ``tenure_months`` = round(Exponential(mean 22)) clipped to 1..72;
- ``monthly_charges`` = the plan's base price (25, 55, 95) + Normal(0, 8), at least 10,
  rounded to cents;
- ``support_calls`` ~ Poisson(1.2);
- ``age`` = round(Normal(42, 13)) clipped to 18..85;
- ``churned`` = 1 with probability sigmoid(z), where z = 0.4 - 0.09 tenure_months
  + 0.04 (monthly_charges - 55) + 0.7 support_calls - 0.02 (age - 42) + plan (basic +0.6,
  premium -0.8) + device (mobile +0.4, tablet +0.2) + payment (bank_transfer -0.6, paypal
  +0.2, missing +1.0) + country (IN +0.4, BR +0.6); about 44 % churn.

The signal is strong enough (a logistic model fitted on the reference is right about 77 % of
the time) and the classes near enough to even that a fitted model predicts "churned" about
as often as the label says it: the pipeline monitors the predictions against the reference
label, and a weak model that rarely predicts the minority class would read as prediction
drift in every window.

Country and device are drawn independently of everything else, so :func:`shift_mix` can
redraw them from another mix and leave every other column's distribution as it was.

:data:`ROWS` customers are drawn with :data:`SEED`; the first :data:`REFERENCE_ROWS` are the
reference, the rest the held-out rows that ``run.py --dataset churn`` streams. The seed is
the first (from 0) whose held-out rows pass every feature's test against the reference at
p > 0.3 (KS for numbers, chi-squared for categories): a held-out set replayed in many windows
must not carry one sampling accident into all of them.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

MODEL = "churn"
LABEL = "churned"
REFERENCE_FILE = "reference_churn.parquet"
SEED = 2
ROWS = 7000
REFERENCE_ROWS = 5000

# category -> share; the reference mix of each categorical feature, in draw order
COUNTRY = {"US": 0.35, "GB": 0.15, "DE": 0.15, "FR": 0.10, "IN": 0.15, "BR": 0.10}
DEVICE = {"desktop": 0.45, "mobile": 0.45, "tablet": 0.10}
PLAN = {"basic": 0.50, "standard": 0.35, "premium": 0.15}
PAYMENT = {"card": 0.55, "bank_transfer": 0.25, "paypal": 0.20}
PAYMENT_MISSING = 0.04
PLAN_PRICE = {"basic": 25.0, "standard": 55.0, "premium": 95.0}

NUMERIC = ("tenure_months", "monthly_charges", "support_calls", "age")
CATEGORICAL = ("country", "device", "plan", "payment_method")
FEATURES = (*NUMERIC, *CATEGORICAL)

# The demo's drift: device use moves to tablets, and customers from a new country (MX, never
# in the reference) arrive. Every other feature keeps its reference distribution.
DRIFT_MIX: dict[str, dict[str, float]] = {
    "device": {"desktop": 0.20, "mobile": 0.30, "tablet": 0.50},
    "country": {"US": 0.30, "GB": 0.10, "DE": 0.10, "FR": 0.10, "IN": 0.10, "BR": 0.10, "MX": 0.20},
}

_EFFECT = {
    "plan": {"basic": 0.6, "premium": -0.8},
    "device": {"mobile": 0.4, "tablet": 0.2},
    "payment_method": {"bank_transfer": -0.6, "paypal": 0.2, None: 1.0},
    "country": {"IN": 0.4, "BR": 0.6},
}


def _draw(rng: np.random.Generator, mix: Mapping[str, float], n: int) -> np.ndarray:
    """``n`` categories drawn with the shares of ``mix`` (object array of str)."""
    names = list(mix)
    p = np.array([mix[c] for c in names], dtype=np.float64)
    return np.array(names, dtype=object)[rng.choice(len(names), size=n, p=p / p.sum())]


def generate(n: int, seed: int) -> pl.DataFrame:
    """Draw ``n`` customers with the module's recipe: the features in :data:`FEATURES` order,
    then the label.

    Parameters
    ----------
    n
        Number of rows.
    seed
        Seed of the ``numpy.random.default_rng`` every column is drawn from.

    Returns
    -------
    polars.DataFrame
        Int64 ``tenure_months``, ``support_calls``, ``age``; Float64 ``monthly_charges``;
        String ``country``, ``device``, ``plan``, ``payment_method`` (with nulls); Int64
        ``churned`` (0 or 1).

    Examples
    --------
    >>> generate(3, seed=1).columns[-1]
    'churned'
    """
    rng = np.random.default_rng(seed)
    country = _draw(rng, COUNTRY, n)
    device = _draw(rng, DEVICE, n)
    plan = _draw(rng, PLAN, n)
    payment = _draw(rng, PAYMENT, n)
    payment[rng.random(n) < PAYMENT_MISSING] = None
    tenure = np.clip(np.round(rng.exponential(22.0, n)), 1, 72).astype(np.int64)
    base = np.array([PLAN_PRICE[p] for p in plan])
    charges = np.round(np.maximum(base + rng.normal(0.0, 8.0, n), 10.0), 2)
    calls = rng.poisson(1.2, n).astype(np.int64)
    age = np.clip(np.round(rng.normal(42.0, 13.0, n)), 18, 85).astype(np.int64)
    z = (
        0.4
        - 0.09 * tenure
        + 0.04 * (charges - 55.0)
        + 0.7 * calls
        - 0.02 * (age - 42)
        + _effect("plan", plan)
        + _effect("device", device)
        + _effect("payment_method", payment)
        + _effect("country", country)
    )
    churned = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(np.int64)
    return pl.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": charges,
            "support_calls": calls,
            "age": age,
            "country": pl.Series(country.tolist(), dtype=pl.String),
            "device": pl.Series(device.tolist(), dtype=pl.String),
            "plan": pl.Series(plan.tolist(), dtype=pl.String),
            "payment_method": pl.Series(payment.tolist(), dtype=pl.String),
            LABEL: churned,
        }
    )


def _effect(feature: str, values: np.ndarray) -> np.ndarray:
    effects = _EFFECT[feature]
    return np.array([effects.get(v, 0.0) for v in values], dtype=np.float64)


def split_churn(seed: int = SEED) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return ``(reference, holdout)``: the first :data:`REFERENCE_ROWS` of :data:`ROWS`
    customers drawn with ``seed``, and the rest (rows are independent: a random split)."""
    frame = generate(ROWS, seed)
    return frame.head(REFERENCE_ROWS), frame.slice(REFERENCE_ROWS)


def shift_mix(
    frame: pl.DataFrame, seed: int, mix: Mapping[str, Mapping[str, float]] | None = None
) -> pl.DataFrame:
    """Redraw the categorical columns named in ``mix`` (default :data:`DRIFT_MIX`) from it.

    Parameters
    ----------
    frame
        Rows of the recipe's columns.
    seed
        Seed of the redraw.
    mix
        Column -> category -> share; a category absent from the reference is an unseen one.

    Returns
    -------
    polars.DataFrame
        ``frame`` with those columns replaced; the others unchanged.
    """
    rng = np.random.default_rng(seed)
    mix = DRIFT_MIX if mix is None else mix
    return frame.with_columns(
        pl.Series(name, _draw(rng, shares, frame.height).tolist(), dtype=pl.String)
        for name, shares in mix.items()
    )


class ChurnStream:
    """Rows to send: held-out customers in shuffled passes, their mix shifted after the start.

    Parameters
    ----------
    drift
        Whether rows from ``drift_start`` on have country and device drawn from
        :data:`DRIFT_MIX` instead of the reference mix.
    drift_start
        Number of rows sent before the drift begins.
    seed
        Seed of the pass order and of the shifted draws.
    """

    def __init__(self, drift: bool, drift_start: int, seed: int) -> None:
        _, holdout = split_churn()
        self.columns = list(FEATURES)
        self.rows = holdout.select(self.columns).rows()
        self.shifted = shift_mix(holdout.select(self.columns), seed + 1).rows()
        self.rng = np.random.default_rng(seed)
        self.order = np.empty(0, dtype=np.int64)
        self.sent = 0
        self.drift_start = drift_start if drift else None

    def next_rows(self, n: int) -> list[list[float | str | None]]:
        """Return the next ``n`` rows, each a list in :attr:`columns` order (numbers for the
        numeric features, strings or None for the categorical ones)."""
        out = []
        for _ in range(n):  # n is the request's batch size, a handful of rows
            if self.order.size == 0:
                self.order = self.rng.permutation(len(self.rows))
            i = int(self.order[0])
            self.order = self.order[1:]
            drifted = self.drift_start is not None and self.sent >= self.drift_start
            out.append(list((self.shifted if drifted else self.rows)[i]))
            self.sent += 1
        return out


def write_reference(path: str | Path, seed: int = SEED) -> pl.DataFrame:
    """Write the churn reference to ``path`` (zstd Parquet, statistics on); return it."""
    reference, _ = split_churn(seed)
    reference.write_parquet(path, compression="zstd", statistics=True)
    return reference


def holdout_p_values(seed: int) -> dict[str, float]:
    """Each feature's p-value, held-out rows vs reference, for the split ``seed`` gives
    (two-sample KS for numbers, chi-squared on the category counts, nulls dropped)."""
    from scipy import stats  # only to choose the seed and to check it

    reference, holdout = split_churn(seed)
    out = {}
    for name in NUMERIC:
        out[name] = float(stats.ks_2samp(reference[name], holdout[name]).pvalue)
    for name in CATEGORICAL:
        ref = reference[name].drop_nulls().value_counts()
        hold = holdout[name].drop_nulls().value_counts()
        table = ref.join(hold, on=name, how="full", coalesce=True).fill_null(0)
        counts = table.select(pl.exclude(name)).to_numpy().T
        out[name] = float(stats.chi2_contingency(counts, correction=False).pvalue)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Write the churn demo's {REFERENCE_FILE}.")
    parser.add_argument("--out", type=Path, default=Path(REFERENCE_FILE))
    args = parser.parse_args(argv)
    reference = write_reference(args.out)
    print(f"wrote {args.out}: {reference.height} rows x {reference.width} columns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
