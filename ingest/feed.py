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

Exactly once: a file is in a batch until a mark that contains it is stored, so a crash before
that reads it again and a crash after never does; :func:`release` lets compaction rewrite only
hours that a stored mark has sealed, so a file is never replaced by a compacted one while a
mark could still list it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ingest.errors import CorruptFileError
from ingest.listing import landing_listing
from ingest.manifest import RejectedFile
from ingest.paths import partition_hour_us
from ingest.progress import HOUR_US, ProgressMark, mark_sealed
from ingest.quarantine import quarantine_rejected
from ingest.reader import read_keys
from ingest.storage import Warehouse

__all__ = [
    "KEY_SCHEMA",
    "FeedBatch",
    "FeedMark",
    "advance",
    "file_keys",
    "poll",
    "release",
    "seal",
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

    ``files`` are the new landing paths read, in path order; ``keys`` are their rows'
    planning keys (columns of :data:`KEY_SCHEMA`, files in that order, rows in file order);
    ``quarantined`` are the files this poll moved to ``quarantine/`` with the reason: files
    that could not be read, and files of a listed hour whose name fits no landing pattern.
    """

    files: tuple[str, ...] = ()
    keys: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=KEY_SCHEMA))
    quarantined: tuple[RejectedFile, ...] = ()


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


def poll(warehouse: Warehouse, model: str, mark: FeedMark) -> FeedBatch:
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

    Returns
    -------
    FeedBatch
        The new files, their keys, and the files quarantined.

    Raises
    ------
    FileVanishedError
        If a listed file is gone before it is read (poll again).
    """
    listing = landing_listing(warehouse, model, since_us=mark.sealed_before_us or None)
    moved = set(quarantine_rejected(warehouse, listing.rejected))
    quarantined = [r for r in listing.rejected if r.path in moved]
    files, keys = [], []
    for f in listing.files:
        part, name = f.path.rsplit("/", 1)
        if name in mark.seen.get(part, ()):
            continue
        try:
            keys.append(file_keys(warehouse, f.path))
        except CorruptFileError as exc:
            bad = RejectedFile(f.path, exc.reason)
            quarantined += [bad] if quarantine_rejected(warehouse, [bad]) else []
            continue
        files.append(f.path)
    if not keys:
        return FeedBatch(quarantined=tuple(quarantined))
    return FeedBatch(tuple(files), pl.concat(keys), tuple(quarantined))


def advance(mark: FeedMark, batch: FeedBatch) -> FeedMark:
    """Return ``mark`` with the files of ``batch`` (polled with ``mark``) seen."""
    seen = {part: set(names) for part, names in mark.seen.items()}
    for path in batch.files:
        part, name = path.rsplit("/", 1)
        seen.setdefault(part, set()).add(name)
    return FeedMark(mark.sealed_before_us, {k: frozenset(v) for k, v in seen.items()})


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
