"""The analytics checkpoint: what has been read and tested, written atomically after results."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import polars as pl

from analytics.windows import KEY_SCHEMA, empty_keys
from ingest import CheckpointError, Warehouse
from ingest.feed import FeedMark
from ingest.paths import state_path

VERSION = 1
NAME = "checkpoint.json"


@dataclass
class Checkpoint:
    """Driver state between cycles.

    ``feed`` is the landing feed's mark (the hours sealed, the files read from open ones);
    ``pending`` holds the keys of rows read but not yet in a closed window.
    """

    next_window_id: int = 0
    cursor: tuple[int, str] | None = None
    feed: FeedMark = field(default_factory=FeedMark)
    replica_high_us: dict[str, int] = field(default_factory=dict)
    pending: pl.DataFrame = field(default_factory=empty_keys)
    windows_total: int = 0
    drifted_windows_total: int = 0
    rows_tested_total: int = 0
    late_rows_total: int = 0
    last_drift_us: int | None = None
    quarantined_total: int = 0

    def to_bytes(self, owner: str | None = None) -> bytes:
        """The checkpoint as JSON; ``owner`` names the driver that wrote it (see
        :func:`claim_checkpoint`)."""
        body = {
            "version": VERSION,
            "next_window_id": self.next_window_id,
            "cursor": list(self.cursor) if self.cursor else None,
            **self.feed.to_json(),  # "seen", "sealed_before_us" at the top level: version 1
            "replica_high_us": self.replica_high_us,
            "pending": self.pending.to_dict(as_series=False),
            "windows_total": self.windows_total,
            "drifted_windows_total": self.drifted_windows_total,
            "rows_tested_total": self.rows_tested_total,
            "late_rows_total": self.late_rows_total,
            "last_drift_us": self.last_drift_us,
            "quarantined_total": self.quarantined_total,
        }
        if owner is not None:
            body["owner"] = owner
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        try:
            body = json.loads(data)
            if body.get("version") != VERSION:
                raise CheckpointError(
                    f"checkpoint version {body.get('version')!r} is not {VERSION}: "
                    "run a backfill to rebuild the history, or remove the checkpoint"
                )
            return cls(
                next_window_id=body["next_window_id"],
                cursor=tuple(body["cursor"]) if body["cursor"] else None,
                feed=FeedMark.from_json(body),
                replica_high_us=body["replica_high_us"],
                pending=pl.DataFrame(body["pending"], schema=KEY_SCHEMA),
                windows_total=body["windows_total"],
                drifted_windows_total=body["drifted_windows_total"],
                rows_tested_total=body["rows_tested_total"],
                late_rows_total=body["late_rows_total"],
                last_drift_us=body["last_drift_us"],
                quarantined_total=body["quarantined_total"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"checkpoint is unreadable: {exc}") from exc


def load_checkpoint(warehouse: Warehouse, model: str) -> Checkpoint:
    """Return the model's checkpoint, or a fresh one if none was written yet."""
    data = warehouse.read_bytes(state_path(model, NAME))
    return Checkpoint() if data is None else Checkpoint.from_bytes(data)


def claim_checkpoint(warehouse: Warehouse, model: str, owner: str) -> tuple[Checkpoint, str]:
    """Load the model's checkpoint and make ``owner`` its only writer; return it and its
    version for :func:`save_checkpoint`.

    The claim rewrites the checkpoint with ``owner`` in it, conditional on the version just
    read, so a driver that claimed it earlier finds it changed at its next save and stops:
    of two drivers of one model, only the latest to start advances the history.
    """
    rel = state_path(model, NAME)
    found = warehouse.read_versioned(rel)
    checkpoint = Checkpoint() if found is None else Checkpoint.from_bytes(found[0])
    version = warehouse.put_if(rel, checkpoint.to_bytes(owner), None if found is None else found[1])
    if version is None:
        raise CheckpointError(
            f"another analytics driver of model {model!r} claimed its checkpoint at the same "
            "moment: run one driver per model"
        )
    return checkpoint, version


def save_checkpoint(
    warehouse: Warehouse, model: str, checkpoint: Checkpoint, owner: str, match: str
) -> str:
    """Replace the model's checkpoint if it is still at version ``match``; return the new
    version.

    Raises
    ------
    CheckpointError
        If another driver claimed the checkpoint since (this driver must stop).
    """
    version = warehouse.put_if(state_path(model, NAME), checkpoint.to_bytes(owner), match)
    if version is None:
        raise CheckpointError(
            f"another analytics driver of model {model!r} took over its checkpoint: this one "
            "stops (run one driver per model)"
        )
    return version
