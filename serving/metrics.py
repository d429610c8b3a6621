"""Prometheus metrics of one model-server replica, in a private registry per app."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import ClientDisconnect

from ingest.capture import LandingSink, WriterStats

PRESET_STATUSES = (200, 422, 500)
# nginx's status for "the client closed the request before the answer": a client's failure,
# counted apart from 5xx so an error-rate alert never fires on clients hanging up
CLIENT_CLOSED = 499
# Sub-millisecond predictions up to a slow second.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
OTHER_PATH = "other"
_NO_STATS = WriterStats.zero()


class CaptureCollector(Collector):
    """Reads the landing writer's counters at scrape time, so requests never touch metrics."""

    def __init__(self, writer: LandingSink | None) -> None:
        self.writer = writer

    def collect(self) -> Iterator[Metric]:
        s = self.writer.stats() if self.writer is not None else _NO_STATS
        counters = (
            ("driftlake_capture_rows", "Rows handed to capture, kept or dropped.", s.captured_rows),
            (
                "driftlake_capture_flushed_rows",
                "Rows published to the landing zone.",
                s.flushed_rows,
            ),
            (
                "driftlake_capture_dropped_rows",
                "Rows dropped because the capture buffer was full.",
                s.dropped_rows,
            ),
            (
                "driftlake_capture_flushes_failed",
                "Flushes to the landing zone that failed (rows kept and retried).",
                s.failed_flushes,
            ),
        )
        for name, doc, value in counters:
            yield CounterMetricFamily(name, doc, value=value)
        gauges = (
            ("driftlake_capture_buffer_rows", "Rows buffered, not yet published.", s.buffered_rows),
            (
                "driftlake_capture_oldest_row_age_seconds",
                "Age of the oldest buffered row.",
                s.oldest_buffered_age_seconds,
            ),
            (
                "driftlake_capture_last_flush_duration_seconds",
                "Duration of the last successful flush.",
                s.last_flush_seconds,
            ),
        )
        for name, doc, value in gauges:
            yield GaugeMetricFamily(name, doc, value=value)


class ServingMetrics:
    """The replica's metrics; :meth:`render` is the ``/metrics`` body.

    Parameters
    ----------
    model, model_version, replica
        Labels of ``driftlake_model_info``.
    writer
        The landing writer whose counters are exported (None: capture is off, all zero).
    """

    def __init__(
        self,
        *,
        model: str,
        model_version: str,
        replica: str,
        writer: LandingSink | None,
        routes: Sequence[str] = (),
    ) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "driftlake_http_requests",
            "HTTP requests answered, by route template and status code.",
            ["path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "driftlake_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.prediction_rows = Counter(
            "driftlake_prediction_rows", "Rows predicted.", registry=self.registry
        )
        self.model_errors = Counter(
            "driftlake_model_errors",
            "Prediction requests the model raised on or answered malformed (status 500).",
            registry=self.registry,
        )
        info = Gauge(
            "driftlake_model_info",
            "The served model (always 1).",
            ["model", "model_version", "replica"],
            registry=self.registry,
        )
        info.labels(model=model, model_version=model_version, replica=replica).set(1)
        self.registry.register(CaptureCollector(writer))
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        # Series that exist from the first scrape: rate() over a series born mid-burst
        # misses that burst, and an error-rate alert would miss a replica's first errors.
        for route in routes:
            for status in PRESET_STATUSES:
                self._child(route, status)

    def observe(self, path: str, status: int, seconds: float) -> None:
        """Count one answered request; ``path`` must be a route template or ``other``."""
        requests, latency = self._child(path, status)
        requests.inc()
        latency.observe(seconds)

    def refused(self, status: int) -> None:
        """Count a request refused before it reached the app (its head too large or slow)."""
        self.requests.labels(OTHER_PATH, str(status)).inc()

    def _child(self, path: str, status: int) -> tuple[Any, Any]:
        key = (path, status)
        children = self._children.get(key)
        if children is None:  # bounded: route templates x status codes
            children = (self.requests.labels(path, str(status)), self.latency.labels(path))
            self._children[key] = children
        return children

    def render(self) -> bytes:
        """Return the Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


class RequestMetricsMiddleware:
    """ASGI middleware timing every HTTP request, labelled by its matched route template.

    A request whose client disconnected before the answer is counted with status 499.
    """

    def __init__(self, app: Any, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app raises before answering

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except ClientDisconnect:
            # a route reading the body of a client that hung up: nothing to answer, no trace
            status = CLIENT_CLOSED
        finally:
            # the router stores the matched route in the scope; unmatched paths are "other"
            path = getattr(scope.get("route"), "path", None) or OTHER_PATH
            self.metrics.observe(path, status, time.perf_counter() - started)
