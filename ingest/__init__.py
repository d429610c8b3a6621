"""The landing-zone contract: paths, schema, storage, errors, progress marks and quarantine.

Subpackages and modules by job (each public one lists what others may import in ``__all__``):

- :mod:`ingest.capture`: the transport from a request to a landing file (the
  :class:`~ingest.capture.LandingSink` protocol, the thread writer, the shared-memory spool
  and its flusher process). It imports neither Polars nor the readers (import-linter).
- :mod:`ingest.listing`: which landing files a model has (:mod:`ingest.manifest` resolves
  which files of an hour are visible); :mod:`ingest.reader`: planning keys, window rows and
  scans of them.
- :mod:`ingest.feed`: a consumer's new landing files since its mark, with their keys,
  quarantine of bad files, and sealing of finished hours.
- :mod:`ingest.reference`: the reference (training) data a model is checked against.
- :mod:`ingest.maintain`: compaction, retention and their ``python -m ingest`` CLI.
- :mod:`ingest.settings_cli`: command-line flags made from a settings class.

This package depends on neither ``serving`` nor ``analytics``. Its root imports no Polars,
so a capture process that imports it stays small (import-linter holds both).
"""

from __future__ import annotations

from ingest.errors import (
    CheckpointError,
    ConfigError,
    CorruptFileError,
    DriftlakeError,
    FileVanishedError,
    LandingError,
    SchemaError,
)
from ingest.manifest import RejectedFile
from ingest.progress import ProgressMark, hold, mark_sealed, sealed_before
from ingest.quarantine import list_quarantined, quarantine, quarantine_rejected
from ingest.schema import (
    MODEL_VERSION,
    PREDICTION,
    REPLICA,
    REQUEST_ID,
    SCORE,
    TS,
    FeatureSpec,
    ModelSchema,
    schema_from_columns,
    unify_schemas,
)
from ingest.storage import StoredFile, Warehouse

__all__ = [
    "MODEL_VERSION",
    "PREDICTION",
    "REPLICA",
    "REQUEST_ID",
    "SCORE",
    "TS",
    "CheckpointError",
    "ConfigError",
    "CorruptFileError",
    "DriftlakeError",
    "FeatureSpec",
    "FileVanishedError",
    "LandingError",
    "ModelSchema",
    "ProgressMark",
    "RejectedFile",
    "SchemaError",
    "StoredFile",
    "Warehouse",
    "hold",
    "list_quarantined",
    "mark_sealed",
    "quarantine",
    "quarantine_rejected",
    "schema_from_columns",
    "sealed_before",
    "unify_schemas",
]
