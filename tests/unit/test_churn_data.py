"""The churn demo data: the committed reference is what the recipe makes, and its drift moves
only the categorical mixes it names."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sklearn.linear_model import LogisticRegression

from harness import ROOT
from ingest.reference import load_reference
from serving import churn

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

COMMITTED = ROOT / churn.REFERENCE_FILE


def test_regenerating_gives_the_committed_reference(tmp_path):
    out = tmp_path / "reference_churn.parquet"
    assert churn.main(["--out", str(out)]) == 0
    assert_frame_equal(pl.read_parquet(out), pl.read_parquet(COMMITTED))
    again = tmp_path / "again.parquet"
    churn.main(["--out", str(again)])
    assert again.read_bytes() == out.read_bytes()  # same libraries, same bytes


def test_reference_has_numeric_and_categorical_features_and_a_label():
    ref = load_reference(COMMITTED, churn.MODEL, label=churn.LABEL)
    kinds = {f.name: f.kind for f in ref.schema.features}
    assert kinds == {
        **dict.fromkeys(churn.NUMERIC, "numeric"),
        **dict.fromkeys(churn.CATEGORICAL, "categorical"),
    }
    frame = pl.read_parquet(COMMITTED)
    assert frame.height == churn.REFERENCE_ROWS
    assert set(frame[churn.LABEL].unique()) == {0, 1}
    assert 0.38 < frame[churn.LABEL].mean() < 0.5  # the documented ~44 %
    # only payment_method has missing values, about PAYMENT_MISSING of them
    nulls = {c: frame[c].null_count() for c in frame.columns}
    assert {c for c, n in nulls.items() if n} == {"payment_method"}
    assert nulls["payment_method"] / frame.height == pytest.approx(churn.PAYMENT_MISSING, abs=0.01)
    for name, mix in (("country", churn.COUNTRY), ("device", churn.DEVICE), ("plan", churn.PLAN)):
        shares = frame[name].value_counts(normalize=True)
        got = dict(zip(shares[name], shares["proportion"], strict=True))
        assert got == pytest.approx(mix, abs=0.03), name


# The label's logistic formula as serving/churn.py's docstring documents it.
DOCUMENTED = {
    "intercept": 0.4,
    "tenure_months": -0.09,
    "monthly_charges - 55": 0.04,
    "support_calls": 0.7,
    "age - 42": -0.02,
    "plan=basic": 0.6,
    "plan=premium": -0.8,
    "device=mobile": 0.4,
    "device=tablet": 0.2,
    "payment_method=bank_transfer": -0.6,
    "payment_method=paypal": 0.2,
    "payment_method=missing": 1.0,
    "country=IN": 0.4,
    "country=BR": 0.6,
}


def test_the_label_follows_the_documented_logistic_formula():
    frame = churn.generate(200_000, seed=11)
    terms = {
        "tenure_months": frame["tenure_months"],
        "monthly_charges - 55": frame["monthly_charges"] - 55,
        "support_calls": frame["support_calls"],
        "age - 42": frame["age"] - 42,
    }
    for name in DOCUMENTED:
        column, _, value = name.partition("=")
        if value:
            is_value = frame[column].is_null() if value == "missing" else frame[column] == value
            terms[name] = is_value.fill_null(False).cast(pl.Float64)
    x = pl.DataFrame(terms).to_numpy()
    fit = LogisticRegression(C=np.inf, solver="newton-cholesky").fit(x, frame[churn.LABEL])
    got = {"intercept": float(fit.intercept_[0])} | dict(
        zip(list(terms), fit.coef_[0].tolist(), strict=True)
    )
    # maximum likelihood on 200,000 rows: each coefficient within a few standard errors
    # (about 0.002 for the numeric terms' slopes, 0.02 for the indicators and the intercept)
    for name, coefficient in DOCUMENTED.items():
        tolerance = 0.01 if name in terms and "=" not in name else 0.08
        assert got[name] == pytest.approx(coefficient, abs=tolerance), name


def test_the_seed_is_the_first_whose_held_out_rows_match_the_reference():
    assert min(churn.holdout_p_values(churn.SEED).values()) > 0.3
    for seed in range(churn.SEED):
        assert min(churn.holdout_p_values(seed).values()) <= 0.3


def test_shift_mix_redraws_only_the_named_columns_and_brings_an_unseen_country():
    _, holdout = churn.split_churn()
    moved = churn.shift_mix(holdout, seed=1)
    same = [c for c in holdout.columns if c not in churn.DRIFT_MIX]
    assert_frame_equal(moved.select(same), holdout.select(same))
    assert "MX" in set(moved["country"]) and "MX" not in set(holdout["country"])
    tablets = (moved["device"] == "tablet").mean()
    assert tablets == pytest.approx(churn.DRIFT_MIX["device"]["tablet"], abs=0.05)


def test_stream_sends_held_out_rows_then_the_shifted_mix():
    _, holdout = churn.split_churn()
    known = set(holdout.select(churn.FEATURES).rows())
    clean = churn.ChurnStream(drift=False, drift_start=0, seed=0)
    assert clean.columns == list(churn.FEATURES)
    rows = clean.next_rows(len(known))
    assert {tuple(r) for r in rows} == known  # one whole pass, each held-out row once
    assert all(isinstance(r[4], str) and isinstance(r[0], int) for r in rows)

    drifted = churn.ChurnStream(drift=True, drift_start=300, seed=0)
    before, after = drifted.next_rows(300), drifted.next_rows(600)
    assert all(tuple(r) in known for r in before)
    device = [r[churn.FEATURES.index("device")] for r in after]
    assert device.count("tablet") / len(device) > 0.35
    assert "MX" in {r[churn.FEATURES.index("country")] for r in after}
