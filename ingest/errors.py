"""The exception tree every driftlake package raises from.

::

    DriftlakeError
    ├── ConfigError          a setting or CLI flag has an unusable value
    ├── SchemaError          data does not match a model's landing schema
    ├── LandingError         the landing zone cannot be read or written
    │   ├── CorruptFileError a landing file is truncated or unreadable
    │   ├── FileVanishedError a listed landing file is gone (compaction or retention ran)
    │   └── ObjectExistsError an exclusive write found its object already there
    └── CheckpointError      an analytics checkpoint is missing a field or unreadable

A caller catches ``DriftlakeError`` for "anything driftlake said no to", or one precise
subclass. Messages say what was expected, what was found, and what to do.
"""

from __future__ import annotations


class DriftlakeError(Exception):
    """Base class of every error driftlake raises on purpose."""


class ConfigError(DriftlakeError):
    """A setting, environment variable or CLI flag has an unusable value."""


class SchemaError(DriftlakeError):
    """Data does not match the model's landing schema."""


class LandingError(DriftlakeError):
    """The landing zone cannot be read or written."""


class CorruptFileError(LandingError):
    """A landing file is truncated or unreadable."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"landing file {path} is unreadable: {reason}")
        self.path = path
        self.reason = reason


class FileVanishedError(LandingError):
    """A landing file was listed but is gone when read: compaction or retention replaced it.

    Not a corrupt file (never quarantined): list the landing zone again and re-read.
    """

    def __init__(self, path: str) -> None:
        super().__init__(
            f"landing file {path} was listed but no longer exists (compaction or retention "
            "replaced it): list the landing zone again and re-read"
        )
        self.path = path


class ObjectExistsError(LandingError):
    """An exclusive write (create only) found its object already there."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} already exists")
        self.path = path


class CheckpointError(DriftlakeError):
    """An analytics checkpoint is unreadable or from an incompatible version."""
