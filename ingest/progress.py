"""Consumer progress: the hour below which a reader will never read landing files again.

A reader that tracks landing files by name (the analytics driver) records here how far it
has finished; a batch reader (a backfill) holds a mark while it runs. Compaction and
retention only touch hours below the smallest live mark, so no reader ever finds a file it
planned to read rewritten under it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ingest import paths
from ingest.errors import LandingError
from ingest.storage import Warehouse

log = logging.getLogger("driftlake.ingest.progress")
HOUR_US = 3_600_000_000


@dataclass(frozen=True)
class ProgressMark:
    """One consumer's mark: it reads no landing file of an hour starting before ``before_us``.

    ``expires_at`` (epoch seconds) ends a batch reader's hold if it crashed without
    releasing it; a live consumer's mark never expires.
    """

    consumer: str
    before_us: int
    updated_at: float
    expires_at: float | None = None


def mark_sealed(
    warehouse: Warehouse,
    model: str,
    consumer: str,
    before_us: int,
    pending: Iterable[str] = (),
    ttl: float | None = None,
) -> ProgressMark:
    """Record that ``consumer`` will read no landing file of ``model`` from hours before
    ``before_us`` again, except the files named in ``pending``.

    Parameters
    ----------
    warehouse, model
        Whose landing zone.
    consumer
        A stable name of the reader (``analytics``, ``backfill-<name>``).
    before_us
        The hour boundary (µs since epoch) below which the reader is done listing.
    pending
        Landing paths the reader still holds row positions in (rows read but not yet
        processed); the mark is lowered to the hour of the oldest of them.
    ttl
        Seconds after which the mark no longer holds compaction back (None: never).
    """
    hours = [paths.partition_hour_us(p) for p in set(pending)]
    mark = ProgressMark(
        consumer=consumer,
        before_us=min([before_us, *hours]) // HOUR_US * HOUR_US,
        updated_at=time.time(),
        expires_at=None if ttl is None else time.time() + ttl,
    )
    warehouse.write_bytes(paths.progress_path(model, consumer), _encode(mark))
    return mark


def _encode(mark: ProgressMark) -> bytes:
    body = {
        "consumer": mark.consumer,
        "before_us": mark.before_us,
        "updated_at": mark.updated_at,
        "expires_at": mark.expires_at,
    }
    return json.dumps(body).encode()


def _decode(data: bytes, rel: str) -> ProgressMark:
    try:
        body = json.loads(data)
        return ProgressMark(
            body["consumer"], int(body["before_us"]), body["updated_at"], body["expires_at"]
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise LandingError(
            f"progress mark {rel} is unreadable ({exc}): delete it, and the consumer "
            "writes it again on its next cycle"
        ) from exc


def clear_mark(warehouse: Warehouse, model: str, consumer: str) -> None:
    """Remove ``consumer``'s mark (it no longer holds compaction or retention back)."""
    warehouse.delete(paths.progress_path(model, consumer))


def list_marks(warehouse: Warehouse, model: str) -> list[ProgressMark]:
    """Return every consumer's mark for ``model``, expired ones included."""
    out = []
    base = f"{paths.STATE}/model={paths.check_name('model', model)}"
    for f in warehouse.list_files(base, suffix=".json"):
        name = f.path.rsplit("/", 1)[1]
        if not name.startswith("progress-"):
            continue
        data = warehouse.read_bytes(f.path)
        if data is not None:  # else cleared between listing and reading
            out.append(_decode(data, f.path))
    return out


def sealed_before(warehouse: Warehouse, model: str, now: float | None = None) -> int | None:
    """Return the hour boundary below which every live consumer is done, or None if no
    consumer has a mark (then nothing is safe to rewrite without ``force``)."""
    now = time.time() if now is None else now
    live = [
        m.before_us
        for m in list_marks(warehouse, model)
        if m.expires_at is None or m.expires_at > now
    ]
    return min(live) if live else None


@contextmanager
def hold(
    warehouse: Warehouse, model: str, consumer: str, from_us: int, ttl: float = 6 * 3600.0
) -> Iterator[ProgressMark]:
    """Keep compaction and retention away from hours at or after ``from_us`` while the block
    runs (for a batch reader such as a backfill); the hold lapses after ``ttl`` seconds if the
    process dies without leaving the block.

    Raises
    ------
    LandingError
        If another run under the same ``consumer`` name holds a live mark (two backfills of
        one name would write one history): the mark is created only if absent, or replaced
        only if expired and unchanged since read.
    """
    rel = paths.progress_path(model, consumer)
    now = time.time()
    mark = ProgressMark(consumer, from_us // HOUR_US * HOUR_US, now, now + ttl)
    if not warehouse.try_create(rel, _encode(mark)):
        found = warehouse.read_versioned(rel)
        held = None if found is None else _decode(found[0], rel)
        if held is not None and (held.expires_at is None or held.expires_at > now):
            raise LandingError(
                f"{consumer} of model {model!r} is running already (its mark {rel} holds until "
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(held.expires_at or now))}):"
                " wait for it to end, or choose another name"
            )
        if warehouse.put_if(rel, _encode(mark), None if found is None else found[1]) is None:
            raise LandingError(f"another {consumer} of model {model!r} started at the same time")
    log.info("event=progress_hold consumer=%s model=%s from_us=%d", consumer, model, from_us)
    try:
        yield mark
    finally:
        clear_mark(warehouse, model, consumer)
