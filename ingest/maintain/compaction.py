"""Compaction: rewrite each closed, sealed landing hour into a few large, ts-sorted zstd files.

One run per model: plan which hours are due (pure, :mod:`ingest.maintain._compaction_plan`),
rewrite each due hour into a compaction group (on Dask workers when several are due), and
delete the files that groups published at least ``delete_after`` seconds ago supersede. A
group is visible to readers only once complete, and from then on hides the files it
replaces (:mod:`ingest.manifest`), so no reader ever counts a row twice or misses one.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa

from ingest import paths
from ingest.errors import CorruptFileError, LandingError
from ingest.maintain._compaction_plan import CompactionPolicy, PartitionPlan, plan_partition
from ingest.maintain._lock import maintenance_lock
from ingest.manifest import (
    PartitionView,
    RejectedFile,
    group_metadata,
    read_supersedes,
    view_partition,
)
from ingest.progress import HOUR_US, sealed_before
from ingest.quarantine import quarantine_rejected
from ingest.reader import file_schema, landing_partitions, read_file, scan_files
from ingest.schema import REQUEST_ID, TS, unify_schemas
from ingest.storage import StoredFile, Warehouse

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger("driftlake.ingest.maintain.compaction")
__all__ = [
    "CompactionPolicy",
    "CompactionReport",
    "PartitionPlan",
    "PartitionResult",
    "compact",
    "compact_partition",
    "plan_partition",
]


@dataclass(frozen=True)
class PartitionResult:
    """What compacting one hour did."""

    partition: str
    files_before: int
    files_after: int
    rows: int
    deleted: int
    quarantined: tuple[str, ...]
    seconds: float


@dataclass(frozen=True)
class CompactionReport:
    """What one compaction run of a model did (``skipped`` says why it did nothing)."""

    model: str
    limit_us: int | None
    partitions: tuple[PartitionResult, ...]
    skipped: str | None = None

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)


def compact_partition(
    warehouse: Warehouse, plan: PartitionPlan, policy: CompactionPolicy
) -> PartitionResult:
    """Carry out one hour's plan: publish its compaction group, then delete what is due.

    Runs on a Dask worker or in-process. A file that cannot be read, or whose name fits no
    landing pattern, is quarantined (with its reason) and left out of the group; the rest of
    the hour is still compacted.
    """
    started = time.perf_counter()
    deleted, files_before, files_after, rows = 0, 0, 0, 0
    view = view_partition(warehouse, plan.partition)
    quarantined = quarantine_rejected(warehouse, view.rejected)
    if plan.rewrite:
        table, sources, unreadable = _read_hour(warehouse, view.visible)
        quarantined += unreadable
        files_before = len(view.visible)
        if table is not None:
            files_after, rows = _publish_group(warehouse, plan.partition, table, sources, policy)
        if policy.delete_after_seconds == 0:
            plan = PartitionPlan(plan.partition, True, (*plan.delete, *(f.path for f in sources)))
    for path in _deletion_order(plan.delete, view):
        warehouse.delete(path)
        deleted += 1
    result = PartitionResult(
        partition=plan.partition,
        files_before=files_before,
        files_after=files_after,
        rows=rows,
        deleted=deleted,
        quarantined=tuple(quarantined),
        seconds=time.perf_counter() - started,
    )
    log.info(
        "event=partition_compacted partition=%s files_before=%d files_after=%d rows=%d "
        "deleted=%d quarantined=%d seconds=%.3f",
        result.partition,
        result.files_before,
        result.files_after,
        result.rows,
        result.deleted,
        len(result.quarantined),
        result.seconds,
    )
    return result


def _read_hour(
    warehouse: Warehouse, files: Sequence[StoredFile]
) -> tuple[pa.Table | None, list[StoredFile], list[str]]:
    """Read an hour's files sorted by ``(ts, request_id)`` under their unified schema.

    Unreadable files are quarantined and left out; returns the table (None if no file was
    readable), the files it holds, and the quarantined paths.
    """
    sources, quarantined = list(files), []
    while sources:
        readable = []
        for f in sources:
            try:
                file_schema(warehouse, f.path, f.size)
                readable.append(f)
            except CorruptFileError as exc:
                quarantined += quarantine_rejected(warehouse, [RejectedFile(f.path, exc.reason)])
        sources = readable
        if not sources:
            break
        schema = unify_schemas(file_schema(warehouse, f.path, f.size) for f in sources)
        try:
            frame = (
                scan_files(warehouse, [(f.path, f.size) for f in sources])
                .sort(TS, REQUEST_ID)
                .collect()
            )
        except (pl.exceptions.PolarsError, OSError) as exc:
            # a footer that reads but a page that does not: find the file, one by one
            bad = _first_unreadable(warehouse, sources)
            if bad is None:
                raise LandingError(f"cannot read hour {files[0].path}: {exc}") from exc
            quarantined += quarantine_rejected(warehouse, [RejectedFile(bad.path, bad.reason)])
            sources = [f for f in sources if f.path != bad.path]
            continue
        return frame.to_arrow().cast(schema), sources, quarantined
    return None, [], quarantined


def _deletion_order(delete: Sequence[str], view: PartitionView) -> list[str]:
    """Writers' files first, then compacted parts oldest first: a crash between two deletes
    never leaves a file whose rows a newer group holds visible beside that group (a group
    hides what it replaced only while its own parts exist)."""
    mtime = {f.path: f.mtime_ns for f in (*view.visible, *view.superseded, *view.incomplete)}

    def key(path: str) -> tuple[bool, int, str]:
        compacted = paths.parse_compacted_name(path.rsplit("/", 1)[1]) is not None
        return compacted, mtime.get(path, 0), path

    return sorted(dict.fromkeys(delete), key=key)


def _closed(partition: str, limit_us: int) -> bool:
    return paths.partition_hour_us(partition) + HOUR_US <= limit_us


def _first_unreadable(warehouse: Warehouse, files: Sequence[StoredFile]) -> CorruptFileError | None:
    for f in files:
        try:
            read_file(warehouse, f.path)
        except CorruptFileError as exc:
            return exc
    return None


def _publish_group(
    warehouse: Warehouse,
    partition: str,
    table: pa.Table,
    sources: Sequence[StoredFile],
    policy: CompactionPolicy,
) -> tuple[int, int]:
    model = partition.split("model=", 1)[1].split("/", 1)[0]
    group = uuid.uuid4().hex[:12]
    parts = max(1, math.ceil(table.num_rows / policy.target_file_rows))
    # what the sources' groups replaced too: should a source group's parts all become
    # unreadable, this group still hides the files they replaced, so no row shows twice
    replaced = {f.path.rsplit("/", 1)[1] for f in sources}
    for f in sources:
        if paths.parse_compacted_name(f.path.rsplit("/", 1)[1]) is not None:
            replaced |= read_supersedes(warehouse, f)
    metadata = group_metadata(replaced, group, parts)
    metadata[b"driftlake.model"] = model.encode()
    size = math.ceil(table.num_rows / parts)
    for part in range(parts):
        # the group counts for readers only once its last part is published
        chunk = table.slice(part * size, size).replace_schema_metadata(metadata)
        warehouse.publish_table(
            chunk,
            f"{partition}/{paths.compacted_file_name(group, part, parts)}",
            compression="zstd",
            compression_level=policy.compression_level,
            row_group_size=policy.row_group_rows,
        )
    return parts, table.num_rows


def compact(
    warehouse: Warehouse,
    model: str,
    policy: CompactionPolicy | None = None,
    *,
    force: bool = False,
    now: float | None = None,
    client: Client | None = None,
) -> CompactionReport:
    """Compact every due hour of ``model``'s landing zone.

    Parameters
    ----------
    warehouse, model
        Whose landing zone.
    policy
        Grace period, file and row-group sizes, deletion delay (defaults if None).
    force
        Ignore consumers' progress marks: compact every closed hour. Only for a warehouse no
        live analytics job reads (the job would read a compacted hour's rows again).
    now
        Epoch seconds (default: the wall clock).
    client
        A ``distributed.Client``: when several hours are due they are compacted in parallel
        on its workers.

    Returns
    -------
    CompactionReport
        ``skipped`` is set when another run holds the lock or no consumer has a mark yet.
    """
    policy = policy or CompactionPolicy()
    now = time.time() if now is None else now
    closed_us = int((now - policy.grace_seconds) * 1e6)
    with maintenance_lock(warehouse, model, policy.lock_ttl_seconds) as acquired:
        if not acquired:
            return CompactionReport(model, None, (), skipped="another compaction holds the lock")
        mark = None if force else sealed_before(warehouse, model, now)
        if mark is None and not force:
            return CompactionReport(
                model,
                None,
                (),
                skipped="no consumer has a progress mark yet (run the analytics job, or force)",
            )
        limit = closed_us if mark is None else min(closed_us, mark)
        plans = []
        for partition in landing_partitions(warehouse, model, until_us=limit):
            view = view_partition(warehouse, partition)
            plan = plan_partition(view, limit_us=limit, now_s=now, policy=policy)
            if plan is None and view.rejected and _closed(partition, limit):
                plan = PartitionPlan(partition, False, ())  # only quarantine foreign files
            if plan is not None:
                plans.append(plan)
        if client is not None and len(plans) > 1:
            futures = client.map(
                compact_partition, [warehouse] * len(plans), plans, policy=policy, pure=False
            )
            results = client.gather(futures)
        else:
            results = [compact_partition(warehouse, p, policy) for p in plans]
    report = CompactionReport(model, limit, tuple(results))
    log.info(
        "event=compaction_done model=%s partitions=%d rows=%d files_before=%d files_after=%d "
        "deleted=%d",
        model,
        len(results),
        report.rows,
        sum(r.files_before for r in results),
        sum(r.files_after for r in results),
        sum(r.deleted for r in results),
    )
    return report
