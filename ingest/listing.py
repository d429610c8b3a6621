"""Which landing files a model has: hour partitions, visible files, and files nobody reads.

Listings drop the files a published compaction group supersedes (:mod:`ingest.manifest`), so
reading every listed file gives each row once; files that are not the project's, or
compacted parts that cannot be read, are never listed but returned as rejected, with the
reason, for whoever quarantines them.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass
from datetime import UTC, datetime

from ingest import paths
from ingest.manifest import RejectedFile, view_partition
from ingest.storage import Warehouse

__all__ = [
    "LandingFile",
    "LandingListing",
    "landing_files",
    "landing_listing",
    "landing_partitions",
    "list_landing",
    "partition_listing",
]
_DATE_DIR = re.compile(r"date=\d{4}-\d{2}-\d{2}")
_HOUR_DIR = re.compile(r"hour=(?:[01]\d|2[0-3])")


@dataclass(frozen=True)
class LandingFile:
    """One published landing file of a model (``replica`` is None for a compacted file)."""

    path: str
    replica: str | None
    size: int


@dataclass(frozen=True)
class LandingListing:
    """A model's landing files as listed once: the visible files, and the files no reader
    reads (foreign names, unreadable compacted parts), each with the reason."""

    files: tuple[LandingFile, ...]
    rejected: tuple[RejectedFile, ...]


def list_landing(
    warehouse: Warehouse,
    model: str,
    since_us: int | None = None,
    until_us: int | None = None,
) -> list[LandingFile]:
    """List a model's visible landing files, sorted by path.

    A file a complete compaction group supersedes is not listed (the group is), so reading
    every listed file gives each row once. With ``since_us``, partitions of hours that ended
    at or before it are not even listed, so a long-running job does not walk weeks of history
    every cycle; with ``until_us``, hours starting at or after it are skipped. Files that are
    not the project's, or compacted parts that cannot be read, are never listed (see
    :func:`landing_listing`).
    """
    return list(landing_listing(warehouse, model, since_us, until_us).files)


def landing_listing(
    warehouse: Warehouse,
    model: str,
    since_us: int | None = None,
    until_us: int | None = None,
) -> LandingListing:
    """List a model's visible landing files, and the files of its hour partitions that
    nobody reads, with the reason (for whoever quarantines them).

    Rejected are files whose name fits neither
    ``<replica>-<12-digit seq>-<8 hex>.parquet`` nor
    ``compacted-<12 hex>-<4 digits>of<4 digits>.parquet``, files in subdirectories of an
    hour, and compacted parts whose compaction record cannot be read. Arguments as for
    :func:`list_landing`.
    """
    files: list[LandingFile] = []
    rejected: list[RejectedFile] = []
    for partition in landing_partitions(warehouse, model, since_us, until_us):
        listing = partition_listing(warehouse, partition)
        files += listing.files
        rejected += listing.rejected
    return LandingListing(tuple(files), tuple(rejected))


def partition_listing(
    warehouse: Warehouse, partition: str, skip: Container[str] = ()
) -> LandingListing:
    """List one hour partition (a relative dir from :func:`landing_partitions`) as
    :func:`landing_listing` lists each of them, leaving out the visible files whose names
    are in ``skip`` (a consumer's files already read)."""
    view = view_partition(warehouse, partition)
    files = []
    for f in view.visible:
        if f.path.rsplit("/", 1)[1] in skip:
            continue
        parsed = paths.parse_landing_path(f.path.removeprefix(paths.LANDING + "/"))
        files.append(LandingFile(f.path, parsed.replica if parsed else None, f.size))
    return LandingListing(tuple(files), view.rejected)


def landing_partitions(
    warehouse: Warehouse, model: str, since_us: int | None = None, until_us: int | None = None
) -> list[str]:
    """List a model's hour partitions (relative dirs), oldest first, optionally in a range."""

    def key(us: int) -> str:
        return datetime.fromtimestamp(us / 1e6, tz=UTC).strftime("%Y-%m-%d/%H")

    since = None if since_us is None else key(since_us)
    until = None if until_us is None else key(until_us)
    base = paths.model_landing_dir(model)
    out = []
    # only date=YYYY-MM-DD/hour=HH directories hold landing files; others are not walked
    for date_dir in warehouse.list_dirs(base):
        if _DATE_DIR.fullmatch(date_dir) is None:
            continue
        day = date_dir.removeprefix("date=")
        if (since is not None and day < since[:10]) or (until is not None and day > until[:10]):
            continue
        for hour_dir in warehouse.list_dirs(f"{base}/{date_dir}"):
            if _HOUR_DIR.fullmatch(hour_dir) is None:
                continue
            hour = f"{day}/{hour_dir.removeprefix('hour=')}"
            if (since is not None and hour < since) or (until is not None and hour >= until):
                continue
            out.append(f"{base}/{date_dir}/{hour_dir}")
    return out


def landing_files(
    warehouse: Warehouse,
    model: str,
    since_us: int | None = None,
    until_us: int | None = None,
) -> list[str]:
    """Return the absolute paths of a model's visible landing files.

    Give this list (not a glob) to DuckDB's ``read_parquet([...], union_by_name=true,
    hive_partitioning=true)`` or to any Parquet reader: a glob can briefly see an hour twice
    while a compaction publishes its group and has not yet deleted the files it replaces.
    """
    return [warehouse.uri(f.path) for f in list_landing(warehouse, model, since_us, until_us)]
