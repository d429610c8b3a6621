"""Benchmark: landing write cost per request batch, and reading the latest window before and
after compaction.

Run with ``uv run python -m bench.landing [--repeats N] [--files-per-hour N]``. Numbers are
medians of the repeats, on a fresh temporary warehouse.

Write: a LandingWriter (zstd-1) gets request batches of 1 and 32 rows of the 30-feature
breast-cancer schema; ``append`` is timed per batch (the request path), ``flush`` per file
of FLUSH_ROWS rows (the flusher thread), and the total is amortized per batch.

Read: two replicas land ``--files-per-hour`` small files each per hour for two hours (a flush
every few seconds); "the latest window" is the last ``--window`` rows (by ``ts``) of the last
hour. Timed the way the analytics job reads (list the hour, read keys of every file, cut the
window, read its rows) and the way a notebook does (``scan_landing`` with a ``ts`` filter),
plus a full scan of both hours; then again after ``compact``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from ingest import (
    CompactionPolicy,
    LandingWriter,
    RowSelection,
    Warehouse,
    compact,
    list_landing,
    load_reference,
    read_keys,
    read_rows,
    scan_landing,
)
from ingest.schema import TS_TYPE

ROOT = Path(__file__).resolve().parents[1]
MODEL = "breast_cancer"
START = datetime(2026, 1, 1, 10, tzinfo=UTC)


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def make_batch(schema, rows: int, ts: datetime, replica: str, rng) -> pa.RecordBatch:
    names = schema.feature_names
    x = rng.normal(size=(rows, len(names)))
    arrays = [
        pa.array([ts + timedelta(microseconds=i) for i in range(rows)], TS_TYPE),
        pa.array([f"{uuid.uuid4().hex}-{i}" for i in range(rows)]),
        pa.array([replica] * rows),
        pa.array(["v1"] * rows),
        *[pa.array(x[:, j]) for j in range(len(names))],
        pa.array(rng.integers(0, 2, rows).astype(float)),
        pa.array(rng.random(rows)),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema.arrow_schema())


def bench_write(schema, base: Path, repeats: int, flush_rows: int) -> list[str]:
    rng = np.random.default_rng(0)
    lines = []
    for rows in (1, 32):
        per_file = max(1, flush_rows // rows)
        batches = [make_batch(schema, rows, START, "r1", rng) for _ in range(per_file)]
        appends, flushes = [], []
        for r in range(repeats):
            wh = Warehouse(base / f"write-{rows}-{r}")
            writer = LandingWriter(wh, schema, "r1", flush_rows=10**9, flush_interval=3600)
            t = time.perf_counter()
            for b in batches:
                writer.append(b)
            appends.append((time.perf_counter() - t) / per_file)
            t = time.perf_counter()
            writer.flush()
            flushes.append(time.perf_counter() - t)
        append, flush = statistics.median(appends), statistics.median(flushes)
        total = append + flush / per_file
        lines.append(
            f"| {rows} | {per_file * rows} | {append * 1e6:.1f} | {flush * 1e3:.1f} | "
            f"{total * 1e6:.1f} | {total / rows * 1e6:.2f} |"
        )
    return lines


def fill(wh: Warehouse, schema, files_per_hour: int, rows_per_file: int) -> int:
    rng = np.random.default_rng(1)
    step = timedelta(seconds=3600 / files_per_hour)
    total = 0
    for replica in ("r1", "r2"):
        writer = LandingWriter(wh, schema, replica, flush_rows=10**9, flush_interval=3600)
        for i in range(2 * files_per_hour):
            writer.append(make_batch(schema, rows_per_file, START + step * i, replica, rng))
            writer.flush()
            total += rows_per_file
        writer.close()
    return total


def latest_window_analytics(wh: Warehouse, window: int, columns) -> int:
    """List the last hour, read every file's keys, cut the last window, read its rows."""
    files = list_landing(wh, MODEL, since_us=int((START + timedelta(hours=1)).timestamp() * 1e6))
    keys = pl.concat([read_keys(wh, f.path).with_columns(file=pl.lit(f.path)) for f in files])
    last = keys.sort("ts", "request_id").tail(window)
    grouped = last.group_by("file", maintain_order=True).agg(pl.col("row"))
    pairs = zip(grouped["file"], grouped["row"], strict=True)
    selections = [RowSelection(p, tuple(r)) for p, r in pairs]
    return read_rows(wh, selections, columns).height


def latest_window_notebook(wh: Warehouse, cutoff: datetime) -> int:
    return scan_landing(wh, MODEL).filter(pl.col("ts") >= cutoff).collect().height


def bench_read(schema, base: Path, repeats: int, files_per_hour: int, window: int) -> list[str]:
    wh = Warehouse(base / "read")
    rows_per_file = 300
    total = fill(wh, schema, files_per_hour, rows_per_file)
    # the last `window` rows of both replicas: they write in lockstep
    per_replica = window // 2
    cutoff = (
        START
        + timedelta(hours=2)
        - timedelta(seconds=3600 / files_per_hour * per_replica / rows_per_file)
    )
    columns = schema.feature_names
    cases = {
        "latest window, analytics path (list + keys + rows)": lambda: latest_window_analytics(
            wh, window, columns
        ),
        "latest window, scan_landing + ts filter": lambda: latest_window_notebook(wh, cutoff),
        "full scan of 2 hours (all columns)": lambda: scan_landing(wh, MODEL).collect().height,
    }
    before = {name: median_time(fn, repeats) for name, fn in cases.items()}
    files_before = len(list_landing(wh, MODEL))
    t = time.perf_counter()
    policy = CompactionPolicy(grace_seconds=0, delete_after_seconds=0, target_file_rows=5_000_000)
    compact(wh, MODEL, policy, force=True)
    compact_seconds = time.perf_counter() - t
    files_after = len(list_landing(wh, MODEL))
    after = {name: median_time(fn, repeats) for name, fn in cases.items()}
    lines = [
        f"| files | {files_before} | {files_after} |",
        f"| rows | {total} | {total} |",
    ]
    for name in cases:
        lines.append(f"| {name} | {before[name] * 1e3:.1f} ms | {after[name] * 1e3:.1f} ms |")
    lines.append(f"| compaction of the 2 hours | - | {compact_seconds:.2f} s |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.landing", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--flush-rows", type=int, default=5000)
    parser.add_argument("--files-per-hour", type=int, default=600)
    parser.add_argument("--window", type=int, default=10_000)
    args = parser.parse_args(argv)
    schema = load_reference(ROOT / "reference.parquet", MODEL).schema
    base = Path(tempfile.mkdtemp(prefix="bench-landing-"))
    try:
        print(f"## write cost (median of {args.repeats}; {len(schema.features)} features)")
        print("| rows/batch | rows/file | append µs/batch | flush ms/file | µs/batch | µs/row |")
        print("|---|---|---|---|---|---|")
        print("\n".join(bench_write(schema, base, args.repeats, args.flush_rows)))
        print()
        print(
            f"## read of the latest window ({args.window} rows), 2 replicas x 2 hours x "
            f"{args.files_per_hour} files/hour (median of {args.repeats})"
        )
        print("| | before compaction | after compaction |")
        print("|---|---|---|")
        print("\n".join(bench_read(schema, base, args.repeats, args.files_per_hour, args.window)))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
