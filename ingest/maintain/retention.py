"""Retention: delete compacted landing hours past one age, and drift history past another."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ingest import paths
from ingest.errors import ConfigError
from ingest.maintain._lock import maintenance_lock
from ingest.manifest import view_partition
from ingest.progress import HOUR_US, sealed_before
from ingest.quarantine import quarantine_rejected
from ingest.reader import landing_partitions
from ingest.storage import Warehouse

log = logging.getLogger("driftlake.ingest.maintain.retention")
DAY_S = 86_400.0


@dataclass(frozen=True)
class RetentionPolicy:
    """How long data is kept, in days (None: forever).

    ``landing_days`` applies to landing hours, and only once they are compacted;
    ``history_days`` to the drift history, which is small and usually kept much longer.
    """

    landing_days: float | None = 30.0
    history_days: float | None = 365.0

    def __post_init__(self) -> None:
        for name in ("landing_days", "history_days"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"retention {name}={value} must be > 0 days, or None (forever)")


@dataclass(frozen=True)
class RetentionReport:
    """What one retention run of a model deleted, and what it kept waiting for compaction.

    ``quarantined`` holds files of deleted hours that were not the project's (or could not be
    read): they were moved to ``quarantine/`` rather than deleted.
    """

    model: str
    landing_hours_deleted: tuple[str, ...]
    history_days_deleted: tuple[str, ...]
    waiting_for_compaction: tuple[str, ...]
    quarantined: tuple[str, ...] = ()
    skipped: str | None = None


def expired_hours(hour_starts_us: Sequence[int], now_s: float, max_age_s: float) -> list[int]:
    """Return the hours (start, µs) that ended at least ``max_age_s`` before ``now_s`` (pure)."""
    cutoff = int((now_s - max_age_s) * 1e6)
    return [h for h in hour_starts_us if h + HOUR_US <= cutoff]


def expired_days(days: Sequence[str], now_s: float, max_age_s: float) -> list[str]:
    """Return the ``YYYY-MM-DD`` days that ended at least ``max_age_s`` before ``now_s`` (pure)."""
    cutoff = datetime.fromtimestamp(now_s - max_age_s, tz=UTC)
    return [
        d
        for d in days
        if datetime.strptime(d, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=1) <= cutoff
    ]


def retain(
    warehouse: Warehouse,
    model: str,
    policy: RetentionPolicy | None = None,
    *,
    force: bool = False,
    now: float | None = None,
    lock_ttl: float = 3600.0,
) -> RetentionReport:
    """Delete ``model``'s expired landing hours (compacted ones only) and drift history days.

    Landing hours are also kept while a consumer's progress mark says it may still read
    them (``force`` ignores the marks). An expired hour that is not compacted yet is kept and
    reported in ``waiting_for_compaction``: compaction first, so the hour's fate is decided
    on few files and the drop is visible in the logs.
    """
    policy = policy or RetentionPolicy()
    now = time.time() if now is None else now
    with maintenance_lock(warehouse, model, lock_ttl) as acquired:
        if not acquired:
            return RetentionReport(model, (), (), (), skipped="another run holds the lock")
        deleted, waiting, quarantined = [], [], []
        if policy.landing_days is not None:
            mark = None if force else sealed_before(warehouse, model, now)
            for partition in landing_partitions(warehouse, model):
                hour = paths.partition_hour_us(partition)
                if not expired_hours([hour], now, policy.landing_days * DAY_S):
                    continue
                if not force and (mark is None or hour + HOUR_US > mark):
                    continue
                view = view_partition(warehouse, partition)
                if view.uncompacted:
                    waiting.append(partition)
                    continue
                # files that are not the project's are moved aside, not deleted with the hour
                quarantined += quarantine_rejected(warehouse, view.rejected)
                warehouse.remove_tree(partition)
                deleted.append(partition)
            base = paths.model_landing_dir(model)
            for date_dir in warehouse.list_dirs(base):
                if not warehouse.list_dirs(f"{base}/{date_dir}"):
                    warehouse.remove_tree(f"{base}/{date_dir}")
        days: list[str] = []
        if policy.history_days is not None:
            base = paths.drift_dir(model)
            present = [d.removeprefix("date=") for d in warehouse.list_dirs(base)]
            days = expired_days(present, now, policy.history_days * DAY_S)
            for day in days:
                warehouse.remove_tree(f"{base}/date={day}")
    if waiting:
        log.warning(
            "event=retention_waiting_for_compaction model=%s hours=%d first=%s",
            model,
            len(waiting),
            waiting[0],
        )
    log.info(
        "event=retention_done model=%s landing_hours_deleted=%d history_days_deleted=%d",
        model,
        len(deleted),
        len(days),
    )
    return RetentionReport(model, tuple(deleted), tuple(days), tuple(waiting), tuple(quarantined))
