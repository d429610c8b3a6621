"""What one replica serves with: the model, the landing sink, its capture and the metrics."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ingest import ModelSchema, Warehouse
from ingest.capture import (
    LandingSink,
    LandingWriter,
    ProcessLandingWriter,
    process_writer_supported,
)
from ingest.reference import load_reference
from serving.capture import Capture
from serving.deadline import ReadDeadlines
from serving.loading import load_predictor
from serving.metrics import ServingMetrics
from serving.model import Predictor
from serving.request import RequestParser
from serving.settings import ServingSettings

PREDICTION_PATHS = ("/get-prediction", "/model/get-prediction")


@dataclass(frozen=True)
class Service:
    """What one app serves with, built once by :func:`build_service` (``app.state.service``)."""

    settings: ServingSettings
    schema: ModelSchema
    predictor: Predictor
    parser: RequestParser
    metrics: ServingMetrics
    writer: LandingSink | None
    capture: Capture | None
    max_body_bytes: int
    body_deadlines: ReadDeadlines


def build_service(settings: ServingSettings) -> Service:
    """Load the reference and the model, and wire the landing sink, capture and metrics.

    Parameters
    ----------
    settings
        The replica's settings.

    Returns
    -------
    Service
        Everything the app serves with; its sink (if capture is on) is built, not started.

    Raises
    ------
    DriftlakeError
        ``SchemaError`` if the reference cannot be read, ``ConfigError`` if the model cannot
        be loaded or trained, ``LandingError`` if the warehouse cannot be created.
    """
    reference = load_reference(settings.reference_path, settings.model_name, label=settings.label)
    warehouse = Warehouse(settings.warehouse)
    predictor = load_predictor(settings, reference, warehouse)
    # one explicit landing schema per model version, recorded in every file's footer
    schema = dataclasses.replace(reference.schema, version=predictor.version)
    writer = capture = None
    if settings.capture:
        options = dict(
            flush_rows=settings.flush_rows,
            flush_interval=settings.flush_interval,
            max_buffer_rows=settings.max_buffer_rows,
            compression=settings.landing_compression,
        )
        if settings.capture_process and process_writer_supported():
            writer = ProcessLandingWriter(
                warehouse, schema, settings.replica, spool_rows=settings.spool_rows, **options
            )
        else:
            writer = LandingWriter(warehouse, schema, settings.replica, **options)
        capture = Capture(writer, schema, predictor.feature_names, predictor.version)
    metrics = ServingMetrics(
        model=settings.model_name,
        model_version=predictor.version,
        replica=settings.replica,
        writer=writer,
        routes=PREDICTION_PATHS,
    )
    n_features = len(predictor.feature_names)
    return Service(
        settings=settings,
        schema=schema,
        predictor=predictor,
        parser=RequestParser(predictor.feature_names, settings.max_batch_rows),
        metrics=metrics,
        writer=writer,
        capture=capture,
        # room for long column names and 25-digit numbers with whitespace; a bound, not a fit
        max_body_bytes=(1 << 20) + settings.max_batch_rows * n_features * 64,
        body_deadlines=ReadDeadlines(settings.read_timeout),
    )
