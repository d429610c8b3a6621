"""The landing feed: a consumer's new landing files since its mark, with their planning keys.

A consumer that reads the landing zone as it grows (the analytics driver) keeps a
:class:`FeedMark`: the hour boundary below which it is done (*sealed* hours are never listed
again) and, for each open hour partition, the names of the files it has already read. One
round is::

    batch = poll(warehouse, model, mark)      # new files, their keys; bad files quarantined
    ...                                       # use batch.keys, make the results durable
    mark = seal(advance(mark, batch), boundary_us)
    ...                                       # store mark durably (the consumer's checkpoint)
    release(warehouse, model, consumer, mark, holding=files_with_unused_rows)

A bounded poll (``max_files``, ``max_rows``: a consumer catching up on a backlog) reads the
oldest new files and leaves the rest for the next rounds; :meth:`FeedBatch.unread_from_us`
says from which event time their rows may be, so the consumer treats none of its rows at or
after it as final yet, and seals no hour holding one.

Exactly once: a file is in a batch until a mark that contains it is stored, so a crash before
that reads it again and a crash after never does; :func:`release` lets compaction rewrite only
hours that a stored mark has sealed, so a file is never replaced by a compacted one while a
mark could still list it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from ingest.errors import CorruptFileError, FileVanishedError
from ingest.listing import LandingFile, landing_partitions, partition_listing
from ingest.manifest import RejectedFile
from ingest.paths import partition_hour_us
from ingest.progress import HOUR_US, ProgressMark, mark_sealed
from ingest.quarantine import quarantine_rejected
from ingest.reader import read_keys, read_many_keys
from ingest.storage import Warehouse

__all__ = [
    "KEY_SCHEMA",
    "FeedBatch",
    "FeedMark",
    "advance",
    "file_keys",
    "poll",
    "reading_order",
    "release",
    "seal",
    "unread_from_us",
]

#: the planning keys of landing rows: the file, the row's position in it, its event time
#: (µs since epoch), request id and replica
KEY_SCHEMA = {
    "file": pl.String,
    "row": pl.UInt32,
    "ts": pl.Int64,
    "request_id": pl.String,
    "replica": pl.String,
}


@dataclass(frozen=True)
class FeedMark:
    """How far a consumer has read a model's landing zone.

    ``sealed_before_us`` is an hour boundary (µs since epoch): partitions of hours that start
    before it are never listed again. ``seen`` maps each open (unsealed) partition, a
    relative dir ending in ``date=YYYY-MM-DD/hour=HH``, to the names of the files already
    read from it. A mark is never changed in place: :func:`advance` and :func:`seal` return
    a new one.
    """

    sealed_before_us: int = 0
    seen: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the mark as the JSON fields ``seen`` and ``sealed_before_us`` (sorted, so
        the same mark always gives the same bytes)."""
        return {
            "seen": {k: sorted(v) for k, v in sorted(self.seen.items())},
            "sealed_before_us": self.sealed_before_us,
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> FeedMark:
        """Return the mark stored in ``body`` by :meth:`to_json`.

        Raises
        ------
        KeyError, TypeError, ValueError
            If a field is missing or not of its type, or ``seen`` names a directory that is
            not a landing hour partition (the caller names the file).
        """
        seen = body["seen"]
        if not isinstance(seen, Mapping):
            raise TypeError(f"'seen' is a {type(seen).__name__}, expected an object")
        for part, names in seen.items():
            partition_hour_us(part)
            if not isinstance(names, list):
                raise TypeError(f"'seen' of {part!r} is not a list of file names")
        return cls(
            sealed_before_us=body["sealed_before_us"],
            seen={str(k): frozenset(v) for k, v in seen.items()},
        )


@dataclass(frozen=True)
class FeedBatch:
    """What one :func:`poll` found.

    ``files`` are the new landing paths read, in reading order (see :func:`poll`); ``keys``
    are their rows' planning keys (columns of :data:`KEY_SCHEMA`, files in that order, rows
    in file order); ``quarantined`` are the files this poll moved to ``quarantine/`` with the
    reason: files that could not be read, and files of a listed hour whose name fits no
    landing pattern.

    ``unread`` is empty unless a bound of the poll left new files for later: then it maps
    each replica with files left (None for compacted files and for the hours not listed) to
    the start (µs since epoch) of the earliest hour holding one.
    """

    files: tuple[str, ...] = ()
    keys: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=KEY_SCHEMA))
    quarantined: tuple[RejectedFile, ...] = ()
    unread: Mapping[str | None, int] = field(default_factory=dict)

    def unread_from_us(self, replica_high_us: Mapping[str, int]) -> int | None:
        """The earliest event time (µs) a row of the files left unread may hold; None when
        the poll read every new file (see :func:`unread_from_us`)."""
        return unread_from_us(self.unread, replica_high_us)


