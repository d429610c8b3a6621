"""A warehouse's state, read with the product's own readers and written to local files.

Run inside a network host that reaches the S3 server (``net.run(host, argv)``): the caller
sits in the root namespace and cannot, so this process reads the s3:// warehouse and leaves
Parquet and JSON behind; :meth:`Snapshot.load` reads them back anywhere.

    python -m harness._multihost_snapshot s3://bucket/wh OUT_DIR [--backfill NAME]

Needs the AWS_* variables that point at the S3 server, and the repository on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from analytics import load_checkpoint, read_history
from harness import MODEL
from ingest import Warehouse
from ingest.paths import backfill_root, drift_dir
from ingest.reader import read_landing

_LANDING, _HISTORY, _BACKFILL, _STATE = (
    "landing.parquet",
    "history.parquet",
    "backfill.parquet",
    "state.json",
)


@dataclass(frozen=True)
class Snapshot:
    """What :func:`take` read: every landing row, the live drift history, a backfill's
    history (empty if none was named), the history objects' keys and the checkpoint."""

    landing: pl.DataFrame
    history: pl.DataFrame
    backfill: pl.DataFrame
    history_files: list[str]
    checkpoint: dict[str, Any]

    @classmethod
    def load(cls, out: Path) -> Snapshot:
        state = json.loads((out / _STATE).read_text())
        backfill = out / _BACKFILL
        return cls(
            landing=pl.read_parquet(out / _LANDING),
            history=pl.read_parquet(out / _HISTORY),
            backfill=pl.read_parquet(backfill) if backfill.exists() else pl.DataFrame(),
            history_files=state["history_files"],
            checkpoint=state["checkpoint"],
        )


def take(url: str, out: Path, backfill: str | None = None, model: str = MODEL) -> None:
    """Read ``url``'s landing rows, histories and checkpoint of ``model`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    wh = Warehouse(url)
    read_landing(wh, model).write_parquet(out / _LANDING)
    read_history(wh, model).write_parquet(out / _HISTORY)
    if backfill:
        read_history(wh, model, root=backfill_root(backfill)).write_parquet(out / _BACKFILL)
    cp = load_checkpoint(wh, model)
    state = {
        "history_files": [f.path for f in wh.list_files(drift_dir(model))],
        "checkpoint": {
            "next_window_id": cp.next_window_id,
            "windows_total": cp.windows_total,
            "rows_tested_total": cp.rows_tested_total,
            "late_rows_total": cp.late_rows_total,
            "pending_rows": cp.pending.height,
            "quarantined_total": cp.quarantined_total,
        },
    }
    (out / _STATE).write_text(json.dumps(state, indent=1))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m harness._multihost_snapshot")
    p.add_argument("warehouse")
    p.add_argument("out", type=Path)
    p.add_argument("--backfill", default=None, help="also read this backfill's history")
    args = p.parse_args(argv)
    take(args.warehouse, args.out, args.backfill)


if __name__ == "__main__":
    main()
