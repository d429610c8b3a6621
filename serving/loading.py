"""Loading the served model: a configured model file or import path, or the default model
trained from the reference and cached in the warehouse; each checked before it serves."""

from __future__ import annotations

import hashlib
import logging
import pickle
import warnings
from pathlib import Path
from typing import Any

import joblib  # scikit-learn's own persistence dependency; reads pickle and joblib files
import numpy as np
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from ingest import ConfigError, LandingError, Warehouse
from ingest.paths import model_cache_path
from ingest.reference import Reference
from serving._mixed_request import MixedRows
from serving._model_input import InputKind, converter, resolve_input
from serving._model_source import import_model
from serving.model import ModelError, Predictor
from serving.settings import ServingSettings

log = logging.getLogger("driftlake.serving.loading")

# Part of the default model's cache key: change it whenever the training recipe changes.
RECIPE = "standard-scaler+logistic-regression/v1"
# the default model of a reference with categorical features
MIXED_RECIPE = "column-transformer(standard-scaler,dense-one-hot-encoder)+logistic-regression/v2"
# Most one-hot columns the default mixed model makes dense: a dense matrix is rows x columns
# float64, for the whole reference at training and per request (1,000 rows: 8 MB at most).
DENSE_ONE_HOT_MAX = 1024
_INPUTS = {
    "numpy": "a float64 array",
    "pandas": "a pandas DataFrame",
    "polars": "a polars DataFrame",
    "arrow": "a pyarrow Table",
}


