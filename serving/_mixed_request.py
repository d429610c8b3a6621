"""Prediction requests for a schema with categorical features: a number or a string per column.

A schema of numeric features only keeps :class:`serving.request.RequestParser` (one pydantic
parse straight to floats); the service picks the parser once, at startup.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from ingest import ModelSchema
from ingest.capture import MAX_VALUE_BYTES
from serving.request import InvalidRequest, RequestParser, _error, _explain, _json_kind

EXAMPLE = '{"features": {"columns": ["<feature>", ...], "data": [[<number or string>, ...], ...]}}'
_NUMBERS = frozenset({int, float})  # exact types: a JSON true/false is a bool, not a number
_STRINGS = frozenset({str})
_STRINGS_OR_NULL = frozenset({str, type(None)})
# a str of at most this many code points is at most MAX_VALUE_BYTES in UTF-8 (4 bytes each)
_SURELY_SHORT = MAX_VALUE_BYTES // 4


@dataclass(frozen=True, slots=True)
class MixedRows:
    """One request's rows, split by kind, each in the schema's order.

    Attributes
    ----------
    numeric
        Rows x the schema's numeric features: finite float64, C-contiguous (``(rows, 0)``
        when there is none).
    categorical
        One tuple per categorical feature, ``str`` (or None where the reference has nulls)
        per row.
    """

    numeric: np.ndarray
    categorical: tuple[tuple[str | None, ...], ...]

    def __len__(self) -> int:
        return self.numeric.shape[0]


class _Features(BaseModel):
    model_config = ConfigDict(strict=True)

    columns: list[str]
    data: list[list[Any]]  # each value's kind is checked per column, against the schema


class _Request(BaseModel):
    model_config = ConfigDict(strict=True)

    features: _Features


class MixedRequestParser(RequestParser):
    """Turns a raw request body into :class:`MixedRows` for a schema with categorical features.

    Parameters
    ----------
    schema
        The landing schema: each feature's kind says what its column takes (a JSON number,
        or a JSON string).
    max_rows
        Most rows one request may carry.
    nullable
        Categorical features whose reference column has nulls: null is accepted there only.

    Example
    -------
    >>> from ingest import FeatureSpec, ModelSchema
    >>> schema = ModelSchema("m", (FeatureSpec("age"), FeatureSpec("plan", "categorical")))
    >>> rows = MixedRequestParser(schema, max_rows=10).parse(
    ...     b'{"features": {"columns": ["plan", "age"], "data": [["pro", 41]]}}'
    ... )
    >>> rows.numeric.tolist(), rows.categorical
    ([[41.0]], (('pro',),))
    """

    row_values = "values"

    def __init__(self, schema: ModelSchema, max_rows: int, nullable: Collection[str] = ()) -> None:
        super().__init__(schema.feature_names, max_rows)
        self.numeric = schema.numeric_features
        self.categorical = schema.categorical_features
        self.nullable = frozenset(nullable)

    def parse(self, body: bytes) -> MixedRows:
        """Return the request's rows as :class:`MixedRows`.

        Raises
        ------
        InvalidRequest
            With one entry per problem, as :meth:`RequestParser.parse`; a value of the wrong
            kind is named by row, column and the kind its feature takes.
        """
        try:
            features = _Request.model_validate_json(body).features
        except ValidationError as exc:
            errors = _explain(exc, body, self.feature_names, EXAMPLE, "a list of values")
            raise InvalidRequest(errors) from None
        columns, data = features.columns, features.data
        if tuple(columns) != self.feature_names:
            errors = self._column_errors(columns)
            if errors:
                raise InvalidRequest(errors + self._row_errors(columns, data))
        if not data or len(data) > self.max_rows or set(map(len, data)) != {len(columns)}:
            raise InvalidRequest(self._row_errors(columns, data))
        position = {name: j for j, name in enumerate(columns)}
        values = list(zip(*data, strict=True))  # one tuple per request column
        numeric = np.empty((len(data), len(self.numeric)), dtype=np.float64)
        errors = []
        for k, name in enumerate(self.numeric):
            j = position[name]
            column = _numbers(values[j])
            if column is None:
                errors += _number_errors(values[j], j, name)
            else:
                numeric[:, k] = column
        categorical = []
        for name in self.categorical:
            j = position[name]
            column = values[j]
            allowed = _STRINGS_OR_NULL if name in self.nullable else _STRINGS
            if not set(map(type, column)) <= allowed or _longest(column) > _SURELY_SHORT:
                errors += _string_errors(column, j, name, name in self.nullable)
            categorical.append(column)
        if errors:
            errors.sort(key=lambda e: e["loc"][3:])  # row by row, as pydantic reports them
            raise InvalidRequest(errors)
        return MixedRows(numeric, tuple(categorical))


def _numbers(column: Sequence[Any]) -> np.ndarray | None:
    """The column as finite float64, or None if a value is not a finite JSON number."""
    if not set(map(type, column)) <= _NUMBERS:
        return None
    try:
        out = np.array(column, dtype=np.float64)
    except OverflowError:  # an integer beyond float64's range
        return None
    return out if np.isfinite(out).all() else None


def _longest(column: Sequence[str | None]) -> int:
    return max((len(v) for v in column if v is not None), default=0)


def _number_errors(column: Sequence[Any], j: int, name: str) -> list[dict[str, Any]]:
    errors = []
    for i, value in enumerate(column):
        loc = ["body", "features", "data", i, j]
        if type(value) not in _NUMBERS:
            problem = f"expected a JSON number (numeric feature), got {_json_kind(value)}"
            errors.append(_error(loc, f"row {i}, column {name!r}: {problem}", "float_type"))
        elif not _finite(value):
            problem = "value is not a finite number (NaN and infinity are not accepted)"
            errors.append(_error(loc, f"row {i}, column {name!r}: {problem}", "finite_number"))
    return errors


def _finite(value: float) -> bool:
    try:
        return bool(np.isfinite(float(value)))
    except OverflowError:
        return False


def _string_errors(
    column: Sequence[Any], j: int, name: str, nullable: bool
) -> list[dict[str, Any]]:
    errors = []
    for i, value in enumerate(column):
        loc = ["body", "features", "data", i, j]
        where = f"row {i}, column {name!r}"
        if type(value) is str:
            size = len(value.encode()) if len(value) > _SURELY_SHORT else 0
            if size > MAX_VALUE_BYTES:
                msg = (
                    f"{where}: the string is {size} bytes (UTF-8) but a categorical value may "
                    f"hold at most {MAX_VALUE_BYTES}"
                )
                errors.append(_error(loc, msg, "string_too_long"))
        elif value is None and nullable:
            continue
        else:
            problem = f"expected a string (categorical feature), got {_json_kind(value)}"
            if value is None:
                problem += " (null is accepted only in columns with nulls in the reference)"
            errors.append(_error(loc, f"{where}: {problem}", "string_type"))
    return errors
