"""Quarantine: unreadable landing files are moved aside, with the reason, never deleted."""

from __future__ import annotations

import json
import logging
import time

from ingest import paths
from ingest.storage import Warehouse

log = logging.getLogger("driftlake.ingest.quarantine")
QUARANTINE = "quarantine"


def quarantine(warehouse: Warehouse, path: str, reason: str) -> str:
    """Move a landing file to ``quarantine/`` (same relative path) and record why.

    Returns the new relative path. The reason sits beside it as ``<file>.reason.json``.
    """
    rel = path.removeprefix(paths.LANDING + "/")
    dest = f"{QUARANTINE}/{rel}"
    warehouse.move(path, dest)
    note = {"source": path, "reason": reason, "quarantined_at": time.time()}
    warehouse.write_bytes(dest + ".reason.json", json.dumps(note).encode())
    log.error("event=file_quarantined path=%s dest=%s reason=%s", path, dest, reason)
    return dest


def list_quarantined(warehouse: Warehouse) -> list[str]:
    """List quarantined files (relative paths), without their reason notes."""
    return [f.path for f in warehouse.list_files(QUARANTINE, suffix=".parquet")]
