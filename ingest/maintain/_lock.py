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
    acquired = warehouse.try_create(rel, json.dumps(owner).encode())
    if not acquired:
        held = warehouse.stat(rel)
        if held is not None and time.time() - held.mtime_ns / 1e9 > ttl:
            log.warning("event=maintenance_lock_broken model=%s age_over_seconds=%.0f", model, ttl)
            warehouse.delete(rel)
            acquired = warehouse.try_create(rel, json.dumps(owner).encode())
    if not acquired:
        log.info("event=maintenance_skipped model=%s reason=another run holds %s", model, rel)
    try:
        yield acquired
    finally:
        if acquired:
            warehouse.delete(rel)
