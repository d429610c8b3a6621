"""Benchmark: CPU per landing file of reading window rows and planning keys, file by file
against one scan of many files, on local disk and on S3 (moto's server on loopback).

Run with ``uv run --frozen python -m bench.reading [--files N] [--rounds N] [--no-s3]``. It
runs with ``POLARS_MAX_THREADS=1``, as a Dask worker does (it restarts itself with it).

The landing zone is ``bench.analytics``'s (held-out rows, files of 1,000 rows); the same files,
byte for byte, are PUT into a bucket. Each round reads all ``--files`` files with every way,
in turn, and the table gives per file the median over rounds of this process's CPU time (all
its threads), wall time and, on S3, the GETs moto answered and moto's CPU time:

- window rows (the profile's 31 numeric columns): file by file, as the readers did before one scan
  before (pyarrow's default ``use_threads=True``, ``pl.from_arrow`` per file, an object
  store's files 8 at a time), file by file without pyarrow's threads (what ``read_many``
  falls back to on a failure), and ``read_many`` (one scan; also with Polars' own footer
  read size, which on S3 takes a GET for a file's footer and one for its columns);
- keys: file by file as the backfill's ``_keys_of`` read them before (pyarrow, default
  threads, one conversion of all), and ``read_many_keys`` (one scan).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from analytics import AnalyticsSettings
from analytics.profile import load_profile
from bench._s3_moto import MotoMeter, put_many
from bench.analytics import build_landing
from harness import MODEL, REFERENCE
from harness.s3 import moto_server
from ingest import Warehouse
from ingest import reader as reader_module
from ingest.listing import list_landing
from ingest.reader import KEY_COLUMNS, read_many, read_many_keys

Read = Callable[[Warehouse, list[str]], object]


def file_by_file(warehouse: Warehouse, paths: list[str], columns: Sequence[str]) -> list:
    """Window rows read file by file, as before one scan, pyarrow's threads on."""

    def load(path: str) -> pl.DataFrame:
        table = pq.ParquetFile(warehouse.open_input(path, True)).read(columns=list(columns))
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame

    if warehouse.is_local:
        return [load(p) for p in paths]
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(load, paths))


def keys_file_by_file(warehouse: Warehouse, paths: list[str]) -> pl.DataFrame:
    """Keys as the backfill's ``_keys_of`` read them: file by file, converted together."""
    tables = [
        pq.ParquetFile(warehouse.open_input(p, True)).read(columns=list(KEY_COLUMNS)) for p in paths
    ]
    counts = [t.num_rows for t in tables]
    frame = pl.from_arrow(pa.concat_tables(tables))
    assert isinstance(frame, pl.DataFrame)
    return frame.select(
        pl.Series("file", np.repeat(np.arange(len(paths), dtype=np.uint32), counts)),
        pl.Series("row", np.concatenate([np.arange(n) for n in counts]), pl.UInt32),
        pl.col("ts").dt.epoch("us"),
        pl.col("request_id"),
        pl.col("replica"),
    )


def default_footer_read(read: Callable[[], object]) -> object:
    """``read()`` with Polars' own footer read size, not ``ingest._scan_many``'s."""
    mine = os.environ.pop("POLARS_CLOUD_FOOTER_READ_SIZE")
    try:
        return read()
    finally:
        os.environ["POLARS_CLOUD_FOOTER_READ_SIZE"] = mine


def ways(columns: Sequence[str]) -> dict[tuple[str, str], Read]:
    return {
        ("window rows", "file by file, pyarrow threads (before)"): lambda w, p: file_by_file(
            w, p, columns
        ),
        ("window rows", "file by file, no threads (fallback)"): lambda w, p: (
            reader_module._read_each(w, p, columns)
        ),
        ("window rows", "read_many: one scan (after)"): lambda w, p: read_many(w, p, columns),
        ("window rows", "read_many, Polars' own footer read size"): lambda w, p: (
            default_footer_read(lambda: read_many(w, p, columns))
        ),
        ("keys", "file by file (before)"): keys_file_by_file,
        ("keys", "read_many_keys: one scan (after)"): read_many_keys,
    }


def measure(
    warehouse: Warehouse,
    paths: list[str],
    how: dict[tuple[str, str], Read],
    rounds: int,
    moto: MotoMeter | None,
) -> dict[tuple[str, str], dict[str, float]]:
    """Median per file over ``rounds`` of each way's CPU, wall, GETs and moto CPU (ms)."""
    seen: dict[tuple[str, str], dict[str, list[float]]] = {k: {} for k in how}
    for r in range(rounds):
        order = list(how)
        order = order[r % len(order) :] + order[: r % len(order)]
        for key in order:
            mark = moto.mark() if moto else 0
            moto_cpu = moto.cpu_seconds() if moto else 0.0
            cpu, wall = time.process_time(), time.perf_counter()
            how[key](warehouse, paths)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            got = seen[key]
            got.setdefault("cpu", []).append(cpu)
            got.setdefault("wall", []).append(wall)
            if moto:
                requests: Counter[str] = moto.requests_since(mark)
                got.setdefault("gets", []).append(requests["GET"])
                got.setdefault("moto", []).append(moto.cpu_seconds() - moto_cpu)
    n = len(paths)
    out = {}
    for key, got in seen.items():
        out[key] = {
            m: statistics.median(v) / n * (1 if m == "gets" else 1e3) for m, v in got.items()
        }
    return out


def table(results: dict[str, dict[tuple[str, str], dict[str, float]]]) -> str:
    lines = [
        "| store | read | way | CPU ms/file | CPU vs before | wall ms/file | GETs/file | "
        "moto CPU ms/file |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for store, rows in results.items():
        before = {read: m["cpu"] for (read, way), m in rows.items() if "(before)" in way}
        for (read, way), m in rows.items():
            gets = f"{m['gets']:.2f}" if "gets" in m else "-"
            moto = f"{m['moto']:.2f}" if "moto" in m else "-"
            lines.append(
                f"| {store} | {read} | {way} | {m['cpu']:.3f} | {m['cpu'] / before[read]:.2f}x "
                f"| {m['wall']:.3f} | {gets} | {moto} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("POLARS_MAX_THREADS") != "1":  # Polars reads it once, when imported
        env = {**os.environ, "POLARS_MAX_THREADS": "1"}
        args = [sys.executable, "-m", "bench.reading", *(sys.argv[1:] if argv is None else argv)]
        os.execve(sys.executable, args, env)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=100, help="landing files of 1,000 rows (100)")
    p.add_argument("--rounds", type=int, default=7, help="rounds of every way (7)")
    p.add_argument("--no-s3", action="store_true", help="local disk only")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="driftlake-bench-reading-"))
    try:
        local = build_landing(work / "wh", args.files * 1000)
        paths = [f.path for f in list_landing(local, MODEL)]
        settings = AnalyticsSettings(
            warehouse=local.url, reference_path=str(REFERENCE), dashboard_address=None
        )
        columns = list(load_profile(settings).columns("numeric"))
        how = ways(columns)
        print(f"bench.reading: {len(paths)} files, {len(columns)} numeric columns", flush=True)
        results = {"local": measure(local, paths, how, args.rounds, None)}
        if not args.no_s3:
            with moto_server(work) as server:
                os.environ.update(server.env)
                s3 = Warehouse(f"s3://{server.create_bucket()}/wh")
                put_many(s3.store, [(p, Path(local.uri(p)).read_bytes()) for p in paths])
                results["S3 (moto)"] = measure(s3, paths, how, args.rounds, MotoMeter(server))
        print(table(results))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
