"""Prediction requests: parse and check the raw body against the model's feature columns."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import from_json

from ingest import SchemaError

# A client with a hopeless payload gets this many errors back, then a count of the rest.
MAX_ERRORS = 20
EXAMPLE = '{"features": {"columns": ["<feature>", ...], "data": [[<number>, ...], ...]}}'


class Features(BaseModel):
    """The ``features`` object: column names and rows of JSON numbers (finite, not strings)."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)

    columns: list[str]
    data: list[list[float]]


class PredictionRequest(BaseModel):
    """The body of ``POST /get-prediction``; unknown top-level keys are ignored."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)

    features: Features


class InvalidRequest(SchemaError):
    """A request the model cannot answer; ``errors`` are FastAPI-style 422 details."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = _capped(errors)
        super().__init__("; ".join(str(e["msg"]) for e in self.errors))


class RequestParser:
    """Turns a raw request body into the float64 matrix a model predicts on.

    Parameters
    ----------
    feature_names
        The model's feature columns, in the order the model takes them.
    max_rows
        Most rows one request may carry.

    Example
    -------
    >>> parser = RequestParser(("a", "b"), max_rows=10)
    >>> parser.parse(b'{"features": {"columns": ["b", "a"], "data": [[2, 1.5]]}}').tolist()
    [[1.5, 2.0]]
    """

    # what a row holds, in messages
    row_values = "numbers"

    def __init__(self, feature_names: Sequence[str], max_rows: int) -> None:
        self.feature_names = tuple(feature_names)
        self.max_rows = max_rows
        self._position = {name: i for i, name in enumerate(self.feature_names)}

    def parse(self, body: bytes) -> np.ndarray:
        """Return the request's rows as a C-contiguous float64 array in the model's column order.

        Raises
        ------
        InvalidRequest
            With one entry per problem: ``loc`` (e.g. ``["body", "features", "data", 3, 2]``),
            ``msg`` naming the field and the problem, and ``type``.
        """
        try:
            features = PredictionRequest.model_validate_json(body).features
        except ValidationError as exc:
            raise InvalidRequest(_explain(exc, body, self.feature_names)) from None
        columns, data = features.columns, features.data
        if tuple(columns) == self.feature_names:
            order = None  # the usual case: nothing to check or reorder
        else:
            errors = self._column_errors(columns)
            if errors:
                raise InvalidRequest(errors + self._row_errors(columns, data))
            given = {name: i for i, name in enumerate(columns)}
            order = [given[name] for name in self.feature_names]
        if not data or len(data) > self.max_rows:
            raise InvalidRequest(self._row_errors(columns, data))
        try:
            x = np.array(data, dtype=np.float64)
        except ValueError:  # ragged rows: numpy refuses an inhomogeneous shape
            x = None
        if x is None or x.shape[1] != len(columns):
            raise InvalidRequest(self._row_errors(columns, data))
        if order is not None:
            x = np.ascontiguousarray(x[:, order])  # fancy indexing may return Fortran order
        return x

    def _column_errors(self, columns: list[str]) -> list[dict[str, Any]]:
        loc: list[Any] = ["body", "features", "columns"]
        expected = f"expected the model's {len(self.feature_names)} feature columns"
        if not columns:
            return [_error(loc, f"columns is empty; {expected}", "empty_columns")]
        errors = []
        first: dict[str, int] = {}
        # a loop over at most a few dozen names, on the slow path only
        for i, name in enumerate(columns):
            if name in first:
                msg = f"duplicate column {name!r} (also at position {first[name]}); give it once"
                errors.append(_error([*loc, i], msg, "duplicate_column"))
                continue
            first[name] = i
            if name not in self._position:
                close = difflib.get_close_matches(name, self.feature_names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                msg = f"unknown column {name!r}{hint}; {expected}"
                errors.append(_error([*loc, i], msg, "unknown_column"))
        missing = [n for n in self.feature_names if n not in first]
        if missing:
            shown = ", ".join(repr(n) for n in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            noun = "column" if len(missing) == 1 else "columns"
            msg = f"missing {noun} {shown}{more}; {expected}"
            errors.append(_error(loc, msg, "missing_column"))
        return errors

    def _row_errors(
        self, columns: list[str], data: Sequence[Sequence[Any]]
    ) -> list[dict[str, Any]]:
        loc: list[Any] = ["body", "features", "data"]
        if not data:
            msg = f"data has no rows; expected 1 to {self.max_rows} rows of {self.row_values}"
            return [_error(loc, msg, "empty_data")]
        if len(data) > self.max_rows:
            msg = (
                f"data has {len(data)} rows but at most {self.max_rows} are accepted per "
                "request; split it into smaller requests"
            )
            return [_error(loc, msg, "too_many_rows")]
        n = len(columns)
        errors = []
        # the slow path only: one length check per row (at most max_rows)
        for i, row in enumerate(data):
            if len(row) != n:
                msg = f"row {i} has {len(row)} values but {n} columns were given"
                errors.append(_error([*loc, i], msg, "row_length"))
        return errors


def _error(loc: list[Any], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def _capped(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(errors) <= MAX_ERRORS:
        return errors
    rest = len(errors) - MAX_ERRORS
    return [*errors[:MAX_ERRORS], _error(["body"], f"{rest} more errors not shown", "more")]


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _explain(
    exc: ValidationError,
    body: bytes,
    feature_names: tuple[str, ...],
    example: str = EXAMPLE,
    row: str = "a list of numbers",
) -> list[dict]:
    """Rewrite pydantic's errors into messages naming the field and the problem.

    ``example`` is the body shown in messages and ``row`` what a row must be.
    """
    columns: list[Any] | None = None
    out = []
    for err in exc.errors(include_url=False):
        loc, kind, value = list(err["loc"]), err["type"], err.get("input")
        where = ".".join(str(p) for p in loc)
        if kind == "json_invalid":
            msg = f"body is not valid JSON ({err['ctx']['error']}); expected {example}"
        elif not loc:
            msg = f"body must be a JSON object, got {_json_kind(value)}; expected {example}"
        elif kind == "missing":
            msg = f"field {where!r} is required; expected {example}"
        elif loc[:2] == ["features", "data"] and len(loc) == 4:
            if columns is None:
                columns = _columns_of(body)
            i, j = loc[2], loc[3]
            name = columns[j] if j < len(columns) else None
            field = f"column {name!r}" if isinstance(name, str) else f"value {j}"
            if kind == "finite_number":
                problem = "value is not a finite number (NaN and infinity are not accepted)"
            else:
                problem = f"expected a JSON number, got {_json_kind(value)}"
            msg = f"row {i}, {field}: {problem}"
        elif loc[:2] == ["features", "data"] and len(loc) == 3:
            msg = f"row {loc[2]} must be {row}, got {_json_kind(value)}"
        elif loc[:2] == ["features", "columns"] and len(loc) == 3:
            msg = f"column {loc[2]} must be a feature name (a string), got {_json_kind(value)}"
        elif kind in ("list_type", "model_type", "dict_type"):
            shape = "an object" if kind != "list_type" else "a list"
            msg = f"{where!r} must be {shape}, got {_json_kind(value)}; expected {example}"
        else:
            msg = f"{where}: {err['msg']}"
        if kind == "list_type" and loc == ["features", "columns"]:
            msg += f" (the model takes {len(feature_names)} columns)"
        out.append(_error(["body", *loc], msg, kind))
    return out


def _columns_of(body: bytes) -> list[Any]:
    """Best-effort column names of a body that failed validation (for error messages only)."""
    try:
        # pydantic's own JSON parser: it reads the NaN/Infinity the validator then rejected
        columns = from_json(body, allow_inf_nan=True)["features"]["columns"]
    except (ValueError, KeyError, TypeError):
        return []
    return columns if isinstance(columns, list) else []
