"""Settings of landing-zone maintenance (compaction, retention), from ``DRIFTLAKE_*`` once."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.maintain.compaction import CompactionPolicy
from ingest.maintain.retention import RetentionPolicy


class MaintenanceSettings(BaseSettings):
    """Everything ``python -m ingest`` can be told; each field is ``DRIFTLAKE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="DRIFTLAKE_", extra="ignore")

    warehouse: str = Field(
        "./warehouse",
        description="Warehouse root: a path, file:// URL or s3://bucket/prefix (endpoint and "
        "credentials from the standard AWS_* environment).",
    )
    compact_grace: float = Field(
        600.0, ge=0, description="Seconds after an hour ends before it may be compacted."
    )
    compact_target_file_rows: int = Field(
        5_000_000, gt=0, description="Rows per compacted file at most."
    )
    compact_row_group_rows: int = Field(
        250_000, ge=10_000, le=1_000_000, description="Row-group size of compacted files."
    )
    compact_delete_after: float = Field(
        0.0,
        ge=0,
        description="Seconds a compacted hour's replaced files are kept (for queries that "
        "listed them) before they are deleted; 0 deletes them right after compaction.",
    )
    landing_retention_days: float | None = Field(
        30.0, gt=0, description="Days compacted landing hours are kept (unset: forever)."
    )
    history_retention_days: float | None = Field(
        365.0, gt=0, description="Days of drift history kept (unset: forever)."
    )
    scheduler: str | None = Field(
        None, description="Dask scheduler address; due hours are compacted on its workers."
    )

    @field_validator("landing_retention_days", "history_retention_days", "scheduler", mode="before")
    @classmethod
    def _unset(cls, value: object) -> object:
        # DRIFTLAKE_LANDING_RETENTION_DAYS= (empty) or "none" means keep forever
        return None if isinstance(value, str) and value.strip().lower() in ("", "none") else value

    def compaction_policy(self) -> CompactionPolicy:
        """Return the compaction policy these settings describe."""
        return CompactionPolicy(
            grace_seconds=self.compact_grace,
            target_file_rows=self.compact_target_file_rows,
            row_group_rows=self.compact_row_group_rows,
            delete_after_seconds=self.compact_delete_after,
        )

    def retention_policy(self) -> RetentionPolicy:
        """Return the retention policy these settings describe."""
        return RetentionPolicy(self.landing_retention_days, self.history_retention_days)