def unread_from_us(
    unread: Mapping[str | None, int], replica_high_us: Mapping[str, int]
) -> int | None:
    """The earliest event time (µs) a row of files not read yet may hold; None if none is.

    ``unread`` maps each replica with files not read (None for compacted files) to the start
    of the earliest hour holding one. A file holds rows of its hour only, and a replica
    publishes its rows in order, so a replica's files not read yet hold no row before the
    newest of its rows already read (``replica_high_us``, including those just read), when
    they are read in :func:`reading_order`.
    """
    if not unread:
        return None
    return min(
        hour if replica is None else max(hour, replica_high_us.get(replica, hour))
        for replica, hour in unread.items()
    )


def file_keys(warehouse: Warehouse, path: str) -> pl.DataFrame:
    """Read the planning keys of one landing file (columns of :data:`KEY_SCHEMA`).

    Raises
    ------
    CorruptFileError
        If the file cannot be read.
    FileVanishedError
        If the file is gone (list the landing zone again).
    """
    keys = read_keys(warehouse, path).with_columns(pl.lit(path, pl.String).alias("file"))
    return keys.select(list(KEY_SCHEMA))


def poll(
    warehouse: Warehouse,
    model: str,
    mark: FeedMark,
    *,
    max_files: int = 0,
    max_rows: int = 0,
) -> FeedBatch:
    """Read the keys of ``model``'s landing files that ``mark`` has not seen.

    Only hours at or after ``mark.sealed_before_us`` are listed. Files that are not the
    project's and files that cannot be read are quarantined with the reason (so the next
    poll does not find them again) and never returned as new.

    Parameters
    ----------
    warehouse, model
        Whose landing zone.
    mark
        The consumer's mark; give the batch back to :func:`advance` with this same mark.
    max_files, max_rows
        Bound one poll (0: no bound): it reads the keys of at most ``max_files`` files, and
        of no further file once it holds ``max_rows`` rows. New files are read oldest hour
        first, within an hour each replica's in the order it published them (its sequence
        numbers), the replicas in turn; hours past the one where the bound was reached are
        not even listed. What was left is in :attr:`FeedBatch.unread` for the next polls.

    Returns
    -------
    FeedBatch
        The new files read, their keys, what was left unread, and the files quarantined.

    Raises
    ------
    FileVanishedError
        If a listed file is gone before it is read (poll again).
    """
    files: list[str] = []
    keys: list[pl.DataFrame] = []
    quarantined: list[RejectedFile] = []
    unread: dict[str | None, int] = {}
    rows = tried = 0
    since = mark.sealed_before_us or None
    for partition in landing_partitions(warehouse, model, since_us=since):
        hour = partition_hour_us(partition)
        if _full(tried, rows, max_files, max_rows):
            # not listed: whatever this hour and the later ones hold starts at this hour
            unread.setdefault(None, hour)
            break
        listing = partition_listing(warehouse, partition, skip=mark.seen.get(partition, ()))
        moved = set(quarantine_rejected(warehouse, listing.rejected))
        quarantined += [r for r in listing.rejected if r.path in moved]
        todo = reading_order(listing.files)
        at = 0  # todo[:at] are read (or quarantined)
        while at < len(todo) and not _full(tried, rows, max_files, max_rows):
            # the keys of several files are read at once; those past the bound are dropped
            # unused, with their errors, as if never read
            n = _chunk(len(todo) - at, tried, rows, len(files), max_files, max_rows)
            chunk = [f.path for f in todo[at : at + n]]
            part, failed = read_many_keys(warehouse, chunk)
            errors = {e.path: e for e in failed}
            counts = np.bincount(part["file"].to_numpy(), minlength=len(chunk))
            used = 0
            for path, count in zip(chunk, counts, strict=True):
                if _full(tried, rows, max_files, max_rows):
                    break
                used += 1
                tried += 1
                error = errors.get(path)
                if isinstance(error, FileVanishedError):
                    raise error
                if isinstance(error, CorruptFileError):
                    bad = RejectedFile(path, error.reason)
                    quarantined += [bad] if quarantine_rejected(warehouse, [bad]) else []
                    continue
                files.append(path)
                rows += int(count)
            at += used
            names = pl.Series("file", chunk, pl.String)
            part = part.filter(pl.col("file") < used) if used < len(chunk) else part
            keys.append(part.with_columns(names.gather(part["file"])).select(list(KEY_SCHEMA)))
        for f in todo[at:]:
            unread.setdefault(f.replica, hour)
    if not files:
        return FeedBatch(quarantined=tuple(quarantined), unread=unread)
    return FeedBatch(tuple(files), pl.concat(keys), tuple(quarantined), unread)


