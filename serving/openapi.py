"""The model server's OpenAPI description: the request body and answers the routes really give.

The prediction route reads raw bytes and validates them itself (one parse, no thread hand-off),
so FastAPI cannot infer its body: these schemas describe it, and every error answer, for
client generators and for schemathesis.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

JSON = "application/json"


class MetricsResponse(Response):
    """``/metrics``' answer: the Prometheus text exposition format."""

    media_type = CONTENT_TYPE_LATEST


def _errors_schema(meaning: str) -> dict[str, Any]:
    item = {
        "type": "object",
        "required": ["loc", "msg", "type"],
        "properties": {
            "loc": {
                "type": "array",
                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "description": 'Where the problem is, e.g. ["body", "features", "data", 3, 2].',
            },
            "msg": {"type": "string", "description": "The problem, naming the field."},
            "type": {"type": "string", "description": "A short machine-readable kind."},
        },
    }
    schema = {
        "type": "object",
        "required": ["detail"],
        "properties": {"detail": {"type": "array", "minItems": 1, "items": item}},
    }
    return {"description": meaning, "content": {JSON: {"schema": schema}}}


def prediction_request_schema(
    feature_names: Sequence[str],
    max_rows: int,
    categorical: Collection[str] = (),
    nullable: Collection[str] = (),
) -> dict[str, Any]:
    """Return the JSON schema of ``POST /get-prediction``'s body for this model.

    Parameters
    ----------
    feature_names
        The model's feature columns; a request names each once, in any order.
    max_rows
        Most rows one request may carry (``max_batch_rows``).
    categorical
        The categorical features: their columns take strings, every other column numbers.
    nullable
        Categorical features whose column also takes null.

    Returns
    -------
    dict
        A JSON schema: ``{"features": {"columns": [...], "data": [[...], ...]}}``. Columns
        come in any order, so a row's schema cannot tie a position to a kind: with
        categorical features a value is a number or a string (or null), and the description
        and ``x-categorical-columns`` say which column takes which.
    """
    n = len(feature_names)
    data: dict[str, Any] = {
        "type": "array",
        "description": "Rows of finite JSON numbers, one value per column in the order of columns.",
        "minItems": 1,
        "maxItems": max_rows,
        "items": {"type": "array", "items": {"type": "number"}, "minItems": n, "maxItems": n},
    }
    if categorical:
        strings = [c for c in feature_names if c in categorical]
        nulls = [c for c in strings if c in nullable]
        kinds = [{"type": "number"}, {"type": "string"}] + ([{"type": "null"}] if nulls else [])
        data["items"]["items"] = {"anyOf": kinds}
        data["description"] = (
            "Rows of values, one per column in the order of columns: a string for the "
            f"categorical columns {', '.join(repr(c) for c in strings)}"
            + (f" (or null for {', '.join(repr(c) for c in nulls)})" if nulls else "")
            + ", a finite JSON number for every other column."
        )
        data["x-categorical-columns"] = strings
        data["x-nullable-columns"] = nulls
    return {
        "type": "object",
        "required": ["features"],
        "properties": {
            "features": {
                "type": "object",
                "required": ["columns", "data"],
                "properties": {
                    "columns": {
                        "type": "array",
                        "description": "Every feature column of the model once, in any order.",
                        "items": {"type": "string", "enum": list(feature_names)},
                        "minItems": n,
                        "maxItems": n,
                        "uniqueItems": True,
                    },
                    "data": data,
                },
            }
        },
    }


def prediction_openapi(
    feature_names: Sequence[str],
    max_rows: int,
    *,
    categorical: Mapping[str, str] | None = None,
    nullable: Collection[str] = (),
) -> dict[str, Any]:
    """Return ``openapi_extra`` and ``responses`` of the prediction routes (keyword arguments).

    Parameters
    ----------
    feature_names
        The model's feature columns.
    max_rows
        Most rows one request may carry.
    categorical
        Each categorical feature and a value of it for the example.
    nullable
        Categorical features whose column also takes null.

    Returns
    -------
    dict
        ``{"openapi_extra": ..., "responses": ...}`` for ``FastAPI.add_api_route``.
    """
    categorical = categorical or {}
    row: list[Any] = [categorical.get(n, 0.0) for n in feature_names]
    example = {"features": {"columns": list(feature_names), "data": [row]}}
    kinds = "numbers and strings" if categorical else "numbers"
    body = {
        "required": True,
        "description": f"The rows to predict: the model's feature columns and rows of {kinds}.",
        "content": {
            JSON: {
                "schema": prediction_request_schema(
                    feature_names, max_rows, categorical.keys(), nullable
                ),
                "example": example,
            }
        },
    }
    answer = {
        "type": "object",
        "required": ["prediction", "model_version", "request_ids"],
        "properties": {
            "prediction": {
                "type": "array",
                "items": {},
                "description": "The model's output per row (class labels or values).",
            },
            "probability": {
                "type": "array",
                "items": {"type": "number"},
                "description": "Probability of the last class per row (classifiers only).",
            },
            "model_version": {"type": "string"},
            "request_ids": {
                "type": "array",
                "items": {"type": "string"},
                "description": "One id per row, as recorded in the landing zone.",
            },
        },
    }
    responses = {
        200: {"description": "One prediction per row.", "content": {JSON: {"schema": answer}}},
        408: _errors_schema("The body did not arrive within read_timeout; connection closed."),
        413: _errors_schema("The body is larger than the server accepts; send fewer rows."),
        422: _errors_schema(
            "The body is not a valid request, or the model gives no finite output for a row "
            "(values far outside its training range); each entry names the field or row."
        ),
        500: _errors_schema(
            "The model raised on these rows, or answered them with output of the wrong "
            "shape; nothing was captured (counted in driftlake_model_errors_total)."
        ),
    }
    return {"openapi_extra": {"requestBody": body}, "responses": responses}


HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The replica serves.",
        "content": {
            JSON: {
                "schema": {
                    "type": "object",
                    "required": ["status", "model", "model_version", "replica"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ok"]},
                        "model": {"type": "string"},
                        "model_version": {"type": "string"},
                        "replica": {"type": "string"},
                    },
                }
            }
        },
    }
}

METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The replica's metrics in the Prometheus text exposition format.",
        "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
    }
}
