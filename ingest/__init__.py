"""The landing-zone contract: paths, schema, storage, the batch writer, the readers, and
maintenance (compaction, retention, quarantine, consumer progress marks).

``serving`` writes through :class:`LandingWriter`; ``analytics`` reads through the
functions in :mod:`ingest.reader` and records its progress with :func:`mark_sealed`.
This package depends on neither.
"""

from __future__ import annotations

import importlib

# a function named like its module: importing the module binds the module's name here, so
# these are bound now (ingest.quarantine needs nothing the writer does not)
from ingest.quarantine import list_quarantined, quarantine, quarantine_rejected

# each name and the module that holds it, imported when first used (PEP 562): the
# publisher process needs only the writer, and importing Polars (reader, compaction) would
# add ~0.4 s to every publisher start, and its thread pools, to every replica
_EXPORTS = {
    "MODEL_VERSION": "schema",
    "PREDICTION": "schema",
    "REPLICA": "schema",
    "REQUEST_ID": "schema",
    "SCORE": "schema",
    "TS": "schema",
    "CheckpointError": "errors",
    "CompactionPolicy": "compaction",
    "CompactionReport": "compaction",
    "ConfigError": "errors",
    "CorruptFileError": "errors",
    "DriftlakeError": "errors",
    "FeatureSpec": "schema",
    "FileVanishedError": "errors",
    "LandingError": "errors",
    "LandingFile": "reader",
    "LandingListing": "reader",
    "LandingWriter": "writer",
    "ModelSchema": "schema",
    "ProcessLandingWriter": "process_writer",
    "ProgressMark": "progress",
    "RejectedFile": "manifest",
    "Reference": "reference",
    "RetentionPolicy": "retention",
    "RetentionReport": "retention",
    "RowSelection": "reader",
    "SchemaError": "errors",
    "StoredFile": "storage",
    "Warehouse": "storage",
    "WriterStats": "writer",
    "compact": "compaction",
    "hold": "progress",
    "landing_files": "reader",
    "landing_listing": "reader",
    "list_landing": "reader",
    "load_reference": "reference",
    "mark_sealed": "progress",
    "process_writer_supported": "process_writer",
    "read_file": "reader",
    "read_keys": "reader",
    "read_landing": "reader",
    "read_rows": "reader",
    "retain": "retention",
    "scan_landing": "reader",
    "schema_from_columns": "schema",
    "sealed_before": "progress",
    "unify_schemas": "schema",
}
__all__ = [*_EXPORTS, "list_quarantined", "quarantine", "quarantine_rejected"]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ingest' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ingest.{module}"), name)
    globals()[name] = value  # later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
