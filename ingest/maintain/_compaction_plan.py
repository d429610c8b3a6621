"""What compaction should do (pure): its policy, and the plan for one landing hour."""

from __future__ import annotations

from dataclasses import dataclass

from ingest import paths
from ingest.errors import ConfigError
from ingest.manifest import PartitionView
from ingest.progress import HOUR_US


@dataclass(frozen=True)
class CompactionPolicy:
    """How and when hours are compacted.

    Parameters
    ----------
    grace_seconds
        An hour is closed this long after it ends (late flushes have landed by then).
    target_file_rows
        Rows per compacted file at most: an hour of ``n`` rows becomes
        ``ceil(n / target_file_rows)`` files.
    row_group_rows
        Parquet row-group size of compacted files (10^4 to 10^6).
    delete_after_seconds
        Files a compaction group supersedes are deleted by the first run at least this long
        after the group was published; 0 (the default): right after it, by the same run.
        Project readers never count both either way; a delay lets queries that listed the old
        files finish, but lets a plain glob count the hour twice until the files are deleted.
    compression_level
        zstd level of compacted files.
    lock_ttl_seconds
        A maintenance lock older than this is taken to be left by a crashed run.
    """

    grace_seconds: float = 600.0
    target_file_rows: int = 5_000_000
    row_group_rows: int = 250_000
    delete_after_seconds: float = 0.0
    compression_level: int = 3
    lock_ttl_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if not 10_000 <= self.row_group_rows <= 1_000_000:
            raise ConfigError(
                f"compaction row_group_rows={self.row_group_rows} is outside 10000..1000000: "
                "smaller groups make reads slow, larger ones make them use much memory"
            )
        if self.target_file_rows < 1:
            raise ConfigError(f"compaction target_file_rows={self.target_file_rows} must be >= 1")
        if self.grace_seconds < 0 or self.delete_after_seconds < 0:
            raise ConfigError("compaction grace and delete_after must be >= 0 seconds")


@dataclass(frozen=True)
class PartitionPlan:
    """What one run does to one hour: rewrite its visible files, and delete these files."""

    partition: str
    rewrite: bool
    delete: tuple[str, ...]


def plan_partition(
    view: PartitionView, *, limit_us: int, now_s: float, policy: CompactionPolicy
) -> PartitionPlan | None:
    """Decide what to do with one hour; None if nothing (pure).

    An hour is touched only if it ends at or before ``limit_us`` (closed by the grace period
    and below every consumer's progress mark). It is rewritten if it holds writers' files or
    more than one group; superseded files and parts of incomplete groups are deleted once the
    newest group (or the incomplete part) is ``delete_after_seconds`` old.
    """
    if paths.partition_hour_us(view.partition) + HOUR_US > limit_us:
        return None
    uncompacted = set(view.uncompacted)
    rewrite = bool(uncompacted) or len(view.groups) > 1
    cutoff_ns = (now_s - policy.delete_after_seconds) * 1e9
    newest_group_ns = max((f.mtime_ns for f in view.visible if f not in uncompacted), default=None)
    delete = []
    if newest_group_ns is not None and newest_group_ns <= cutoff_ns:
        delete += [f.path for f in view.superseded]
    delete += [f.path for f in view.incomplete if f.mtime_ns <= cutoff_ns]
    if not rewrite and not delete:
        return None
    return PartitionPlan(view.partition, rewrite, tuple(delete))
