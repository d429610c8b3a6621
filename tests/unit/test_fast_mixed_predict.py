"""The numpy fast path of the default mixed model (serving._mixed_scorer) answers exactly as
scikit-learn does on the polars frame of the same rows, unseen categories and nulls included;
other pipelines keep scikit-learn's path; the start-time check turns it off if it differs."""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import pytest
import sklearn
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from harness import ROOT
from ingest import Warehouse
from ingest.reference import load_reference
from serving import Predictor, ServingSettings, churn, load_predictor, train_default_model
from serving._mixed_request import MixedRows
from serving._mixed_scorer import MixedLinearScorer
from serving._model_input import converter
from serving.loading import DENSE_ONE_HOT_MAX, _check_fast_path, reference_rows

pytestmark = [pytest.mark.unit, pytest.mark.timeout(300)]

REF = load_reference(ROOT / churn.REFERENCE_FILE, churn.MODEL, label=churn.LABEL)
SCHEMA = REF.schema
MODEL = train_default_model(REF)
TRAIN = REF.frame.drop(churn.LABEL)
Y = REF.frame[churn.LABEL].to_numpy()
KNOWN = {name: TRAIN[name].unique().to_list() for name in SCHEMA.categorical_features}


def predictor(model, kind: str = "polars", fast: bool = True) -> Predictor:
    names = tuple(getattr(model, "feature_names_in_", SCHEMA.feature_names))
    return Predictor(
        model,
        name="churn",
        version="v",
        feature_names=names,
        proba_decides=True,
        fast=fast,
        to_input=converter(kind, names, SCHEMA),  # type: ignore[arg-type]
        polars_schema=SCHEMA if kind == "polars" else None,
    )


FAST = predictor(MODEL)


def as_rows(frame: pl.DataFrame) -> MixedRows:
    """``frame``'s rows as the mixed request parser returns them."""
    numeric = frame.select(SCHEMA.numeric_features).to_numpy().astype(np.float64)
    categorical = tuple(tuple(frame[c].to_list()) for c in SCHEMA.categorical_features)
    return MixedRows(np.ascontiguousarray(numeric), categorical)


def assert_same_as_sklearn(p: Predictor, model, rows: MixedRows) -> None:
    """The fast path's answer equals scikit-learn's on the polars frame of ``rows``: labels
    exactly, probabilities within 1e-12 (the start-time check's tolerance)."""
    assert p.scorer is not None and p.to_input is not None
    frame = p.to_input(rows)
    out = p.predict(rows)
    with sklearn.config_context(assume_finite=True):
        assert out.labels == model.predict(frame).tolist()
        proba = model.predict_proba(frame)[:, -1]
    np.testing.assert_allclose(out.score, proba, rtol=0, atol=1e-12)
    assert out.values.dtype == np.float64 and out.values.shape == (len(rows),)


# a request value per categorical feature: a known category, an unseen one, or null
def values(name: str) -> st.SearchStrategy[str | None]:
    unseen = st.text(max_size=12).filter(lambda v: v not in KNOWN[name])
    return st.one_of(st.sampled_from(KNOWN[name]), unseen, st.none())


def numbers() -> st.SearchStrategy[float]:
    # the reference's range and far beyond it (large decision values, both signs)
    return st.floats(-1e6, 1e6, allow_nan=False) | st.floats(-100, 200, allow_nan=False)


