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

    def to_bytes(self) -> bytes:
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


def save_checkpoint(warehouse: Warehouse, model: str, checkpoint: Checkpoint) -> None:
    """Replace the model's checkpoint atomically (temp file, fsync, rename)."""
    warehouse.write_bytes(state_path(model, NAME), checkpoint.to_bytes())
