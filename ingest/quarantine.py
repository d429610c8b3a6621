"""Quarantine: unreadable or foreign landing files are moved aside, with the reason, never
deleted."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ingest import paths
from ingest.errors import ConfigError, FileVanishedError, LandingError
from ingest.storage import Warehouse

if TYPE_CHECKING:
    from ingest.manifest import RejectedFile

log = logging.getLogger("driftlake.ingest.quarantine")
QUARANTINE = "quarantine"


def quarantine(warehouse: Warehouse, path: str, reason: str) -> str:
    """Move a landing file to ``quarantine/`` (same relative path) and record why.

    Returns the new relative path. The reason sits beside it as ``<file>.reason.json``; a
    file of the same path quarantined before is kept (the new one gets a suffix).

    Raises
    ------
    FileVanishedError
        If the file is already gone (a concurrent compaction or quarantine moved it).
    ConfigError
        If ``path`` is not a file under ``landing/``.
    LandingError
        If the file cannot be moved.
    """
    rel = path.removeprefix(paths.LANDING + "/")
    if rel == path or ".." in rel.split("/"):
        raise ConfigError(f"{path!r} is not a landing file: only files under landing/ move")
    dest = f"{QUARANTINE}/{rel}"
    if warehouse.stat(dest) is not None:  # the same name quarantined before: keep both
        dest = f"{dest}.{uuid.uuid4().hex[:8]}"
    try:
        warehouse.move(path, dest)
    except LandingError:
        if warehouse.stat(path) is None:
            raise FileVanishedError(path) from None
        raise
    note = {"source": path, "reason": reason, "quarantined_at": time.time()}
    warehouse.write_bytes(dest + ".reason.json", json.dumps(note).encode())
    log.error(
        "event=file_quarantined path=%s dest=%s reason=%s",
        _one_line(path),
        _one_line(dest),
        _one_line(reason),
    )
    return dest


def quarantine_rejected(warehouse: Warehouse, rejected: Iterable[RejectedFile]) -> list[str]:
    """Quarantine the files a listing rejected; return the landing paths actually moved.

    A file that is gone by now (another process quarantined it, or a compaction deleted it)
    is skipped: it is no longer in the landing zone either way.
    """
    moved = []
    for r in rejected:
        try:
            quarantine(warehouse, r.path, r.reason)
        except FileVanishedError:
            log.info("event=quarantine_skipped path=%s reason=file_gone", _one_line(r.path))
            continue
        moved.append(r.path)
    return moved


def list_quarantined(warehouse: Warehouse) -> list[str]:
    """List quarantined files (relative paths), without their reason notes."""
    return [
        f.path
        for f in warehouse.list_files(QUARANTINE, suffix="")
        if not f.path.endswith(".reason.json")
    ]


def _one_line(text: str) -> str:
    # names and parser messages may hold newlines; a log event stays one line
    return text.encode("unicode_escape").decode("ascii")
