"""The numpy fast path of the default mixed model: ColumnTransformer(StandardScaler,
OneHotEncoder) + binary LogisticRegression, evaluated on :class:`MixedRows` without
scikit-learn's per-call input checks (~2 ms a request, ~100x the arithmetic)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain, repeat
from typing import Any

import numpy as np
import sklearn
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ingest import ModelSchema
from serving._mixed_request import MixedRows


class MixedLinearScorer:
    """Builds the dense matrix the fitted ColumnTransformer would, then scores it as
    :class:`serving.model.LinearScorer` does.

    Each numeric block is ``(x - mean_) / scale_`` (StandardScaler's two steps, elementwise,
    so bit-identical); each categorical feature is one-hot from a value -> column table of
    the encoder's ``categories_`` (a value not in it, None included when the encoder saw no
    null, gets no 1: ``handle_unknown="ignore"``). The matrix has the layout np.hstack gives
    scikit-learn (C-contiguous float64), so ``@ coef_.T`` is the same BLAS call on the same
    bytes and the outputs equal scikit-learn's on the polars frame of the same rows.
    """

    kind = "column-transformer+logistic"

    def __init__(
        self,
        width: int,
        scaled: list[tuple[slice, np.ndarray | None, np.ndarray | None, np.ndarray | None]],
        onehot: list[tuple[int, Callable[[str | None, int], int]]],
        model: LogisticRegression,
    ) -> None:
        self.width = width
        self.scaled = scaled
        self.onehot = onehot  # (categorical feature index, value -> output column .get)
        self.coef_t = model.coef_.T
        self.intercept = model.intercept_

    @classmethod
    def of(cls, estimator: Any, schema: ModelSchema) -> MixedLinearScorer | None:
        """Return the scorer of ``estimator`` if it is exactly that pipeline, fitted on the
        columns of ``schema`` by name with a dense output, else None."""
        if type(estimator) is not Pipeline or len(estimator.steps) != 2:
            return None
        transform, model = estimator.steps[0][1], estimator.steps[1][1]
        if type(transform) is not ColumnTransformer or type(model) is not LogisticRegression:
            return None
        coef = getattr(model, "coef_", None)
        if not isinstance(coef, np.ndarray) or coef.shape[0] != 1 or len(model.classes_) != 2:
            return None
        if getattr(transform, "sparse_output_", True) or _frame_output(transform):
            return None  # a sparse product sums in another order; a frame has another layout
        numeric = {name: k for k, name in enumerate(schema.numeric_features)}
        categorical = {name: k for k, name in enumerate(schema.categorical_features)}
        scaled, onehot = [], []
        end = 0
        for name, transformer, names in transform.transformers_:
            if transformer == "drop" or len(names) == 0:
                continue
            if not _names(names):
                return None
            at = transform.output_indices_[name]
            if at.start != end:
                return None
            end = at.stop
            if type(transformer) is StandardScaler and set(names) <= numeric.keys():
                take = [numeric[n] for n in names]
                scaled.append(_scaled(transformer, take, len(numeric), at))
            elif type(transformer) is OneHotEncoder and set(names) <= categorical.keys():
                tables = _tables(transformer)
                if tables is None:
                    return None
                offset = at.start
                for n, table in zip(names, tables, strict=True):
                    output = {v: offset + j for v, j in table.items()}
                    onehot.append((categorical[n], output.get))
                    offset += len(table)
                if offset != at.stop:
                    return None
            else:
                return None
        if end != coef.shape[1]:
            return None
        return cls(end, scaled, onehot, model)

    def matrix(self, rows: MixedRows) -> np.ndarray:
        """The float64 rows x outputs matrix the ColumnTransformer gives for ``rows``."""
        n = len(rows)
        z = np.zeros((n, self.width), dtype=np.float64)
        for at, take, mean, scale in self.scaled:
            part = z[:, at]
            block = rows.numeric if take is None else rows.numeric[:, take]
            if mean is not None:
                np.subtract(block, mean, out=part)
            else:
                part[...] = block
            if scale is not None:
                np.divide(part, scale, out=part)
        if self.onehot:
            # each categorical feature's column per row, -1 for a value with none
            columns = chain.from_iterable(
                map(get, rows.categorical[k], repeat(-1)) for k, get in self.onehot
            )
            at = np.fromiter(columns, np.intp, len(self.onehot) * n).reshape(len(self.onehot), n)
            flat = at + np.arange(0, n * self.width, self.width)
            z.reshape(-1)[flat[at >= 0]] = 1.0
        return z

    def predict(self, rows: MixedRows) -> tuple[np.ndarray, np.ndarray]:
        """Return (class index, probability of the last class) per row, as
        :meth:`serving.model.LinearScorer.predict`."""
        d = (self.matrix(rows) @ self.coef_t + self.intercept).reshape(-1)
        return (d > 0).astype(np.intp), expit(d)


def _frame_output(transform: ColumnTransformer) -> bool:
    """True if ``set_output`` (the transformer's or the global one) makes it return a frame."""
    configured = getattr(transform, "_sklearn_output_config", {}).get("transform", "default")
    return configured != "default" or sklearn.get_config()["transform_output"] != "default"


def _names(names: Any) -> bool:
    """True for a list (or array) of column names; a single name gives a 1-d column."""
    if isinstance(names, str) or not isinstance(names, Sequence | np.ndarray):
        return False
    return all(isinstance(n, str) for n in names)


def _scaled(
    scaler: StandardScaler, take: list[int], numeric: int, at: slice
) -> tuple[slice, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(output columns, the numeric columns it takes or None for all ``numeric`` in order,
    mean, scale)."""
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None
    index = None if take == list(range(numeric)) else np.asarray(take, dtype=np.intp)
    return at, index, mean, scale


def _tables(encoder: OneHotEncoder) -> list[dict[str | None, int]] | None:
    """Per feature, each category's index among its one-hot columns; None if the encoder
    drops, groups infrequent values, raises on unknown ones, outputs other than float64, or
    has a category other than a str or None (a NaN, a number: no request value is one)."""
    if (
        encoder.handle_unknown != "ignore"
        or encoder.drop_idx_ is not None
        or getattr(encoder, "_infrequent_enabled", True)
        or np.dtype(encoder.dtype) != np.float64
    ):
        return None
    tables = []
    for categories in encoder.categories_:
        values = categories.tolist()
        if not all(v is None or type(v) is str for v in values):
            return None
        tables.append({v: j for j, v in enumerate(values)})
    return tables
