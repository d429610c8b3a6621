"""An ASGI middleware that captures the JSON requests and responses of chosen routes of a
user's own app (FastAPI, Starlette or any ASGI app) through a :class:`Monitor`.

Example
-------
>>> app.add_middleware(
...     CaptureMiddleware,
...     monitor=Monitor.from_settings(),
...     routes=[CaptureRoute("/score", prediction="churn", score="probability")],
... )

It runs on the event loop with the request (no thread hop): it keeps a copy of the request
body as the app reads it and holds the response's start until its body is complete, then
parses both, maps them to rows with the route's functions, captures them and adds the rows'
request ids as a header. Capture never fails a request: any problem (a body over the bound,
a streaming response, JSON that does not parse, a mapping function that raises, rows that do
not fit the schema) passes the response through unchanged, is logged once per kind and
counted in ``Monitor.stats().uncaptured``. Responses other than 2xx are not captured. With
``manage_lifespan`` the monitor starts with the app and closes, publishing every row, when
it shuts down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ingest.capture.monitor import Monitor
from ingest.errors import LandingError, SchemaError

__all__ = ["REQUEST_IDS_HEADER", "CaptureMiddleware", "CaptureRoute"]

log = logging.getLogger("driftlake.ingest.capture.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Extract = Callable[[Any], Any]

REQUEST_IDS_HEADER = "x-driftlake-request-ids"
# a response of more rows names them as a range: "<prefix>-0..<prefix>-<n-1>" (header blocks
# past a few KB are refused by proxies)
MAX_HEADER_IDS = 64


@dataclass(frozen=True)
class CaptureRoute:
    """A route whose requests are captured, and how its JSON maps to rows.

    Parameters
    ----------
    path
        The request path, exactly (``scope["path"]``).
    features
        Parsed request JSON -> what :meth:`Monitor.capture` takes as features; None: the
        body itself (an object is one row, or columns of values; a list of objects is rows).
        A string: that key of the body.
    prediction
        Parsed response JSON -> one number per row (a scalar for one row); a string: that
        key of the response.
    score
        As ``prediction``, for the score; None: no score.
    methods
        The HTTP methods captured.
    """

    path: str
    features: Extract | str | None = None
    prediction: Extract | str = "prediction"
    score: Extract | str | None = None
    methods: tuple[str, ...] = ("POST",)


def _getter(spec: Extract | str | None) -> Extract | None:
    if spec is None or callable(spec):
        return spec
    return lambda body: body[spec]


class _Route:
    __slots__ = ("features", "methods", "prediction", "score")

    def __init__(self, route: CaptureRoute) -> None:
        self.features = _getter(route.features) or (lambda body: body)
        self.prediction = _getter(route.prediction)
        self.score = _getter(route.score)
        self.methods = frozenset(m.upper() for m in route.methods)


class CaptureMiddleware:
    """Captures the requests of ``routes`` into ``monitor`` (see the module's docstring).

    Parameters
    ----------
    app
        The ASGI app (Starlette's ``add_middleware`` passes it).
    monitor
        Where rows go.
    routes
        The captured routes.
    max_body_bytes
        Requests or responses with a larger body pass through uncaptured (parsing them would
        hold the event loop). Default 1 MiB.
    header
        The response header carrying the captured rows' request ids, comma-separated (a
        range ``<first>..<last>`` beyond 64 rows); None adds none.
    manage_lifespan
        Start the monitor at the app's startup and close it at its shutdown.
    """

    def __init__(
        self,
        app: ASGIApp,
        monitor: Monitor,
        routes: Sequence[CaptureRoute],
        *,
        max_body_bytes: int = 1 << 20,
        header: str | None = REQUEST_IDS_HEADER,
        manage_lifespan: bool = True,
    ) -> None:
        self.app = app
        self.monitor = monitor
        self.routes = {r.path: _Route(r) for r in routes}
        self.max_body_bytes = max_body_bytes
        self.header = None if header is None else header.lower().encode("latin-1")
        self.manage_lifespan = manage_lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            route = self.routes.get(scope["path"])
            if route is not None and scope["method"] in route.methods:
                await _Exchange(self, route).run(scope, receive, send)
                return
        elif kind == "lifespan" and self.manage_lifespan:
            await self._lifespan(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        monitor = self.monitor

        async def receive_() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await asyncio.to_thread(monitor.start)
                except Exception:  # the app still serves; every capture counts not_started
                    log.exception("event=monitor_start_failed model=%s", monitor.model)
            return message

        async def send_(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                # after the app's own shutdown, which may still capture
                await asyncio.to_thread(monitor.close)
            await send(message)

        await self.app(scope, receive_, send_)


class _Exchange:
    """One captured request: the request body as read, the response held until complete."""

    __slots__ = (
        "body",
        "body_bytes",
        "mw",
        "request",
        "request_bytes",
        "request_done",
        "route",
        "skipped",
        "start",
    )

    def __init__(self, mw: CaptureMiddleware, route: _Route) -> None:
        self.mw = mw
        self.route = route
        self.request: list[bytes] | None = []  # None once over the bound
        self.request_bytes = 0
        self.request_done = False
        self.start: Message | None = None  # the held response start
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.skipped = False  # the response passes through from now on

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.mw.max_body_bytes

        async def receive_() -> Message:
            message = await receive()
            if message["type"] == "http.request" and self.request is not None:
                chunk = message.get("body", b"")
                if chunk:
                    self.request.append(chunk)
                    self.request_bytes += len(chunk)
                    if self.request_bytes > limit:
                        self.request = None
                if not message.get("more_body", False):
                    self.request_done = True
            return message

        async def send_(message: Message) -> None:
            if self.skipped:
                await send(message)
                return
            kind = message["type"]
            if kind == "http.response.start":
                reason = self._refuse(message)
                if reason is not None:
                    await self._pass(send, message, reason)
                else:
                    self.start = message
                return
            if self.start is None:
                await send(message)
                return
            if kind != "http.response.body":  # an extension's message (a file sent whole)
                await self._pass(send, message, "streaming")
                return
            self.body.append(message.get("body", b""))
            self.body_bytes += len(self.body[-1])
            if message.get("more_body", False):
                reason = "response_too_large" if self.body_bytes > limit else "streaming"
                await self._pass(send, message, reason)
                return
            start, self.start = self.start, None
            ids = self._capture()
            if ids and self.mw.header is not None:
                start = {**start, "headers": [*start.get("headers", ()), _ids_header(self, ids)]}
            await send(start)
            await send(message)

        await self.mw.app(scope, receive_, send_)

    def _refuse(self, start: Message) -> str | None:
        """Why the response must pass through now, None to hold it (or "" uncounted)."""
        if not 200 <= start["status"] < 300:
            return ""  # the app refused the request: no model output to capture
        if self.request is None:
            return "request_too_large"
        for name, value in start.get("headers", ()):
            name = name.lower()
            if name == b"content-type" and b"json" not in value.lower():
                return "not_json"
            too_long = value.isdigit() and int(value) > self.mw.max_body_bytes
            if name == b"content-length" and too_long:
                return "response_too_large"
        return None

    async def _pass(self, send: Send, message: Message, reason: str) -> None:
        self.skipped = True
        if reason:
            self.mw.monitor.note_uncaptured(reason)
        if self.start is not None:
            start, self.start = self.start, None
            await send(start)
            if message["type"] == "http.response.body":
                body = b"".join(self.body)
                self.body = []
                await send({**message, "body": body})
                return
        await send(message)

    def _capture(self) -> list[str]:
        monitor, route = self.mw.monitor, self.route
        if not self.request_done or self.request is None:
            monitor.note_uncaptured("request_unread", "the app answered before reading the body")
            return []
        try:
            request = orjson.loads(b"".join(self.request))
            response = orjson.loads(b"".join(self.body))
        except orjson.JSONDecodeError as exc:
            monitor.note_uncaptured("not_json", str(exc))
            return []
        try:
            features = route.features(request)
            prediction = route.prediction(response)
            score = None if route.score is None else route.score(response)
        except Exception as exc:
            monitor.note_uncaptured("extract", f"{type(exc).__name__}: {exc}")
            return []
        try:
            return monitor.capture(features, prediction, score)
        except SchemaError as exc:
            monitor.note_uncaptured("schema", str(exc))
        except LandingError as exc:
            monitor.note_uncaptured("not_started", str(exc))
        except Exception as exc:
            log.exception("event=capture_failed model=%s", monitor.model)
            monitor.note_uncaptured("error", f"{type(exc).__name__}: {exc}")
        return []


def _ids_header(exchange: _Exchange, ids: list[str]) -> tuple[bytes, bytes]:
    value = ",".join(ids) if len(ids) <= MAX_HEADER_IDS else f"{ids[0]}..{ids[-1]}"
    return exchange.mw.header, value.encode("latin-1")
