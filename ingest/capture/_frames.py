"""A caller's features, whatever holds them, as the arrays a landing block takes.

Accepted: a pandas or polars DataFrame, a pyarrow Table or RecordBatch, a mapping of column
-> values (or -> one value each: one row), a list of row mappings, or a 2-D numpy array
(numeric schemas, columns in schema order). pandas and polars are never imported here:
their frames are recognised by module name and converted through Arrow, which both speak.
Every problem is a SchemaError naming the column, and the row where there is one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingest.errors import SchemaError
from ingest.schema import ModelSchema

_NUMERIC_KINDS = "iuf"
_SCALARS = (str, bytes, int, float, bool, np.generic)


class Rows(NamedTuple):
    """One capture's rows: numeric features (rows x numeric features, float64, a new array
    the caller does not hold) and one sequence of ``str | None`` per categorical feature."""

    n: int
    numeric: np.ndarray
    categorical: list[Sequence[str | None]] | None


class Layout:
    """The numeric and categorical feature names of one schema, in schema order."""

    def __init__(self, schema: ModelSchema) -> None:
        self.model = schema.model
        self.names = schema.feature_names
        self.numeric = schema.numeric_features
        self.categorical = tuple(f.name for f in schema.features if f.kind == "categorical")

    def rows(self, features: Any) -> Rows:
        """The rows of ``features``; SchemaError if they do not fit the schema."""
        kind = type(features)
        # a request's rows first: they are on the request path
        if kind is list and all(type(r) is dict for r in features):
            return self._records(features)
        if kind is dict:
            return self._mapping(features)
        if isinstance(features, np.ndarray):
            return self._matrix(features)
        if isinstance(features, pa.Table | pa.RecordBatch):
            return self._arrow(features)
        module = type(features).__module__.partition(".")[0]
        if module == "pandas" and hasattr(features, "columns"):
            return self._arrow(self._from_pandas(features))
        if module == "polars" and hasattr(features, "to_arrow"):
            self._require(features.columns)
            return self._arrow(features.select(list(self.names)).to_arrow())
        if isinstance(features, Mapping):
            return self._mapping(features)
        if isinstance(features, list | tuple) and all(isinstance(r, Mapping) for r in features):
            return self._records(features)
        raise SchemaError(
            f"features of type {type(features).__name__} are not accepted: expected a pandas "
            "or polars DataFrame, a pyarrow Table or RecordBatch, a mapping of column -> "
            "values, a list of row mappings, or a 2-D numpy array"
        )

    # -- numpy ------------------------------------------------------------------------
    def _matrix(self, x: np.ndarray) -> Rows:
        if self.categorical:
            raise SchemaError(
                f"model {self.model!r} has categorical features {list(self.categorical)}: "
                "a numpy array holds numbers only; pass a DataFrame, a mapping or row dicts"
            )
        if x.ndim != 2 or x.shape[1] != len(self.numeric):
            raise SchemaError(
                f"a numpy array of features must be rows x {len(self.numeric)} (the schema's "
                f"columns {list(self.numeric)} in order); got shape {x.shape}"
            )
        if x.dtype.kind not in _NUMERIC_KINDS:
            raise SchemaError(f"a numpy array of features must hold numbers; got dtype {x.dtype}")
        out = np.array(x, dtype=np.float64, order="C")  # a copy: the caller keeps theirs
        _check_finite(out, self.numeric)
        return Rows(out.shape[0], out, None)

    # -- Arrow, pandas, polars --------------------------------------------------------
    def _require(self, columns: Sequence[str]) -> None:
        have = set(columns)
        missing = [n for n in self.names if n not in have]
        if missing:
            raise SchemaError(
                f"features lack column {missing[0]!r} of model {self.model!r}"
                + (f" (and {missing[1:]})" if len(missing) > 1 else "")
            )

    def _from_pandas(self, frame: Any) -> pa.Table:
        self._require([str(c) for c in frame.columns])
        arrays = []
        for name in self.names:
            try:
                arrays.append(pa.array(frame[name], from_pandas=True))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                kind = "numbers" if name in self.numeric else "strings"
                raise SchemaError(f"column {name!r}: expected {kind}; {exc}") from None
        return pa.Table.from_arrays(arrays, names=list(self.names))

    def _arrow(self, table: pa.Table | pa.RecordBatch) -> Rows:
        self._require(table.schema.names)
        n = table.num_rows
        numeric = np.empty((n, len(self.numeric)))
        for j, name in enumerate(self.numeric):
            numeric[:, j] = _arrow_numbers(name, table.column(name))
        categorical = None
        if self.categorical:
            categorical = [_arrow_strings(name, table.column(name)) for name in self.categorical]
        return Rows(n, numeric, categorical)

    # -- Python -----------------------------------------------------------------------
    def _mapping(self, columns: Mapping[str, Any]) -> Rows:
        try:
            values = [columns[name] for name in self.names]
        except KeyError:
            self._require(list(columns))
            raise
        if all(isinstance(v, _SCALARS) or v is None for v in values):
            return self._records((columns,))  # one value per column: one row
        lengths = {}
        for name, v in zip(self.names, values, strict=True):
            if isinstance(v, _SCALARS) or v is None or not hasattr(v, "__len__"):
                raise SchemaError(
                    f"column {name!r}: expected a sequence of values (one per row), got "
                    f"{_kind(v)}; give every column a sequence, or every column one value"
                )
            lengths[name] = len(v)
        if len(set(lengths.values())) > 1:
            raise SchemaError(f"columns have different lengths: {lengths}")
        n = next(iter(lengths.values()))
        numeric = np.empty((n, len(self.numeric)))
        for j, name in enumerate(self.numeric):
            numeric[:, j] = _python_numbers(name, columns[name])
        categorical = None
        if self.categorical:
            categorical = [_python_strings(name, columns[name]) for name in self.categorical]
        return Rows(n, numeric, categorical)

    def _records(self, records: Sequence[Mapping[str, Any]]) -> Rows:
        if len(records) == 1:  # a request's one row: plain Python is cheaper than numpy
            one = self._one(records[0])
            if one is not None:
                return one
        try:
            numbers = [[r[name] for name in self.numeric] for r in records]
            strings = [[r[name] for r in records] for name in self.categorical]
        except KeyError:
            for i, r in enumerate(records):
                for name in self.names:
                    if name not in r:
                        raise SchemaError(f"row {i} lacks column {name!r}") from None
            raise
        n = len(records)
        x = np.array(numbers, dtype=object if n == 0 else None)
        if (
            n
            and x.dtype.kind in _NUMERIC_KINDS
            and x.shape == (n, len(self.numeric))
            and not _has_bool(v for row in numbers for v in row)
        ):
            x = x.astype(np.float64, copy=False)
            _check_finite(x, self.numeric)
        else:  # find the value at fault, column by column
            x = np.empty((n, len(self.numeric)))
            for j, name in enumerate(self.numeric):
                x[:, j] = _python_numbers(name, [row[j] for row in numbers])
        categorical = None
        if self.categorical:
            categorical = [
                _python_strings(name, col)
                for name, col in zip(self.categorical, strings, strict=True)
            ]
        return Rows(n, x, categorical)

    def _one(self, row: Mapping[str, Any]) -> Rows | None:
        """One row of plain ints, floats and strings, or None (the general path decides)."""
        try:
            numbers = [row[name] for name in self.numeric]
            strings = [[row[name]] for name in self.categorical]
        except KeyError:
            return None
        for v in numbers:
            if (type(v) is not float and type(v) is not int) or not math.isfinite(v):
                return None
        for (v,) in strings:
            if type(v) is not str and v is not None:
                return None
        return Rows(1, np.array((numbers,), np.float64), strings or None)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool | np.bool_):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, Real):
        return f"the number {value!r}"
    return f"a {type(value).__name__}"


def _check_finite(x: np.ndarray, names: Sequence[str]) -> None:
    """SchemaError naming the first non-finite value's row and column, if there is one."""
    finite = np.isfinite(x)
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        raise SchemaError(
            f"row {i}, column {names[j]!r}: {x[i, j]} is not a finite number "
            "(NaN and infinity are not captured: they would poison the drift statistics)"
        )


