"""The landing-zone contract: paths, schema, storage, the batch writer, the readers, and
maintenance (compaction, retention, quarantine, consumer progress marks).

``serving`` writes through :class:`LandingWriter`; ``analytics`` reads through the
functions in :mod:`ingest.reader` and records its progress with :func:`mark_sealed`.
This package depends on neither.
"""

from ingest.compaction import CompactionPolicy, CompactionReport, compact
from ingest.errors import (
    CheckpointError,
    ConfigError,
    CorruptFileError,
    DriftlakeError,
    FileVanishedError,
    LandingError,
    SchemaError,
)
from ingest.process_writer import ProcessLandingWriter, process_writer_supported
from ingest.progress import ProgressMark, hold, mark_sealed, sealed_before
from ingest.quarantine import list_quarantined, quarantine
from ingest.reader import (
    LandingFile,
    RowSelection,
    landing_files,
    list_landing,
    read_file,
    read_keys,
    read_landing,
    read_rows,
    scan_landing,
)
from ingest.reference import Reference, load_reference
from ingest.retention import RetentionPolicy, RetentionReport, retain
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
from ingest.writer import LandingWriter, WriterStats

__all__ = [
    "MODEL_VERSION",
    "PREDICTION",
    "REPLICA",
    "REQUEST_ID",
    "SCORE",
    "TS",
    "CheckpointError",
    "CompactionPolicy",
    "CompactionReport",
    "ConfigError",
    "CorruptFileError",
    "DriftlakeError",
    "FeatureSpec",
    "FileVanishedError",
    "LandingError",
    "LandingFile",
    "LandingWriter",
    "ModelSchema",
    "ProcessLandingWriter",
    "ProgressMark",
    "Reference",
    "RetentionPolicy",
    "RetentionReport",
    "RowSelection",
    "SchemaError",
    "StoredFile",
    "Warehouse",
    "WriterStats",
    "compact",
    "hold",
    "landing_files",
    "list_landing",
    "list_quarantined",
    "load_reference",
    "mark_sealed",
    "process_writer_supported",
    "quarantine",
    "read_file",
    "read_keys",
    "read_landing",
    "read_rows",
    "retain",
    "scan_landing",
    "schema_from_columns",
    "sealed_before",
    "unify_schemas",
]