def file_sha256(path: Path) -> str:
    """Return the hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def train_default_model(reference: Reference) -> Pipeline:
    """Train the default model on the reference features: StandardScaler + LogisticRegression,
    or, for a reference with categorical features, a ColumnTransformer of StandardScaler (the
    numeric features) and OneHotEncoder (the categorical ones, unknown values ignored; dense
    up to :data:`DENSE_ONE_HOT_MAX` one-hot columns) before LogisticRegression.

    Deterministic for a given reference file and scikit-learn version. The numeric model is
    fitted on a numpy array (no feature names: predicting on arrays never warns); the mixed
    one on the reference's polars frame, and predicts on polars frames.

    Raises
    ------
    ConfigError
        If the reference has no label column, or its rows cannot train the model.
    """
    if reference.label is None:
        raise ConfigError(
            "cannot train the default model: the reference file has no label column; "
            "set DRIFTLAKE_LABEL to the label column, or DRIFTLAKE_MODEL_PATH to a fitted model"
        )
    y = reference.frame[reference.label].to_numpy()
    regression = LogisticRegression(max_iter=5000, tol=1e-8)
    categorical = list(reference.schema.categorical_features)
    if not categorical:
        x: Any = reference.features.to_numpy().astype(np.float64)
        model = Pipeline([("scale", StandardScaler()), ("model", regression)])
    else:
        numeric = list(reference.schema.numeric_features)
        parts = [("numeric", StandardScaler(), numeric)] if numeric else []
        # dense: the ColumnTransformer's output is then a dense matrix, which the numpy fast
        # path (serving._mixed_scorer) rebuilds bit for bit; sparse beyond the cap (nulls are
        # a category of their own, as the encoder counts them)
        width = sum(reference.frame[c].n_unique() for c in categorical)
        dense = width <= DENSE_ONE_HOT_MAX
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=not dense)
        parts.append(("categorical", encoder, categorical))
        x = reference.features  # scikit-learn takes polars frames, columns by name
        model = Pipeline([("columns", ColumnTransformer(parts)), ("model", regression)])
    try:
        return model.fit(x, y)
    except ValueError as exc:  # NaN in a numeric feature, a single class, ...
        raise ConfigError(f"cannot train the default model on the reference file: {exc}") from exc


def default_model_key(settings: ServingSettings, *, mixed: bool = False) -> str:
    """Return the cache key (hex sha256) of the default model trained from ``settings``
    (``mixed``: for a reference with categorical features)."""
    digest = hashlib.sha256()
    digest.update(file_sha256(settings.reference_path).encode())
    for part in (settings.label or "", MIXED_RECIPE if mixed else RECIPE, sklearn.__version__):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()


def load_predictor(
    settings: ServingSettings, reference: Reference, warehouse: Warehouse
) -> Predictor:
    """Return the predictor ``settings`` name: an import path, a model file, or the default.

    Parameters
    ----------
    settings
        ``model`` names a model by import path; ``model_path`` a pickled or joblib model;
        neither trains (once, then caches under ``<warehouse>/_models/``) the default model.
        ``model_input`` says what the model is given the rows as.
    reference
        The reference data set: its features are the columns the model must take, two of
        its rows the smoke test every model passes before it serves.
    warehouse
        Where the default model is cached.

    Raises
    ------
    ConfigError
        If both ``model`` and ``model_path`` are set, the model cannot be imported, loaded or
        trained, does not take the reference's features as ``model_input``, or fails on two
        reference rows.
    """
    schema = reference.schema
    if settings.model is not None and settings.model_path is not None:
        raise ConfigError(
            f"DRIFTLAKE_MODEL (--model) {settings.model!r} and DRIFTLAKE_MODEL_PATH "
            f"(--model-path) {str(settings.model_path)!r} are both set; set one of them"
        )
    proba_decides = False
    key = ""  # the default model's cache key
    if settings.model is not None:
        estimator, digest = import_model(settings.model)
        version = settings.model_version or digest[:12]
        describe = f"model {settings.model!r}"
    elif settings.model_path is None:
        key = default_model_key(settings, mixed=bool(schema.categorical_features))
        estimator = None  # trained or read from the cache once the settings are checked
        version = settings.model_version or key[:12]
        describe = "the default model"
        proba_decides = True  # LogisticRegression predicts the likeliest class
    else:
        path = settings.model_path
        try:
            version = settings.model_version or file_sha256(path)[:12]
            estimator = joblib.load(path)
        except Exception as exc:  # unpickling can raise almost anything; all mean "bad file"
            raise ConfigError(
                f"cannot load model file {path}: {type(exc).__name__}: {exc}; expected a "
                "scikit-learn estimator saved with pickle or joblib"
            ) from exc
        describe = f"model file {path}"
        if not hasattr(estimator, "predict"):
            raise ConfigError(
                f"{describe} holds a {type(estimator).__name__}, which has no predict(); "
                "expected a fitted scikit-learn estimator"
            )
        proba_decides = _predicts_likeliest_class(estimator)
    kind = resolve_input(settings.model_input, estimator, schema, describe)
    if estimator is None:
        estimator = _cached_default(key, reference, warehouse)
    order = _feature_order(estimator, schema.feature_names, describe, kind)
    predictor = Predictor(
        estimator,
        name=settings.model_name,
        version=version,
        feature_names=order,
        proba_decides=proba_decides,
        to_input=converter(kind, order, reference.schema),
        classes=_label_values(reference),
        polars_schema=schema if kind == "polars" else None,
    )
    _smoke_test(predictor, reference, describe, kind)
    _check_fast_path(predictor, reference)
    _check_proba_decides(predictor, reference)
    log.info(
        "event=model_loaded model=%s source=%r model_version=%s input=%s",
        settings.model_name,
        describe,
        version,
        kind,
    )
    return predictor


def reference_rows(reference: Reference, order: tuple[str, ...], n: int | None = None) -> Any:
    """Reference rows as the request parser returns them: float64 rows x ``order`` for a
    schema of numeric features, else :class:`MixedRows` (``n``: the first ``n`` rows whose
    numbers are all present)."""
    schema = reference.schema
    frame = reference.features
    if n is not None:
        complete = frame.drop_nulls(subset=list(schema.numeric_features))
        frame = (complete if complete.height >= n else frame).head(n)
    if not schema.categorical_features:
        return frame.select(order).to_numpy().astype(np.float64)
    numeric = np.ascontiguousarray(
        frame.select(schema.numeric_features).to_numpy().astype(np.float64)
    ).reshape(frame.height, len(schema.numeric_features))
    categorical = tuple(tuple(frame[c].to_list()) for c in schema.categorical_features)
    return MixedRows(numeric, categorical)


def _label_values(reference: Reference) -> np.ndarray | None:
    """The reference's distinct labels, sorted: the classes of a model without ``classes_``."""
    if reference.label is None:
        return None
    values = reference.frame[reference.label].drop_nulls().unique().sort().to_list()
    return np.asarray(values) if values else None


def _predicts_likeliest_class(estimator: Any) -> bool:
    """True for the estimators whose ``predict`` is ``classes_[argmax(predict_proba)]``.

    Forests and trees (single output) compute exactly that, so one ``predict_proba`` call
    answers both: half the model time per request (a 100-tree forest: ~4 ms instead of ~8).
    """
    likeliest = (RandomForestClassifier, ExtraTreesClassifier, DecisionTreeClassifier)
    return isinstance(estimator, likeliest) and getattr(estimator, "n_outputs_", 1) == 1


def _cached_default(key: str, reference: Reference, warehouse: Warehouse) -> Any:
    rel = model_cache_path(key[:32])
    data = warehouse.read_bytes(rel)
    if data is not None:
        try:
            estimator = pickle.loads(data)  # our own cache, written below
            log.info("event=default_model_cached path=%s", warehouse.uri(rel))
            return estimator
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            log.warning("event=default_model_cache_unreadable path=%s reason=%s", rel, exc)
    estimator = train_default_model(reference)
    try:
        warehouse.write_bytes(rel, pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL))
        log.info("event=default_model_trained path=%s", warehouse.uri(rel))
    except LandingError as exc:
        # serving still works; the next start just trains again
        log.warning("event=default_model_not_cached path=%s reason=%s", rel, exc)
    return estimator