def _has_bool(values: Any) -> bool:
    # numpy turns True into 1 beside numbers; a boolean is not a feature's number
    return any(isinstance(v, bool | np.bool_) for v in values)


def _python_numbers(name: str, values: Any) -> np.ndarray:
    x = np.asarray(values)
    plain = isinstance(values, np.ndarray) or not _has_bool(values)
    if x.ndim == 1 and x.dtype.kind in _NUMERIC_KINDS and plain:
        x = x.astype(np.float64, copy=False)
        _check_finite(x[:, None], (name,))
        return x
    for i, v in enumerate(values):
        if not isinstance(v, Real) or isinstance(v, bool | np.bool_):
            raise SchemaError(f"row {i}, column {name!r}: expected a number, got {_kind(v)}")
        if not math.isfinite(v):
            raise SchemaError(f"row {i}, column {name!r}: {v} is not a finite number")
    raise SchemaError(f"column {name!r}: expected one number per row")


def _python_strings(name: str, values: Any) -> list[str | None]:
    out = list(values)  # a copy: the caller keeps theirs
    for i, v in enumerate(out):
        if v is not None and type(v) is not str:
            raise SchemaError(
                f"row {i}, column {name!r}: expected a string (a categorical feature), "
                f"got {_kind(v)}"
            )
    return out


def _stringy(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or (pa.types.is_dictionary(t) and _stringy(t.value_type))
    )


def _arrow_numbers(name: str, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    t = column.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
        raise SchemaError(f"column {name!r}: expected numbers (a numeric feature), got {t}")
    if column.null_count:
        i = pc.index(pc.is_null(column), True).as_py()
        raise SchemaError(f"row {i}, column {name!r}: null is not a number")
    x = pc.cast(column, pa.float64()).to_numpy()
    _check_finite(x[:, None], (name,))
    return x


def _arrow_strings(name: str, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    t = column.type
    if not _stringy(t):
        raise SchemaError(f"column {name!r}: expected strings (a categorical feature), got {t}")
    return pc.cast(column, pa.string()).to_numpy(zero_copy_only=False)
