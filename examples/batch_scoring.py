"""A user's batch job: score a Parquet file of customers with the churn model and capture
every row (its id from the file) into driftlake's landing zone.

    uv run python examples/batch_scoring.py customers.parquet --id-column customer_id \
        --warehouse s3://bucket/warehouse

Every ``DRIFTLAKE_*`` setting of the capture library is a flag too (``-h`` lists them); the
model name defaults to ``churn_api`` and the features to the churn model's. Bad input (no
such file, not Parquet, a missing column, a value of the wrong kind) stops it with a
message and exit status 2 before anything is captured.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import ValidationError

if __package__ in (None, ""):  # run as a script: make ``examples`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from driftlake import DriftlakeError, Monitor, MonitorSettings
from examples import churn_model
from ingest.settings_cli import add_settings_flags, describe_validation_error, settings_from_args

PROG = "examples/batch_scoring.py"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The job's own arguments, and one flag per capture setting."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Score a Parquet file of customers and capture every row into the "
        "landing zone. Each capture setting is a flag and a DRIFTLAKE_<NAME> variable.",
    )
    parser.add_argument("input", type=Path, help="Parquet file with the churn model's columns")
    parser.add_argument(
        "--id-column",
        default=None,
        help="column holding each row's id, landed as its request_id (default: generated ids)",
    )
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=10_000,
        help="rows scored and captured at a time (default: 10000)",
    )
    add_settings_flags(parser, MonitorSettings)
    return parser.parse_args(argv)


def settings_for(args: argparse.Namespace) -> MonitorSettings:
    """The capture settings: flags, then variables, then this job's defaults."""
    os.environ.setdefault("DRIFTLAKE_MODEL_NAME", "churn_api")
    given = vars(args)
    if not any(k in given for k in ("features", "reference_path")) and not any(
        os.environ.get(v) for v in ("DRIFTLAKE_FEATURES", "DRIFTLAKE_REFERENCE_PATH")
    ):
        os.environ["DRIFTLAKE_FEATURES"] = json.dumps(churn_model.FEATURES)
    return settings_from_args(MonitorSettings, args)


def read_input(path: Path, id_column: str | None) -> pa.Table:
    """The file's rows; ValueError naming the problem if it cannot be scored."""
    if not path.is_file():
        raise ValueError(f"input {path} is not a file")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"cannot read {path} as Parquet: {exc}") from None
    needed = [*churn_model.FEATURES, *([id_column] if id_column else [])]
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; it has {table.column_names}")
    # checked whole before any row is captured, so that bad input lands nothing
    for name, kind in churn_model.FEATURES.items():
        column = table[name]
        t = column.type
        numeric = pa.types.is_integer(t) or pa.types.is_floating(t)
        if kind == "numeric" and not numeric:
            raise ValueError(f"column {name!r} of {path} must hold numbers, not {t}")
        if kind == "categorical" and not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            raise ValueError(f"column {name!r} of {path} must hold strings, not {t}")
        bad = pc.invert(pc.is_finite(column)) if kind == "numeric" else pc.is_null(column)
        if column.null_count or pc.any(bad).as_py():
            row = pc.index(pc.or_kleene(pc.is_null(column), bad), True).as_py()
            raise ValueError(f"column {name!r} of {path}, row {row}: a null or not finite value")
    if id_column and table[id_column].null_count:
        raise ValueError(f"column {id_column!r} of {path} has nulls; every row needs an id")
    return table


def score_and_capture(
    monitor: Monitor, table: pa.Table, id_column: str | None, chunk_rows: int
) -> int:
    """Score ``table`` in chunks and capture each; return the rows captured."""
    model = churn_model.train(churn_model.generate(2000, seed=0))
    columns = list(churn_model.FEATURES)
    captured = 0
    for batch in table.to_batches(max_chunksize=chunk_rows):
        # the model's inputs: its columns, as pandas (nulls would fail the model here)
        x = batch.select(columns).to_pandas()
        probability = model.predict_proba(x)[:, 1]
        ids = None if id_column is None else batch.column(id_column).cast(pa.string())
        captured += len(monitor.capture(batch, (probability >= 0.5), probability, ids))
    return captured


def main(argv: list[str] | None = None) -> int:
    """Run the job; 0 when every row was captured and published, 2 on bad input."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    try:
        settings = settings_for(args)
        table = read_input(args.input, args.id_column)
        if args.chunk_rows <= 0:
            raise ValueError(f"--chunk-rows must be positive, not {args.chunk_rows}")
        with Monitor.from_settings(settings) as monitor:
            captured = score_and_capture(monitor, table, args.id_column, args.chunk_rows)
        stats = monitor.stats()
    except ValidationError as exc:
        return _fail(f"invalid settings: {describe_validation_error(exc)}")
    except (ValueError, DriftlakeError) as exc:
        return _fail(str(exc))
    summary = {
        "rows": table.num_rows,
        "captured": captured,
        "published": stats.flushed_rows,
        "dropped": stats.dropped_rows,
        "model": settings.model_name,
        "warehouse": settings.warehouse,
    }
    print(json.dumps(summary))
    return 0 if stats.flushed_rows == table.num_rows else 1


def _fail(message: str) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
