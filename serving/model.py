"""The served model: a fitted estimator and how one request's rows are predicted with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn
from scipy.special import expit
from sklearn.base import is_classifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


@dataclass(frozen=True)
class Prediction:
    """The model's answer for a batch of rows.

    ``labels`` go back to the client (class labels, or regression values); ``values`` are
    the float64 column landed as ``prediction`` (the label itself when numeric, else the
    class index); ``score`` is the probability of the last class, when the model has one.
    """

    labels: list[Any]
    values: np.ndarray
    score: np.ndarray | None


class LinearScorer:
    """A fitted StandardScaler + binary LogisticRegression pipeline, evaluated with numpy.

    The same arithmetic scikit-learn performs, in the same order (subtract the mean, divide
    by the scale, ``@ coef_.T + intercept_``, ``expit``), without its per-call input
    validation, which costs ~0.2 ms per request, ~40x the arithmetic for one row. Folding
    the scaler into the coefficients would be cheaper still, but its last-bit differences
    could flip a label whose decision value is within rounding of 0; this way the outputs
    equal scikit-learn's.
    """

    def __init__(self, scaler: StandardScaler, model: LogisticRegression) -> None:
        self.mean = None if scaler.mean_ is None or not scaler.with_mean else scaler.mean_
        self.scale = None if scaler.scale_ is None or not scaler.with_std else scaler.scale_
        self.coef_t = model.coef_.T
        self.intercept = model.intercept_
        self.classes = np.asarray(model.classes_)

    @classmethod
    def of(cls, estimator: Any) -> LinearScorer | None:
        """Return the scorer of ``estimator`` if it is exactly that pipeline, else None."""
        if type(estimator) is not Pipeline or len(estimator.steps) != 2:
            return None
        scaler, model = estimator.steps[0][1], estimator.steps[1][1]
        if type(scaler) is not StandardScaler or type(model) is not LogisticRegression:
            return None
        coef = getattr(model, "coef_", None)
        if not isinstance(coef, np.ndarray) or coef.shape[0] != 1 or len(model.classes_) != 2:
            return None  # sparse coefficients or multiclass: scikit-learn's own path
        return cls(scaler, model)

    def decision(self, x: np.ndarray) -> np.ndarray:
        """Return the decision value per row (``decision_function``)."""
        z = x - self.mean if self.mean is not None else x.copy()
        if self.scale is not None:
            z /= self.scale
        return (z @ self.coef_t + self.intercept).reshape(-1)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (class index, probability of the last class) per row.

        ``classes_[index]`` is what ``predict`` returns; the probability is
        ``predict_proba(x)[:, -1]``.
        """
        d = self.decision(x)
        return (d > 0).astype(np.intp), expit(d)


class Predictor:
    """A fitted scikit-learn estimator plus what serving needs to know about it.

    Parameters
    ----------
    estimator
        A fitted classifier or regressor taking a float64 array of ``feature_names`` columns.
    name, version
        Model name and version label (both end up in every landed row and in metrics).
    feature_names
        The columns the estimator expects, in its order.
    proba_decides
        For classifiers: take the predicted class as the most probable one (one model call
        instead of two). Only for estimators where that is what ``predict`` computes.
    fast
        Use :class:`LinearScorer` when the estimator is a StandardScaler + binary
        LogisticRegression pipeline (the default model); other estimators always go through
        scikit-learn.
    """

    def __init__(
        self,
        estimator: Any,
        *,
        name: str,
        version: str,
        feature_names: tuple[str, ...],
        proba_decides: bool = False,
        fast: bool = True,
    ) -> None:
        self.estimator = estimator
        self.name = name
        self.version = version
        self.feature_names = feature_names
        self.is_classifier = bool(is_classifier(estimator)) and hasattr(estimator, "classes_")
        self.has_proba = self.is_classifier and hasattr(estimator, "predict_proba")
        self.proba_decides = proba_decides and self.has_proba
        classes = np.asarray(estimator.classes_) if self.is_classifier else None
        self.classes = classes
        self._numeric_classes = classes is not None and classes.dtype.kind in "biuf"
        self.scorer = LinearScorer.of(estimator) if fast else None

    def predict(self, x: np.ndarray) -> Prediction:
        """Predict ``x`` (rows x ``feature_names``, finite float64) in one vectorized call."""
        if self.scorer is not None:
            index, score = self.scorer.predict(x)
            labels = self.classes[index]
            values = (labels if self._numeric_classes else index).astype(np.float64)
            return Prediction(labels.tolist(), values, score)
        # inputs were validated finite at the HTTP edge: skip scikit-learn's second check
        with sklearn.config_context(assume_finite=True):
            score = None
            if self.has_proba:
                proba = self.estimator.predict_proba(x)
                score = np.ascontiguousarray(proba[:, -1], dtype=np.float64)
            if self.proba_decides:
                index = proba.argmax(axis=1)
                labels = self.classes[index]
            else:
                labels = np.asarray(self.estimator.predict(x)).ravel()
                index = None
        if not self.is_classifier:
            values = labels.astype(np.float64, copy=False)
        elif self._numeric_classes:
            values = labels.astype(np.float64)
        else:
            if index is None:
                index = np.searchsorted(self.classes, labels)
            values = index.astype(np.float64)
        return Prediction(labels.tolist(), values, score)
