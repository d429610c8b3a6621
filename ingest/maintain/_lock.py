"""The per-model maintenance lock: one compaction or retention run of a model at a time."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ingest import paths
from ingest.storage import Warehouse

log = logging.getLogger("driftlake.ingest.maintain._lock")


@contextmanager
def maintenance_lock(warehouse: Warehouse, model: str, ttl: float = 3600.0) -> Iterator[bool]:
    """Hold ``model``'s maintenance lock for the block; yields False if another run holds it.

    A lock older than ``ttl`` seconds is taken to be left by a crashed run and is broken.
    """
    rel = paths.compaction_lock_path(model)
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
    body = json.dumps(owner).encode()
    acquired = warehouse.try_create(rel, body)
    if not acquired:
        held = warehouse.read_versioned(rel)
        if held is None:  # released since
            acquired = warehouse.try_create(rel, body)
        elif time.time() - _since(held[0]) > ttl:
            # replaced only if still the stale holder's: of two runs breaking it, one wins
            acquired = warehouse.put_if(rel, body, held[1]) is not None
            if acquired:
                log.warning(
                    "event=maintenance_lock_broken model=%s age_over_seconds=%.0f", model, ttl
                )
    if not acquired:
        log.info("event=maintenance_skipped model=%s reason=another run holds %s", model, rel)
    try:
        yield acquired
    finally:
        if acquired:
            warehouse.delete(rel)


def _since(body: bytes) -> float:
    """When the holder took the lock (0 for an unreadable lock: it is broken)."""
    try:
        return float(json.loads(body)["since"])
    except (ValueError, KeyError, TypeError):
        return 0.0
