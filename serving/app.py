"""The FastAPI app: predict, capture every accepted row, expose health and metrics."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from serving.deadline import DeadlineExceeded, ReadDeadlines
from serving.metrics import CLIENT_CLOSED, RequestMetricsMiddleware
from serving.model import Prediction
from serving.openapi import (
    HEALTH_RESPONSES,
    METRICS_RESPONSES,
    MetricsResponse,
    prediction_openapi,
)
from serving.request import InvalidRequest
from serving.service import PREDICTION_PATHS, Service, build_service
from serving.settings import ServingSettings

log = logging.getLogger("driftlake.serving.app")

JSON = "application/json"
# Request ids: 128 random bits as 32 hex digits, like uuid4().hex, from a generator seeded
# by the OS once (and again in a forked child, so forked workers never share ids); uuid4()
# reads the OS per call (~2 us, ~2% of a one-row request).
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


class BodyTooLarge(Exception):
    """The request body is over the limit (answered with 413)."""


class BodyTooSlow(Exception):
    """The request body did not arrive within ``read_timeout`` (answered with 408)."""


def create_app(settings: ServingSettings) -> FastAPI:
    """Build the model server: load the reference and the model, wire capture and metrics.

    The landing sink starts with the app (lifespan) and is closed on shutdown, which writes
    every buffered row to the landing zone.

    Parameters
    ----------
    settings
        The replica's settings; the app never reads the environment itself.

    Returns
    -------
    FastAPI
        With ``POST /get-prediction`` (and ``/model/get-prediction``), ``GET /healthz`` and
        ``GET /metrics``.

    Raises
    ------
    DriftlakeError
        ``SchemaError`` if the reference cannot be read, ``ConfigError`` if the model cannot
        be loaded or trained, ``LandingError`` if the warehouse cannot be created.
    """
    service = build_service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service.writer is not None:
            service.writer.start()
        # What exists now (modules, the model, the app) lives as long as the process: out of
        # the garbage collector's sight, a full collection walks only what requests allocate
        # instead of ~150k startup objects (~70 ms, a latency spike every few seconds)
        gc.freeze()
        log.info(
            "event=serving_started model=%s model_version=%s replica=%s capture=%s "
            "warehouse=%s event_loop=%s",
            settings.model_name,
            service.predictor.version,
            settings.replica,
            settings.capture,
            settings.warehouse,
            type(asyncio.get_running_loop()).__module__.partition(".")[0],
        )
        try:
            yield
        finally:
            if service.writer is not None:
                # off the event loop: close() does file I/O and may retry for a while
                await asyncio.to_thread(service.writer.close)
                s = service.writer.stats()
                log.info(
                    "event=capture_closed replica=%s captured_rows=%d flushed_rows=%d "
                    "dropped_rows=%d buffered_rows=%d",
                    settings.replica,
                    s.captured_rows,
                    s.flushed_rows,
                    s.dropped_rows,
                    s.buffered_rows,
                )

    app = FastAPI(title="driftlake model server", lifespan=lifespan)
    app.state.service = service
    app.add_middleware(RequestMetricsMiddleware, metrics=service.metrics)

    async def get_prediction(request: Request) -> Response:
        try:
            body = await _read_body(request, service.max_body_bytes, service.body_deadlines)
        except BodyTooLarge as exc:
            return _errors(413, [{"loc": ["body"], "msg": str(exc), "type": "too_large"}])
        except BodyTooSlow as exc:
            # the rest of the body may still come: the connection cannot carry another request
            error = {"loc": ["body"], "msg": str(exc), "type": "timeout"}
            return _errors(408, [error], headers={"connection": "close"})
        except ClientDisconnect:
            # the client's failure, not the server's: counted as 499, never as a 5xx
            log.info(
                "event=client_disconnected path=%s declared_bytes=%s",
                request.url.path,
                request.headers.get("content-length", "-"),
            )
            return Response(status_code=CLIENT_CLOSED)  # uvicorn drops it: nobody to read it
        try:
            x = service.parser.parse(body)
        except InvalidRequest as exc:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("event=request_rejected errors=%d first=%r", len(exc.errors), str(exc))
            return _errors(422, exc.errors)
        return _predict(service, x)

    # an async endpoint reading raw bytes: no thread-pool hand-off, one JSON parse; its body
    # and answers are described to OpenAPI by hand, since FastAPI never sees a model of them
    docs = prediction_openapi(
        service.schema.feature_names,
        settings.max_batch_rows,
        categorical=service.examples,
        nullable=service.nullable,
    )
    for path in PREDICTION_PATHS:
        app.add_api_route(path, get_prediction, methods=["POST"], name=f"predict:{path}", **docs)

    @app.get("/healthz", responses=HEALTH_RESPONSES)
    async def healthz() -> Response:
        body = {
            "status": "ok",
            "model": settings.model_name,
            "model_version": service.predictor.version,
            "replica": settings.replica,
        }
        return Response(orjson.dumps(body), media_type=JSON)

    @app.get("/metrics", response_class=MetricsResponse, responses=METRICS_RESPONSES)
    async def metrics() -> Response:
        return MetricsResponse(service.metrics.render())

    return app


def _predict(service: Service, x: Any) -> Response:
    try:
        out = service.predictor.predict(x)
    except Exception as exc:  # the model is arbitrary code: whatever it raises is answered
        return _model_failed(service, exc)
    finite = _finite_rows(out)
    if not finite.all():
        # finite inputs far outside the training range can overflow the model (a logit of
        # inf - inf); JSON has no NaN, and a NaN in the landing zone would poison its drift
        return _errors(422, _unanswerable_rows(finite))
    rows = len(x)
    ts_us = time.time_ns() // 1000  # same clock as datetime.now(UTC), one stamp per request
    prefix = f"{_ids.getrandbits(128):032x}"
    ids = [f"{prefix}-{i}" for i in range(rows)]
    if service.capture is not None:
        service.capture.record(ts_us, prefix, x, out.values, out.score)
    service.metrics.prediction_rows.inc(rows)
    body: dict[str, Any] = {"prediction": out.labels}
    if out.score is not None:
        body["probability"] = out.score
    body["model_version"] = service.predictor.version
    body["request_ids"] = ids
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON)


def _model_failed(service: Service, exc: Exception) -> Response:
    """500: the request was valid, the model failed on it (or answered it malformed).

    A server error, not the client's: the body passed every documented check, and a model
    that raises is the deployment's fault, which the 5xx error-rate alert is there to catch.
    Nothing is captured; the answer names the exception's type only (its message may
    expose the model's internals), the log has the message.
    """
    service.metrics.model_errors.inc()
    name = type(exc).__name__
    reason = " ".join(str(exc).split())[:500]
    log.warning(
        "event=model_error model=%s model_version=%s error=%s reason=%r",
        service.predictor.name,
        service.predictor.version,
        name,
        reason,
    )
    msg = (
        f"the model failed on these rows ({name}); nothing was captured, and the replica's "
        "log has the error (event=model_error)"
    )
    return _errors(500, [{"loc": ["model"], "msg": msg, "type": "model_error"}])


def _finite_rows(out: Prediction) -> np.ndarray:
    """True for each row whose landed prediction (and score) is a finite number."""
    ok = np.isfinite(out.values)
    if out.score is not None:
        ok &= np.isfinite(out.score)
    return ok


def _unanswerable_rows(finite: np.ndarray) -> list[dict[str, Any]]:
    msg = (
        "the model's output for this row is not a finite number: its values are too far "
        "outside the range the model was trained on"
    )
    errors = [
        {"loc": ["body", "features", "data", int(i)], "msg": msg, "type": "model_output"}
        for i in np.flatnonzero(~finite)
    ]
    return InvalidRequest(errors).errors  # capped like every 422


def _errors(
    status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None
) -> Response:
    body = orjson.dumps({"detail": errors})
    return Response(body, status_code=status, media_type=JSON, headers=headers)


async def _read_body(request: Request, limit: int, deadlines: ReadDeadlines) -> bytes:
    try:
        return await deadlines.run(lambda: _read_bounded(request, limit))
    except DeadlineExceeded:
        raise BodyTooSlow(
            f"request body did not arrive within {deadlines.timeout:g} s; "
            "send the whole body at once"
        ) from None


async def _read_bounded(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(
            f"request body is {declared} bytes but at most {limit} are accepted; "
            "send fewer rows per request"
        )
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body is over {limit} bytes; send fewer rows per request")
        chunks.append(chunk)
    return b"".join(chunks)
