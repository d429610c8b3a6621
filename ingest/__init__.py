"""The landing-zone contract: paths, schema, storage, the batch writer and the readers.

``serving`` writes through :class:`LandingWriter`; ``analytics`` reads through the
functions in :mod:`ingest.reader`. This package depends on neither.
"""

from ingest.errors import (
    CheckpointError,
    ConfigError,
    CorruptFileError,
    DriftlakeError,
    LandingError,
    SchemaError,
)
from ingest.quarantine import list_quarantined, quarantine
from ingest.reader import (
    LandingFile,
    RowSelection,
    list_landing,
    read_keys,
    read_rows,
    scan_landing,
)
from ingest.reference import Reference, load_reference
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
)
from ingest.storage import StoredFile, Warehouse
from ingest.writer import LandingWriter, WriterStats

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
    "LandingError",
    "LandingFile",
    "LandingWriter",
    "ModelSchema",
    "Reference",
    "RowSelection",
    "SchemaError",
    "StoredFile",
    "Warehouse",
    "WriterStats",
    "list_landing",
    "list_quarantined",
    "load_reference",
    "quarantine",
    "read_keys",
    "read_rows",
    "scan_landing",
    "schema_from_columns",
]
