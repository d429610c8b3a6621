"""Benchmark: what capturing a row costs, and reading the latest window before and after
compaction.

Run with ``uv run python -m bench.landing [--repeats N] [--files-per-hour N]``. Numbers are
medians of the repeats, on a fresh temporary warehouse.

Capture: requests of 1 and 32 rows of the 30-feature breast-cancer schema go through the
path serving runs, in one process: ``Spool.put_block`` per request (the request path's copy
into shared memory), then the flusher's part: ``Spool.take`` and ``run_to_batch`` (one
Arrow batch of every request taken) and ``LandingWriter.flush`` of one landing file of
about 5,000 or 50,000 rows (the default FLUSH_ROWS) with the default settings.

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

from ingest import Warehouse
from ingest.capture import LandingWriter
from ingest.capture._blocks import run_to_batch
from ingest.capture._spool import Spool
from ingest.maintain import CompactionPolicy, compact
from ingest.reader import RowSelection, list_landing, read_keys, read_rows, scan_landing
from ingest.reference import load_reference
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


def bench_write(schema, base: Path, repeats: int) -> list[str]:
    """The capture path as serving runs it, without the processes: the request path's copy
    into the spool, then the flusher's take, Arrow build and flush of one landing file."""
    rng = np.random.default_rng(0)
    n_features = len(schema.features)
    lines = []
    for rows, flush_rows in ((1, 5000), (1, 50_000), (32, 4992), (32, 49_984)):
        requests = flush_rows // rows
        x, prediction, score = rng.normal(size=(rows, n_features)), np.zeros(rows), np.ones(rows)
        ids = [uuid.uuid4().hex for _ in range(requests)]
        ring = Spool.create((flush_rows + 1000) * (8 * n_features + 120))
        ts_us = int(START.timestamp() * 1e6)
        puts, takes, flushes = [], [], []
        for r in range(repeats):
            writer = LandingWriter(Warehouse(base / f"write-{rows}-{flush_rows}-{r}"), schema, "r1")
            t = time.perf_counter()
            for i, rid in enumerate(ids):
                ring.put_block(ts_us + i, rid, x, prediction, score, "v1")
            puts.append((time.perf_counter() - t) / requests)
            t = time.perf_counter()
            runs = ring.take(n_features)
            batches = [run_to_batch(run, writer.arrow_schema, "r1") for run in runs]
            takes.append(time.perf_counter() - t)
            writer.extend_checked(batches)
            t = time.perf_counter()
            writer.flush()
            flushes.append(time.perf_counter() - t)
        put, take, flush = (statistics.median(v) for v in (puts, takes, flushes))
        n = requests * rows
        lines.append(
            f"| {rows} | {n:,} | {put * 1e6:.1f} | {take / n * 1e6:.2f} | {flush * 1e3:.1f} | "
            f"{flush / n * 1e6:.2f} | {(put * requests + take + flush) / n * 1e6:.2f} |"
        )
        ring.close()
    return lines


def fill(wh: Warehouse, schema, files_per_hour: int, rows_per_file: int) -> int:
    rng = np.random.default_rng(1)
    step = timedelta(seconds=3600 / files_per_hour)
    total = 0
    for replica in ("r1", "r2"):
        writer = LandingWriter(wh, schema, replica, flush_rows=10**9, flush_interval=3600)
        for i in range(2 * files_per_hour):
            writer.extend_checked(
                [make_batch(schema, rows_per_file, START + step * i, replica, rng)]
            )
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
    parser.add_argument("--files-per-hour", type=int, default=600)
    parser.add_argument("--window", type=int, default=10_000)
    args = parser.parse_args(argv)
    schema = load_reference(ROOT / "reference.parquet", MODEL).schema
    base = Path(tempfile.mkdtemp(prefix="bench-landing-"))
    try:
        print(f"## capture cost (median of {args.repeats}; {len(schema.features)} features)")
        print(
            "| rows/request | rows/file | request path µs/request | take + Arrow µs/row "
            "| flush ms/file | flush µs/row | total µs/row |"
        )
        print("|---|---|---|---|---|---|---|")
        print("\n".join(bench_write(schema, base, args.repeats)))
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
