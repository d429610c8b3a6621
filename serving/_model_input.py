"""What a model is given a request's rows as: a float64 array, or a pandas, polars or Arrow frame.

The kind is chosen once at startup (the ``model_input`` setting, or what the model's function
declares); each request's parsed rows are then converted by one function, columns named and
in the model's order. pandas is imported only when a model asks for it (it is not a
dependency of the product).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

import numpy as np
import polars as pl
import pyarrow as pa

from ingest import ConfigError, ModelSchema
from serving._mixed_request import MixedRows

InputKind = Literal["numpy", "pandas", "polars", "arrow"]
INPUT_KINDS: tuple[InputKind, ...] = get_args(InputKind)
# the written name of an annotation -> its kind (string annotations that cannot be resolved)
_WRITTEN = {
    "np.ndarray": "numpy",
    "numpy.ndarray": "numpy",
    "NDArray": "numpy",
    "npt.NDArray": "numpy",
    "numpy.typing.NDArray": "numpy",
    "pd.DataFrame": "pandas",
    "pandas.DataFrame": "pandas",
    "pl.DataFrame": "polars",
    "polars.DataFrame": "polars",
    "pa.Table": "arrow",
    "pyarrow.Table": "arrow",
}

Converter = Callable[[Any], Any]


def declared_input(model: Any) -> InputKind | None:
    """The kind the first parameter of ``model`` (a function, or an object's ``predict``) is
    annotated with, if it is one of :data:`INPUT_KINDS`; else None."""
    function = getattr(model, "predict", model)
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # builtins and some C extensions have none
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    first = next((p for p in signature.parameters.values() if p.kind in positional), None)
    if first is None or first.annotation is inspect.Parameter.empty:
        return None
    annotation = first.annotation
    if isinstance(annotation, str):  # `from __future__ import annotations`: resolve it
        target = getattr(function, "__func__", function)
        if not inspect.isfunction(target):  # an instance with __call__
            target = type(target).__call__
        # names only imported under TYPE_CHECKING, or none resolvable: read as written
        with contextlib.suppress(Exception):
            annotation = typing.get_type_hints(target).get(first.name, annotation)
    if isinstance(annotation, str):
        return _WRITTEN.get(annotation.split("[", 1)[0].strip())  # type: ignore[return-value]
    return _kind_of_type(annotation)


def _kind_of_type(annotation: Any) -> InputKind | None:
    cls = typing.get_origin(annotation) or annotation
    if not isinstance(cls, type):
        return None
    if issubclass(cls, np.ndarray):
        return "numpy"
    if issubclass(cls, pl.DataFrame):
        return "polars"
    if issubclass(cls, pa.Table):
        return "arrow"
    if cls.__module__.partition(".")[0] == "pandas" and cls.__name__ == "DataFrame":
        return "pandas"
    return None


def resolve_input(setting: str, model: Any, schema: ModelSchema, describe: str) -> InputKind:
    """Return the kind ``model`` is fed: ``setting``, or for ``auto`` what it declares or the
    schema's default (numpy for numeric features only, polars with categorical ones). None
    for ``model``: one that declares nothing (the default model, before it is loaded).

    Raises
    ------
    ConfigError
        If numpy is asked for a schema with categorical features, or pandas is asked for and
        not installed.
    """
    categorical = schema.categorical_features
    if setting == "auto":
        declared = None if model is None else declared_input(model)
        kind: InputKind = declared or ("polars" if categorical else "numpy")
        source = f"the annotation of {describe}'s first parameter" if declared else "auto"
    elif setting in INPUT_KINDS:
        kind, source = setting, f"DRIFTLAKE_MODEL_INPUT={setting}"  # type: ignore[assignment]
    else:
        raise ConfigError(f"model_input {setting!r} is not one of auto, {', '.join(INPUT_KINDS)}")
    if kind == "numpy" and categorical:
        raise ConfigError(
            f"{describe} takes a numpy array ({source}), which cannot hold the categorical "
            f"(string) features {list(categorical)} of the reference; set "
            "DRIFTLAKE_MODEL_INPUT (--model-input) to pandas, polars or arrow"
        )
    if kind == "pandas":
        try:
            importlib.import_module("pandas")
        except ImportError as exc:
            raise ConfigError(
                f"{describe} takes a pandas DataFrame ({source}) but pandas cannot be "
                f"imported ({exc}); install pandas, or set DRIFTLAKE_MODEL_INPUT "
                "(--model-input) to polars or arrow"
            ) from exc
    return kind


def converter(kind: InputKind, order: Sequence[str], schema: ModelSchema) -> Converter | None:
    """Return the function turning parsed rows into ``kind`` with the columns ``order``.

    Parsed rows are a float64 array whose columns are ``order`` (a schema of numeric
    features), or :class:`MixedRows` (one with categorical features). None for numpy: the
    parsed array is the input.
    """
    names = list(order)
    if not schema.categorical_features:
        if kind == "numpy":
            return None
        if kind == "polars":
            return lambda x: pl.from_numpy(x, schema=names, orient="row")
        if kind == "arrow":
            return lambda x: pa.Table.from_arrays(list(np.ascontiguousarray(x.T)), names=names)
        pd = importlib.import_module("pandas")
        return lambda x: pd.DataFrame(x, columns=names, copy=False)
    numeric = {name: k for k, name in enumerate(schema.numeric_features)}
    categorical = {name: k for k, name in enumerate(schema.categorical_features)}
    # each model column: (True, index in rows.numeric) or (False, index in rows.categorical)
    plan = [(n in numeric, numeric[n] if n in numeric else categorical[n]) for n in names]

    def columns(rows: MixedRows, text: Callable[[str, Sequence[str | None]], Any]) -> dict:
        by_column = np.ascontiguousarray(rows.numeric.T)
        return {
            name: by_column[k] if is_number else text(name, rows.categorical[k])
            for name, (is_number, k) in zip(names, plan, strict=True)
        }

    if kind == "polars":
        return lambda rows: pl.DataFrame(columns(rows, lambda n, v: pl.Series(n, v, pl.String)))
    if kind == "arrow":
        return lambda rows: pa.table(columns(rows, lambda n, v: pa.array(v, pa.string())))
    pd = importlib.import_module("pandas")
    # category dtype: what LightGBM and HistGradientBoosting take categories as, and what
    # scikit-learn's encoders read like strings
    return lambda rows: pd.DataFrame(columns(rows, lambda n, v: pd.Categorical(v)))
