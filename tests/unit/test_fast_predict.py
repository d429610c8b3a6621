"""The numpy fast path of the default model answers exactly as scikit-learn does."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from harness import REFERENCE
from harness.servers import holdout_features
from ingest import Warehouse
from ingest.reference import load_reference
from serving import Predictor, ServingSettings, load_predictor, train_default_model
from serving.model import LinearScorer

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]

REF = load_reference(REFERENCE, "breast_cancer")
X_REF = REF.features.to_numpy().astype(np.float64)
Y_REF = REF.frame["target"].to_numpy()
X_HOLD = holdout_features().select(REF.schema.feature_names).to_numpy().astype(np.float64)


def inputs() -> list[np.ndarray]:
    """Reference and held-out rows, single rows, and far-out rows (large decision values)."""
    rng = np.random.default_rng(0)
    spread = X_REF.std(axis=0)
    wild = X_REF[rng.integers(0, len(X_REF), 500)] + rng.normal(size=(500, 30)) * 3 * spread
    return [X_REF, X_HOLD, X_HOLD[:1], X_REF[7:8], wild, np.ascontiguousarray(wild[:32])]


def assert_same_as_sklearn(predictor: Predictor, estimator) -> None:
    for x in inputs():
        out = predictor.predict(x)
        assert out.labels == estimator.predict(x).tolist()
        np.testing.assert_allclose(out.score, estimator.predict_proba(x)[:, -1], rtol=0, atol=1e-12)
        assert out.values.dtype == np.float64 and out.values.shape == (x.shape[0],)


def test_default_model_takes_the_fast_path_and_equals_sklearn():
    model = train_default_model(REF)
    names = REF.schema.feature_names
    fast = Predictor(model, name="m", version="v", feature_names=names, proba_decides=True)
    assert fast.scorer is not None
    assert_same_as_sklearn(fast, model)
    slow = Predictor(model, name="m", version="v", feature_names=names, fast=False)
    assert slow.scorer is None
    for x in inputs():
        a, b = fast.predict(x), slow.predict(x)
        assert a.labels == b.labels
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_allclose(a.score, b.score, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "scaler", [StandardScaler(with_mean=False), StandardScaler(with_std=False)]
)
def test_scaler_variants_and_string_classes(scaler):
    labels = np.where(Y_REF == 1, "benign", "malignant")
    model = Pipeline([("s", scaler), ("m", LogisticRegression(max_iter=5000))]).fit(X_REF, labels)
    p = Predictor(model, name="m", version="v", feature_names=REF.schema.feature_names)
    assert p.scorer is not None
    assert_same_as_sklearn(p, model)
    out = p.predict(X_HOLD)
    # a non-numeric class lands as its index in classes_
    np.testing.assert_array_equal(out.values, np.searchsorted(model.classes_, out.labels))


@pytest.mark.parametrize(
    "estimator",
    [
        RandomForestClassifier(n_estimators=5, random_state=0),
        LogisticRegression(max_iter=5000),  # no scaler: not the default pipeline
        Pipeline([("s", MinMaxScaler()), ("m", LogisticRegression(max_iter=5000))]),
        Pipeline([("s", StandardScaler()), ("m", LinearRegression())]),
    ],
    ids=["forest", "bare-logistic", "minmax", "regression"],
)
def test_other_estimators_keep_sklearns_path(estimator):
    estimator.fit(X_REF, Y_REF)
    assert LinearScorer.of(estimator) is None


def test_multiclass_keeps_sklearns_path():
    y = np.digitize(X_REF[:, 0], np.quantile(X_REF[:, 0], [0.33, 0.66]))
    model = Pipeline([("s", StandardScaler()), ("m", LogisticRegression(max_iter=5000))])
    assert LinearScorer.of(model.fit(X_REF, y)) is None


def test_forest_is_answered_by_one_predict_proba_with_predicts_labels(tmp_path):
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(X_REF, Y_REF)
    path = tmp_path / "forest.joblib"
    joblib.dump(forest, path)
    settings = ServingSettings(
        reference_path=REFERENCE, warehouse=str(tmp_path / "wh"), model_path=path, replica="t"
    )
    predictor = load_predictor(settings, REF, Warehouse(str(tmp_path / "wh")))
    assert predictor.proba_decides and predictor.scorer is None
    for x in inputs():
        out = predictor.predict(x)
        assert out.labels == forest.predict(x).tolist()
        np.testing.assert_array_equal(out.score, forest.predict_proba(x)[:, -1])
