"""driftlake's capture library: land your own service's model inputs and outputs in a
driftlake landing zone, with the guarantees and the landing schema of driftlake's model
server, and let the analytics job test them for drift.

In a FastAPI (or any ASGI) app::

    from driftlake import CaptureMiddleware, CaptureRoute, Monitor

    monitor = Monitor("churn", "s3://bucket/warehouse", reference="reference.parquet")
    app.add_middleware(CaptureMiddleware, monitor=monitor, routes=[
        CaptureRoute("/score", prediction="churn", score="probability")])

Anywhere else (a batch job, a worker)::

    with Monitor("churn", "warehouse", features={"age": "numeric", "plan": "categorical"}) as m:
        ids = m.capture(frame, prediction=labels, score=probabilities)

``Monitor.from_settings()`` reads every setting from ``DRIFTLAKE_*`` variables instead
(:class:`MonitorSettings`). See docs/capture.md.
"""

from __future__ import annotations

from ingest.capture import MAX_VALUE_BYTES, WriterStats
from ingest.capture.asgi import REQUEST_IDS_HEADER, CaptureMiddleware, CaptureRoute
from ingest.capture.monitor import Monitor, MonitorStats, schema_of_reference
from ingest.capture.settings import MonitorSettings
from ingest.errors import ConfigError, DriftlakeError, LandingError, SchemaError

__all__ = [
    "MAX_VALUE_BYTES",
    "REQUEST_IDS_HEADER",
    "CaptureMiddleware",
    "CaptureRoute",
    "ConfigError",
    "DriftlakeError",
    "LandingError",
    "Monitor",
    "MonitorSettings",
    "MonitorStats",
    "SchemaError",
    "WriterStats",
    "schema_of_reference",
]