def _full(tried: int, rows: int, max_files: int, max_rows: int) -> bool:
    return bool((max_files and tried >= max_files) or (max_rows and rows >= max_rows))


_KEY_CHUNK = 500  # files whose keys one poll reads in one scan, at most


def _chunk(left: int, tried: int, rows: int, read: int, max_files: int, max_rows: int) -> int:
    """How many of the ``left`` files to read next: those the bounds may still take."""
    n = min(left, _KEY_CHUNK)
    if max_files:
        n = min(n, max_files - tried)
    if max_rows:
        # as many as the rows still wanted fill at the rows per file seen so far
        per_file = rows / read if read else 0
        n = min(n, -(-(max_rows - rows) // per_file) if per_file >= 1 else 16)
    return max(1, int(n))


def reading_order(files: Iterable[LandingFile]) -> list[LandingFile]:
    """Landing files in the order a bounded poll reads them: oldest hour first; within an
    hour each replica's in name order (its publication order: the sequence number is
    zero-padded), the replicas taking turns, so the files left unread at any point are the
    last of each replica's."""
    turns = []
    counts: dict[tuple[str, str | None], int] = {}
    for f in sorted(files, key=lambda f: f.path):
        part = f.path.rsplit("/", 1)[0]
        turn = counts[(part, f.replica)] = counts.get((part, f.replica), -1) + 1
        turns.append((part, turn, f.replica or "", f.path, f))
    return [t[-1] for t in sorted(turns, key=lambda t: t[:4])]


def advance(mark: FeedMark, batch: FeedBatch) -> FeedMark:
    """Return ``mark`` with the files of ``batch`` (polled with ``mark``) seen."""
    added: dict[str, set[str]] = {}
    for path in batch.files:
        part, name = path.rsplit("/", 1)
        added.setdefault(part, set()).add(name)
    # only the partitions with new files are copied: a cycle's cost stays with what it read
    seen = dict(mark.seen)
    for part, names in added.items():
        seen[part] = seen.get(part, frozenset()) | names
    return FeedMark(mark.sealed_before_us, seen)


def seal(mark: FeedMark, boundary_us: int) -> FeedMark:
    """Return ``mark`` with every hour before ``boundary_us`` sealed.

    ``boundary_us`` is rounded down to its hour (hours are sealed whole). Sealed partitions
    are dropped from ``seen``; they are never listed again, so their late files are not
    read. A mark already sealed at or past the boundary is returned unchanged (a mark never
    moves back).
    """
    boundary = boundary_us // HOUR_US * HOUR_US
    if boundary <= mark.sealed_before_us:
        return mark
    seen = {p: names for p, names in mark.seen.items() if partition_hour_us(p) >= boundary}
    return FeedMark(boundary, seen)


def release(
    warehouse: Warehouse,
    model: str,
    consumer: str,
    mark: FeedMark,
    holding: Iterable[str] = (),
) -> ProgressMark:
    """Let compaction and retention rewrite the hours ``mark`` has sealed, except the hours
    of the landing files in ``holding``.

    Call it only once ``mark`` is stored durably: a consumer restarting from an older mark
    would list a compacted file of an hour it had read as new, and read its rows twice.

    Parameters
    ----------
    warehouse, model
        Whose landing zone.
    consumer
        The consumer's stable name in the progress marks (``analytics``).
    mark
        The consumer's stored mark.
    holding
        Landing paths the consumer still holds row positions in (keys read, rows not yet
        used); compaction must not rewrite their hours yet.

    Returns
    -------
    ProgressMark
        The progress mark recorded (see :func:`ingest.progress.mark_sealed`).
    """
    return mark_sealed(warehouse, model, consumer, mark.sealed_before_us, pending=holding)
