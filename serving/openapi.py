"""The model server's OpenAPI description: the request body and answers the routes really give.

The prediction route reads raw bytes and validates them itself (one parse, no thread hand-off),
so FastAPI cannot infer its body: these schemas describe it, and every error answer, for
client generators and for schemathesis.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def prediction_request_schema(feature_names: Sequence[str], max_rows: int) -> dict[str, Any]:
    """Return the JSON schema of ``POST /get-prediction``'s body for this model.

    Parameters
    ----------
    feature_names
        The model's feature columns; a request names each once, in any order.
    max_rows
        Most rows one request may carry (``max_batch_rows``).

    Returns
    -------
    dict
        A JSON schema: ``{"features": {"columns": [...], "data": [[...], ...]}}``.
    """
    n = len(feature_names)
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
                    "data": {
                        "type": "array",
                        "description": "Rows of finite JSON numbers, one value per column in "
                        "the order of columns.",
                        "minItems": 1,
                        "maxItems": max_rows,
                        "items": {
                            "type": "array",
                            "items": {"type": "number"},
                            "minItems": n,
                            "maxItems": n,
                        },
                    },
                },
            }
        },
    }


def prediction_openapi(feature_names: Sequence[str], max_rows: int) -> dict[str, Any]:
    """Return ``openapi_extra`` and ``responses`` of the prediction routes (keyword arguments).

    Parameters
    ----------
    feature_names
        The model's feature columns.
    max_rows
        Most rows one request may carry.

    Returns
    -------
    dict
        ``{"openapi_extra": ..., "responses": ...}`` for ``FastAPI.add_api_route``.
    """
    example = {"features": {"columns": list(feature_names), "data": [[0.0] * len(feature_names)]}}
    body = {
        "required": True,
        "description": "The rows to predict: the model's feature columns and rows of numbers.",
        "content": {
            JSON: {
                "schema": prediction_request_schema(feature_names, max_rows),
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
