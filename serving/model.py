"""The served model: a fitted model and how one request's rows are predicted with it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn
from scipy.special import expit
from sklearn.base import is_classifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ingest import ModelSchema
from serving._mixed_scorer import MixedLinearScorer


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

    kind = "scaler+logistic"

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


class ModelError(Exception):
    """The model answered a request with output of the wrong shape or kind."""


class Predictor:
    """A fitted model plus what serving needs to know about it.

    Parameters
    ----------
    estimator
        A fitted classifier or regressor with the scikit-learn API (``predict``, optionally
        ``predict_proba`` and ``classes_``), or a plain function of the rows returning one
        label or number per row.
    name, version
        Model name and version label (both end up in every landed row and in metrics).
    feature_names
        The columns the estimator expects, in its order.
    proba_decides
        For classifiers: take the predicted class as the most probable one (one model call
        instead of two). Only for estimators where that is what ``predict`` computes.
    fast
        Use :class:`LinearScorer` when the estimator is a StandardScaler + binary
        LogisticRegression pipeline (the default model) taking float64 arrays, or
        :class:`MixedLinearScorer` (see ``polars_schema``); other estimators always go
        through their own ``predict``.
    to_input
        Turns parsed rows into what the model takes (a frame); None: the float64 array of
        ``feature_names`` columns as parsed.
    classes
        The labels a model without ``classes_`` may return, sorted (the reference's label
        values): a string label lands as its index here.
    polars_schema
        The schema of the :class:`~serving._mixed_request.MixedRows` rows when ``to_input``
        makes them the polars frame the model takes: with ``fast``, a ColumnTransformer
        (StandardScaler, OneHotEncoder) + binary LogisticRegression pipeline (the default
        mixed model) is then evaluated by :class:`MixedLinearScorer`.
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
        to_input: Callable[[Any], Any] | None = None,
        classes: np.ndarray | None = None,
        polars_schema: ModelSchema | None = None,
    ) -> None:
        self.estimator = estimator
        self.name = name
        self.version = version
        self.feature_names = feature_names
        self.to_input = to_input
        # a plain function is its own predict
        self._predict = getattr(estimator, "predict", estimator)
        self.is_classifier = _is_classifier(estimator)
        # scikit-learn's non-classifiers with predict_proba (mixtures) give no class score
        sklearn_api = hasattr(estimator, "__sklearn_tags__")
        self.has_proba = (self.is_classifier or not sklearn_api) and callable(
            getattr(estimator, "predict_proba", None)
        )
        self.proba_decides = proba_decides and self.has_proba
        if self.is_classifier:
            classes = np.asarray(estimator.classes_)
        self.classes = classes
        self._numeric_classes = classes is not None and classes.dtype.kind in "biuf"
        self._class_order = None if classes is None else np.argsort(classes, kind="stable")
        fast = fast and self.is_classifier
        self.scorer: LinearScorer | MixedLinearScorer | None = None
        if fast and to_input is None:
            self.scorer = LinearScorer.of(estimator)
        elif fast and polars_schema is not None and polars_schema.categorical_features:
            self.scorer = MixedLinearScorer.of(estimator, polars_schema)

    def predict(self, x: Any) -> Prediction:
        """Predict the rows ``x`` in one vectorized call.

        ``x`` is what the request parser returns: finite float64 rows x ``feature_names``,
        or :class:`~serving._mixed_request.MixedRows`.

        Raises
        ------
        ModelError
            If the model's output is not one label or number per row (or its probabilities
            not one row per row).
        Exception
            Whatever the model raises.
        """
        if self.scorer is not None:
            index, score = self.scorer.predict(x)
            labels = self.classes[index]
            values = (labels if self._numeric_classes else index).astype(np.float64)
            return Prediction(labels.tolist(), values, score)
        rows = len(x)
        data = x if self.to_input is None else self.to_input(x)
        # inputs were validated finite at the HTTP edge: skip scikit-learn's second check
        with sklearn.config_context(assume_finite=True):
            score = None
            if self.has_proba:
                proba = np.asarray(self.estimator.predict_proba(data))
                if proba.ndim != 2 or proba.shape[0] != rows:
                    raise ModelError(
                        f"predict_proba returned shape {proba.shape} for {rows} rows; "
                        "expected one row of class probabilities per row"
                    )
                score = np.ascontiguousarray(proba[:, -1], dtype=np.float64)
            if self.proba_decides:
                index = proba.argmax(axis=1)
                labels = self.classes[index]
            else:
                labels = _one_per_row(self._predict(data), rows)
                index = None
        kind = labels.dtype.kind
        if kind == "O":
            labels, kind = _plain_labels(labels)
        if kind in "biuf":
            # a copy: capture keeps it until published, whatever the model does with its output
            values = labels.astype(np.float64)
        elif kind == "U":
            values = (self._index(labels) if index is None else index).astype(np.float64)
        else:
            raise ModelError(
                f"the model returned values of dtype {labels.dtype}; expected numbers or "
                "string labels"
            )
        return Prediction(labels.tolist(), values, score)

    def _index(self, labels: np.ndarray) -> np.ndarray:
        """Each string label's index in ``classes``."""
        classes, order = self.classes, self._class_order
        if classes is None or order is None:
            raise ModelError(
                "the model returned string labels but has no classes_ and the reference no "
                "label column: a label cannot land as a number"
            )
        try:
            at = np.searchsorted(classes, labels, sorter=order).clip(0, len(classes) - 1)
            index = order[at]
            known = classes[index] == labels
        except TypeError:  # e.g. string labels against numeric classes
            known = np.zeros(len(labels), dtype=bool)
        if not known.all():
            unknown = labels[~known][:3].tolist()
            raise ModelError(
                f"the model returned labels {unknown} that are not among its classes "
                f"{classes[:10].tolist()}"
            )
        return index


def _is_classifier(estimator: Any) -> bool:
    """True for a fitted model with ``predict`` and ``classes_`` that is not a regressor."""
    if not (hasattr(estimator, "predict") and hasattr(estimator, "classes_")):
        return False
    tags = getattr(estimator, "__sklearn_tags__", None)
    return tags is None or bool(is_classifier(estimator))


def _one_per_row(output: Any, rows: int) -> np.ndarray:
    labels = np.asarray(output)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.shape[0] != rows:
        raise ModelError(
            f"the model returned shape {labels.shape} for {rows} rows; expected one label or "
            "number per row (multi-output models are not supported)"
        )
    return labels


def _plain_labels(labels: np.ndarray) -> tuple[np.ndarray, str]:
    """An object array of Python strs or numbers as a str or float64 array, and its kind."""
    types = set(map(type, labels.tolist()))
    if types <= {str}:
        return labels.astype(str), "U"
    if types <= {int, float}:
        return labels.astype(np.float64), "f"
    shown = sorted(t.__name__ for t in types - {str, int, float})
    raise ModelError(f"the model returned values of type {shown}; expected numbers or strings")
