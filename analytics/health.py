"""The analytics loop's own health: ``/healthz`` and ``/metrics`` on a small HTTP thread.

``/healthz`` answers 200 while the last successful cycle is younger than ``max_age``
seconds, else 503; before the first cycle has succeeded it answers 503 ("starting"), so a
supervisor's start period (compose's ``start_period``) covers start-up. Both bodies are
JSON saying why. ``/metrics`` serves this process's counters in Prometheus' text format
from a private registry (never the global one: the job's drift metrics go to the
Pushgateway, these are scraped).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

if TYPE_CHECKING:
    from analytics.driver import CycleReport

log = logging.getLogger("driftlake.analytics.health")
MIN_MAX_AGE = 60.0  # seconds: a bound below this would flap on one slow catch-up cycle


def default_max_age(interval: float) -> float:
    """Return the default staleness bound: the larger of 3 x ``interval`` and 60 s."""
    return max(3 * interval, MIN_MAX_AGE)


@dataclass(frozen=True)
class HealthStatus:
    """What ``/healthz`` answers.

    Attributes
    ----------
    healthy
        True while the last successful cycle is younger than ``max_age_seconds``.
    status
        ``ok``, ``stale`` (the last success is too old) or ``starting`` (none yet).
    reason
        One sentence for an operator.
    last_success_age_seconds
        Seconds since the last successful cycle ended; None before the first.
    max_age_seconds
        The bound.
    cycles
        Cycles run by this process, succeeded or failed.
    errors
        Cycles that failed.
    errors_since_success
        Cycles that failed since the last success (or since start).
    """

    healthy: bool
    status: str
    reason: str
    last_success_age_seconds: float | None
    max_age_seconds: float
    cycles: int
    errors: int
    errors_since_success: int


class Health:
    """The loop's health, fed by the driver's ``on_cycle`` hook, read by the HTTP thread.

    Parameters
    ----------
    max_age
        Seconds after the last successful cycle when ``/healthz`` turns 503.
    clock
        Epoch seconds; the wall clock unless a test gives another.
    """

    def __init__(self, max_age: float, clock: Callable[[], float] = time.time) -> None:
        self.max_age = max_age
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._errors: Callable[[], int] = lambda: 0
        self._succeeded = 0
        self._windows = 0
        self._last_success: float | None = None
        self._last_seconds = 0.0
        self._errors_at_success = 0
        self.registry = CollectorRegistry()
        self.registry.register(self)
        ProcessCollector(registry=self.registry)  # process_start_time_seconds, CPU, memory

    def count_errors(self, errors: Callable[[], int]) -> None:
        """Read the failed-cycle count from ``errors`` (the driver counts failures itself)."""
        self._errors = errors

    def cycle_succeeded(self, report: CycleReport) -> None:
        """Record a successful cycle: pass this as ``Driver.run_forever(on_cycle=...)``."""
        with self._lock:
            self._succeeded += 1
            self._windows += len(report.windows)
            self._last_success = self._clock()
            self._last_seconds = report.seconds
            self._errors_at_success = self._errors()

    def status(self) -> HealthStatus:
        """Return what ``/healthz`` answers now."""
        with self._lock:
            now, last, errors = self._clock(), self._last_success, self._errors()
            cycles, since = self._succeeded + errors, errors - self._errors_at_success
        if last is None:
            up = now - self._started
            return HealthStatus(
                False,
                "starting",
                f"no cycle has succeeded yet ({up:.1f} s since start, {since} failed)",
                None,
                self.max_age,
                cycles,
                errors,
                since,
            )
        age = now - last
        if age < self.max_age:
            reason = f"last cycle succeeded {age:.1f} s ago"
            return HealthStatus(True, "ok", reason, age, self.max_age, cycles, errors, since)
        reason = (
            f"last cycle succeeded {age:.1f} s ago, more than the {self.max_age:g} s allowed; "
            f"{since} cycles failed since (see the job's event=cycle_failed log lines)"
        )
        return HealthStatus(False, "stale", reason, age, self.max_age, cycles, errors, since)

    def collect(self) -> Iterator[Metric]:
        """Yield this process's metrics (prometheus_client calls it on each scrape)."""
        s = self.status()
        with self._lock:
            windows, last, seconds = self._windows, self._last_success, self._last_seconds
        yield CounterMetricFamily(
            "driftlake_analytics_cycles",
            "Cycles run by this process, succeeded or failed.",
            s.cycles,
        )
        yield CounterMetricFamily(
            "driftlake_analytics_cycle_errors", "Cycles of this process that failed.", s.errors
        )
        yield CounterMetricFamily(
            "driftlake_analytics_windows", "Windows tested by this process.", windows
        )
        yield GaugeMetricFamily(
            "driftlake_analytics_last_success_timestamp_seconds",
            "When the last successful cycle ended (0: none yet).",
            last or 0.0,
        )
        yield GaugeMetricFamily(
            "driftlake_analytics_last_cycle_duration_seconds",
            "Duration of the last successful cycle.",
            seconds,
        )
        yield GaugeMetricFamily(
            "driftlake_analytics_healthy", "1 while /healthz answers 200.", float(s.healthy)
        )


def serve_health(health: Health, host: str, port: int) -> ThreadingHTTPServer:
    """Serve ``/healthz`` and ``/metrics`` of ``health`` on ``host:port`` from a daemon thread.

    Returns the server; call its ``shutdown()`` to stop. Port 0 picks a free port (read it
    from ``server.server_address``).

    Raises
    ------
    OSError
        The address cannot be bound (in use, or not an address of this host).
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                s = health.status()
                body = (json.dumps(asdict(s)) + "\n").encode()
                self._answer(200 if s.healthy else 503, "application/json", body)
            elif path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._answer(200, content_type, encoder(health.registry))
            else:
                self._answer(404, "text/plain", b"not found: try /healthz or /metrics\n")

        def _answer(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a scrape every few seconds is not news; failures show in the metrics

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health-http", daemon=True).start()
    log.info("event=health_serving address=%s:%d", host, server.server_address[1])
    return server