ROW = st.tuples(
    st.tuples(*(numbers() for _ in SCHEMA.numeric_features)),
    st.tuples(*(values(n) for n in SCHEMA.categorical_features)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(ROW, min_size=1, max_size=40))
def test_random_rows_with_unseen_categories_and_nulls_equal_sklearn(rows):
    numeric = np.array([r[0] for r in rows], dtype=np.float64)
    categorical = tuple(zip(*(r[1] for r in rows), strict=True))
    assert_same_as_sklearn(FAST, MODEL, MixedRows(numeric, categorical))


def test_the_default_mixed_model_is_dense_and_takes_the_fast_path():
    assert type(FAST.scorer) is MixedLinearScorer
    assert MODEL.steps[0][1].sparse_output_ is False
    holdout = churn.split_churn()[1].drop(churn.LABEL)
    for frame in (TRAIN, holdout, holdout.head(1), holdout.head(32)):
        assert_same_as_sklearn(FAST, MODEL, as_rows(frame))
    # the slow path of the same model answers the same
    slow = predictor(MODEL, fast=False)
    assert slow.scorer is None
    a, b = FAST.predict(as_rows(holdout)), slow.predict(as_rows(holdout))
    assert a.labels == b.labels
    np.testing.assert_allclose(a.score, b.score, rtol=0, atol=1e-12)


def test_unseen_categories_and_nulls_get_no_one_hot_column():
    row = TRAIN.head(1)
    rows = MixedRows(
        np.repeat(as_rows(row).numeric, 3, axis=0),
        (("MX", "US", None), ("tablet", "watch", None), ("basic", "", None), (None,) * 3),
    )
    assert FAST.scorer is not None
    z = FAST.scorer.matrix(rows)
    frame = FAST.to_input(rows)  # type: ignore[misc]
    np.testing.assert_array_equal(z, MODEL.steps[0][1].transform(frame))
    # country MX, device watch, plan "" and a null country/device/plan are unseen; the
    # reference's payment_method has nulls, so a null there is a category of its own
    assert z[:, 4:].sum(axis=1).tolist() == [3.0, 2.0, 1.0]
    assert_same_as_sklearn(FAST, MODEL, rows)


def test_columns_in_another_order_a_subset_and_scaler_variants():
    numeric = ["age", "tenure_months"]  # a subset, not in the schema's order
    parts = [
        ("plan", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["plan"]),
        ("numbers", StandardScaler(with_mean=False), numeric),
        ("other", OneHotEncoder(handle_unknown="ignore"), ["payment_method", "country"]),
    ]
    model = Pipeline([("c", ColumnTransformer(parts)), ("m", LogisticRegression(max_iter=5000))])
    labels = np.where(Y == 1, "churned", "stayed")
    model.fit(TRAIN, labels)
    p = predictor(model)
    assert type(p.scorer) is MixedLinearScorer
    holdout = churn.split_churn()[1].drop(churn.LABEL)
    assert_same_as_sklearn(p, model, as_rows(holdout))
    out = p.predict(as_rows(holdout))
    assert set(out.labels) == {"churned", "stayed"}
    np.testing.assert_array_equal(out.values, np.searchsorted(model.classes_, out.labels))


def pipeline(*, scaler=None, encoder=None, **columns) -> Pipeline:
    numeric = list(SCHEMA.numeric_features)
    categorical = list(SCHEMA.categorical_features)
    parts = [
        ("n", scaler or StandardScaler(), numeric),
        ("c", encoder or OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
    ]
    regression = LogisticRegression(max_iter=5000)
    return Pipeline([("t", ColumnTransformer(parts, **columns)), ("m", regression)])


@pytest.mark.parametrize(
    "model",
    [
        pipeline(encoder=OneHotEncoder(handle_unknown="ignore"), sparse_threshold=1.0),
        pipeline(encoder=OneHotEncoder(drop="first", handle_unknown="ignore", sparse_output=False)),
        pipeline(encoder=OneHotEncoder(handle_unknown="error", sparse_output=False)),
        pipeline(
            encoder=OneHotEncoder(
                handle_unknown="infrequent_if_exist", min_frequency=300, sparse_output=False
            )
        ),
        pipeline(
            encoder=OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32)
        ),
        pipeline(scaler=MinMaxScaler()),
        pipeline().set_output(transform="polars"),
    ],
    ids=["sparse", "drop", "unknown-error", "infrequent", "float32", "minmax", "frame-output"],
)
def test_other_pipelines_keep_sklearns_path(model):
    model.fit(TRAIN, Y)
    assert MixedLinearScorer.of(model, SCHEMA) is None
    assert predictor(model).scorer is None


def test_multiclass_and_other_input_kinds_keep_sklearns_path():
    y = np.digitize(TRAIN["tenure_months"].to_numpy(), [12, 36])
    assert MixedLinearScorer.of(pipeline().fit(TRAIN, y), SCHEMA) is None
    # fed pandas, scikit-learn reads a null as NaN, not None: only polars is the fast path's
    assert predictor(MODEL, kind="pandas").scorer is None


def test_the_server_loads_the_default_mixed_model_on_the_fast_path(tmp_path, caplog):
    settings = ServingSettings(
        reference_path=ROOT / churn.REFERENCE_FILE,
        label=churn.LABEL,
        model_name=churn.MODEL,
        warehouse=str(tmp_path / "wh"),
        replica="t",
    )
    with caplog.at_level(logging.INFO, logger="driftlake.serving.loading"):
        p = load_predictor(settings, REF, Warehouse(settings.warehouse))
    assert type(p.scorer) is MixedLinearScorer
    events = [r.getMessage() for r in caplog.records if "fast_predict" in r.getMessage()]
    assert events == ["event=fast_predict_enabled model=churn kind=column-transformer+logistic"]
    assert_same_as_sklearn(p, p.estimator, reference_rows(REF, p.feature_names))


def test_a_fast_path_that_differs_on_the_reference_rows_is_turned_off(caplog):
    p = predictor(MODEL)
    assert p.scorer is not None
    p.scorer.intercept = p.scorer.intercept + 1e-9  # within 1e-12 of nothing: it differs
    with caplog.at_level(logging.INFO, logger="driftlake.serving.loading"):
        _check_fast_path(p, REF)
    assert p.scorer is None
    (event,) = [r.getMessage() for r in caplog.records if "fast_predict" in r.getMessage()]
    assert event.startswith("event=fast_predict_disabled model=churn reason=differs")
    # and scikit-learn answers from then on
    rows = as_rows(TRAIN.head(5))
    assert p.predict(rows).labels == MODEL.predict(p.to_input(rows)).tolist()  # type: ignore[misc]


def test_a_category_with_more_values_than_the_dense_cap_keeps_a_sparse_model(tmp_path):
    rng = np.random.default_rng(0)
    rows = 2 * (DENSE_ONE_HOT_MAX + 1)
    frame = pl.DataFrame(
        {
            "x": rng.normal(size=rows),
            "zip": [f"z{i % (DENSE_ONE_HOT_MAX + 1)}" for i in range(rows)],
            "target": rng.integers(0, 2, rows),
        }
    )
    frame.write_parquet(tmp_path / "ref.parquet")
    reference = load_reference(tmp_path / "ref.parquet", "m")
    model = train_default_model(reference)
    # one-hot columns beyond the cap stay sparse (memory), and sparse has no fast path
    assert model.steps[0][1].sparse_output_ is True
    assert MixedLinearScorer.of(model, reference.schema) is None
