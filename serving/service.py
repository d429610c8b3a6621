"""What one replica serves with: the model, the landing sink, its capture and the metrics."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ingest import ModelSchema, Warehouse
from ingest.capture import (
    MAX_VALUE_BYTES,
    LandingSink,
    LandingWriter,
    ProcessLandingWriter,
    process_writer_supported,
)
from ingest.reference import Reference, load_reference
from serving._mixed_request import MixedRequestParser
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
    # categorical features whose reference column has nulls (requests may send null there)
    nullable: tuple[str, ...] = ()
    # an example value of each categorical feature, for the OpenAPI document
    examples: dict[str, str] = dataclasses.field(default_factory=dict)


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
    categorical = schema.categorical_features
    # the request parser, picked once: numeric features only keep the all-float parser
    parser: RequestParser
    if categorical:
        nullable = [c for c in categorical if reference.frame[c].null_count()]
        parser = MixedRequestParser(schema, settings.max_batch_rows, nullable)
        parsed_order = schema.numeric_features
    else:
        nullable = []
        parser = RequestParser(predictor.feature_names, settings.max_batch_rows)
        parsed_order = predictor.feature_names
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
        capture = Capture(writer, schema, parsed_order, predictor.version)
    metrics = ServingMetrics(
        model=settings.model_name,
        model_version=predictor.version,
        replica=settings.replica,
        writer=writer,
        routes=PREDICTION_PATHS,
    )
    # room for long column names and 25-digit numbers with whitespace, and for categorical
    # values of the most bytes capture takes; a bound, not a fit
    row_bytes = len(schema.numeric_features) * 64 + len(categorical) * (MAX_VALUE_BYTES + 64)
    return Service(
        settings=settings,
        schema=schema,
        predictor=predictor,
        parser=parser,
        metrics=metrics,
        writer=writer,
        capture=capture,
        max_body_bytes=(1 << 20) + settings.max_batch_rows * row_bytes,
        body_deadlines=ReadDeadlines(settings.read_timeout),
        nullable=tuple(nullable),
        examples=_examples(reference),
    )


def _examples(reference: Reference) -> dict[str, str]:
    """A value of each categorical feature for the documented example: its commonest."""
    out = {}
    for name in reference.schema.categorical_features:
        counts = reference.frame[name].drop_nulls().value_counts()
        counts = counts.sort(["count", name], descending=[True, False])  # ties by name
        out[name] = str(counts[name][0]) if counts.height else ""
    return out