def _feature_order(
    estimator: Any, features: tuple[str, ...], describe: str, kind: InputKind
) -> tuple[str, ...]:
    """The model's column order: the names it was fitted with, else the reference's."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        n = getattr(estimator, "n_features_in_", len(features))
        if n != len(features):
            raise ConfigError(
                f"{describe} takes {n} features but the reference has {len(features)}; "
                "serve it with the reference it was trained on"
            )
        if kind != "numpy" and hasattr(estimator, "n_features_in_"):
            # fitted on an array, given a frame of the same columns in the same order
            warnings.filterwarnings(
                "ignore", message="X has feature names, but", category=UserWarning
            )
        return features
    order = tuple(str(n) for n in names)
    if set(order) != set(features) or len(order) != len(features):
        missing = sorted(set(features) - set(order))
        extra = sorted(set(order) - set(features))
        raise ConfigError(
            f"{describe} was fitted on other columns than the reference's features: "
            f"not in the model {missing}, not in the reference {extra}"
        )
    if kind == "numpy":
        # Fitted with names, predicting on arrays (no per-request DataFrame): the columns
        # are already checked and put in this order, so scikit-learn's reminder is noise.
        warnings.filterwarnings(
            "ignore", message="X does not have valid feature names", category=UserWarning
        )
    return order


def _smoke_test(predictor: Predictor, reference: Reference, describe: str, kind: str) -> None:
    rows = reference_rows(reference, predictor.feature_names, 2)
    try:
        predictor.predict(rows)
    except Exception as exc:  # a model is arbitrary code: whatever it raises refuses it
        problem = " ".join(f"{type(exc).__name__}: {exc}".split())
        if len(problem) > 500:
            problem = problem[:500] + "..."
        if isinstance(exc, ModelError):
            hint = "expected one label or number per row"
        elif kind == "numpy":
            hint = "expected a model taking a float64 array of the reference's feature columns"
        else:
            hint = "is DRIFTLAKE_MODEL_INPUT (--model-input) the frame type it takes?"
        raise ConfigError(
            f"{describe} (model {predictor.name!r}) cannot predict two reference rows given "
            f"as {_INPUTS[kind]}: {problem}; {hint}"
        ) from exc


def _check_fast_path(predictor: Predictor, reference: Reference) -> None:
    """Keep the numpy fast path only if it answers exactly as scikit-learn on the reference
    (for a mixed schema: its rows with every number present, as requests carry them)."""
    if predictor.scorer is None:
        return
    if predictor.to_input is None:
        x = reference.features.select(predictor.feature_names).to_numpy().astype(np.float64)
        data = x
    else:
        x = reference_rows(reference, predictor.feature_names, _complete_rows(reference))
        data = predictor.to_input(x)
    index, score = predictor.scorer.predict(x)
    labels = predictor.classes[index]
    est = predictor.estimator
    with sklearn.config_context(assume_finite=True):
        # no row to compare (every reference row lacks a number): not shown to be equal
        same = (
            len(x) > 0
            and np.array_equal(labels, est.predict(data))
            and np.allclose(score, est.predict_proba(data)[:, -1], rtol=0, atol=1e-12)
        )
    if not same:
        predictor.scorer = None
        log.warning(
            "event=fast_predict_disabled model=%s reason=differs from scikit-learn %s on the "
            "reference rows action=using scikit-learn's predict",
            predictor.name,
            sklearn.__version__,
        )
    else:
        log.info(
            "event=fast_predict_enabled model=%s kind=%s", predictor.name, predictor.scorer.kind
        )


def _complete_rows(reference: Reference) -> int:
    """How many reference rows have every numeric feature present."""
    return reference.features.drop_nulls(subset=list(reference.schema.numeric_features)).height


def _check_proba_decides(predictor: Predictor, reference: Reference) -> None:
    """Keep ``proba_decides`` only if it labels the reference rows exactly as ``predict``."""
    if not predictor.proba_decides or predictor.scorer is not None:
        return
    rows = reference_rows(reference, predictor.feature_names)
    data = rows if predictor.to_input is None else predictor.to_input(rows)
    with sklearn.config_context(assume_finite=True):
        expected = np.asarray(predictor.estimator.predict(data)).ravel().tolist()
    if predictor.predict(rows).labels != expected:
        predictor.proba_decides = False
        log.warning(
            "event=proba_decides_disabled model=%s reason=argmax of predict_proba differs "
            "from predict on the reference rows action=calling both",
            predictor.name,
        )
