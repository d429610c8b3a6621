"""Maintenance of the landing zone: compaction of closed hours, retention, and their CLI.

Both take a per-model lock and honour every consumer's progress mark, so neither rewrites
or deletes what a reader still needs; ``python -m ingest compact|retain`` runs them.
"""

from __future__ import annotations

from ingest.maintain.compaction import CompactionPolicy, CompactionReport, compact
from ingest.maintain.retention import RetentionPolicy, RetentionReport, retain
from ingest.maintain.settings import MaintenanceSettings

__all__ = [
    "CompactionPolicy",
    "CompactionReport",
    "MaintenanceSettings",
    "RetentionPolicy",
    "RetentionReport",
    "compact",
    "retain",
]
