"""Benchmark: the analytics driver's cycle against 1,000 / 10,000 / 100,000 landing files.

Run with ``uv run --frozen python -m bench.planning [--counts 1000 10000 100000]``.

A local warehouse grows to each count of real landing files (10 rows each, two replicas,
``--hour-files`` an hour, in the hours before the open one; written by pyarrow from two
processes). At each count, with one Dask worker:

- **steady**: a driver whose checkpoint has read every one of them (their hours sealed) sees
  two new files of 100 rows land in the open hour before each of ``--repeats`` cycles: the
  cycle's time, its poll's, and the driver's storage calls a cycle (the requests it makes;
  the worker's reads of the new rows are not counted);
- **dense open hour**: the same, but the N files (copies of one file, never read) are all in
  the open hour, so every cycle lists them and its checkpoint names them;
- **catch-up**: a driver with no checkpoint (down while all of them landed) runs its first
  cycle, bounded by ``MAX_FILES_PER_CYCLE`` (``--max-files``) and without a bound up to
  ``--unbounded-max`` files: time, files and rows read, windows tested.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from analytics import AnalyticsSettings, Driver, dask_client
from analytics.checkpoint import NAME, Checkpoint
from harness import MODEL, REFERENCE
from harness.landing import holdout_rows, landing_batch, model_schema, write_landing
from ingest import Warehouse, paths
from ingest.feed import FeedMark, poll
from ingest.progress import HOUR_US

ROWS = 10  # rows per history file
REPLICAS = ("r0", "r1")
NEW_ROWS = 100  # rows per replica landing before each steady cycle
ORIGIN_HOURS = 1_000_000  # file seq = (ORIGIN_HOURS - hours back) * hour_files + slot
CALLS = (
    "list_dirs",
    "list_files",
    "open_input",
    "read_bytes",
    "read_versioned",
    "put_if",
    "write_bytes",
    "publish_table",
    "try_create",
    "delete",
    "delete_many",
)


def _template() -> pa.Table:
    schema = model_schema()
    names = [f.name for f in schema.features]
    rows = holdout_rows(ROWS, seed=5)
    batch = landing_batch(
        schema,
        {name: rows[:, j] for j, name in enumerate(names)},
        start=datetime(2026, 1, 1, tzinfo=UTC),
        version="bench",
    )
    return pa.Table.from_batches([batch])


def _file(index: int, open_hour_us: int, hour_files: int) -> tuple[str, int, str]:
    """File ``index``'s path, first row's time and replica: ``hour_files`` an hour, newest
    hours first, the replicas alternating; each replica's sequence grows with time."""
    back, slot = index // hour_files + 1, index % hour_files
    hour = open_hour_us - back * HOUR_US
    replica = REPLICAS[slot % len(REPLICAS)]
    seq = (ORIGIN_HOURS - back) * hour_files + slot
    name = f"{replica}-{seq:012d}-{index % 0xFFFFFFFF:08x}.parquet"
    start = hour + slot * (HOUR_US // hour_files)
    return f"{paths.hour_partition(MODEL, hour)}/{name}", start, replica


def _write_range(root: str, lo: int, hi: int, open_hour_us: int, hour_files: int) -> None:
    table = _template()
    step = np.arange(ROWS, dtype=np.int64) * 1_000
    made: set[str] = set()
    for i in range(lo, hi):
        rel, start, replica = _file(i, open_hour_us, hour_files)
        ts = pa.array(start + step, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        ids = pa.array([f"{i:09d}-{k}" for k in range(ROWS)])
        cut = table.set_column(0, "ts", ts).set_column(1, "request_id", ids)
        cut = cut.set_column(2, "replica", pa.array([replica] * ROWS))
        path = os.path.join(root, rel)
        if (parent := os.path.dirname(path)) not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        pq.write_table(cut, path, compression="none", write_statistics=["ts"])


def fill(root: Path, lo: int, hi: int, open_hour_us: int, hour_files: int) -> float:
    """Write history files ``lo`` to ``hi - 1`` from two processes; return the seconds."""
    started = time.perf_counter()
    chunk = 2_000
    # spawned, not forked: this process runs Dask's threads
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        jobs = [
            pool.submit(_write_range, str(root), a, min(a + chunk, hi), open_hour_us, hour_files)
            for a in range(lo, hi, chunk)
        ]
        for job in jobs:
            job.result()
    return time.perf_counter() - started


def fill_dense(root: Path, n: int, open_hour_us: int) -> list[str]:
    """``n`` copies of one landing file in the open hour (names only matter: never read)."""
    source = root / "template.parquet"
    pq.write_table(_template(), source, compression="none")
    data = source.read_bytes()
    part = root / paths.hour_partition(MODEL, open_hour_us)
    part.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        name = f"{REPLICAS[i % 2]}-{i // 2 + 1:012d}-{i:08x}.parquet"
        (part / name).write_bytes(data)
        names.append(name)
    return names


@contextmanager
def counting(wh: Warehouse, calls: Counter[str]) -> Iterator[None]:
    """Count the storage calls made on ``wh`` (this instance only) while in the block."""
    originals = {name: getattr(wh, name) for name in CALLS}

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return fn(*args, **kwargs)

        return counted

    for name, fn in originals.items():
        setattr(wh, name, wrap(name, fn))
    try:
        yield
    finally:
        for name in originals:
            delattr(wh, name)


def _settings(wh: Warehouse, **extra: Any) -> AnalyticsSettings:
    return AnalyticsSettings(
        warehouse=wh.url,
        reference_path=str(REFERENCE),
        window_size=200,
        n_workers=1,
        dashboard_address=None,
        **extra,
    )


def _reset(wh: Warehouse, checkpoint: Checkpoint | None) -> None:
    """Forget the driver state and history; store ``checkpoint`` if given."""
    wh.remove_tree(paths.drift_dir(MODEL))
    wh.remove_tree(os.path.dirname(paths.state_path(MODEL, NAME)))
    wh.remove_tree(os.path.dirname(paths.progress_path(MODEL, "analytics")))
    if checkpoint is not None:
        wh.write_bytes(paths.state_path(MODEL, NAME), checkpoint.to_bytes())


def steady(
    client: Any, wh: Warehouse, checkpoint: Checkpoint, open_hour_us: int, repeats: int
) -> dict[str, Any]:
    """Cycles that each find two new files: median cycle and poll ms, calls a cycle."""
    _reset(wh, checkpoint)
    open_part = paths.hour_partition(MODEL, open_hour_us)
    before = {f.path for f in wh.list_files(open_part)}
    driver = Driver(_settings(wh), client)
    cycles, polls, calls = [], [], Counter[str]()
    size = 0
    for r in range(repeats + 1):  # the first cycle is a warm-up
        start = datetime.fromtimestamp(open_hour_us / 1e6, UTC) + timedelta(minutes=20, seconds=r)
        for k, replica in enumerate(REPLICAS):
            rows = holdout_rows(NEW_ROWS, seed=100 + r * 2 + k)
            step = timedelta(milliseconds=5)
            write_landing(wh, rows, replica=replica, start=start, step=step, per_file=NEW_ROWS)
        now = open_hour_us / 1e6 + 1800 + r
        took = time.perf_counter()
        batch = poll(wh, MODEL, driver.checkpoint.feed)
        polled = time.perf_counter() - took
        if len(batch.files) != len(REPLICAS):
            raise RuntimeError(f"poll found {len(batch.files)} new files, expected 2")
        once: Counter[str] = Counter()
        with counting(driver.warehouse, once):
            took = time.perf_counter()
            report = driver.run_cycle(now)
            took = time.perf_counter() - took
        if report.new_files != len(REPLICAS):
            raise RuntimeError(f"a cycle found {report.new_files} new files, expected 2")
        if r:
            cycles.append(took)
            polls.append(polled)
            calls = once
        size = len(driver.checkpoint.to_bytes())
    # the next count's catch-up and steady cycles find only the history
    wh.delete_many([f.path for f in wh.list_files(open_part) if f.path not in before])
    return {
        "cycle": statistics.median(cycles),
        "poll": statistics.median(polls),
        "calls": calls,
        "checkpoint": size,
    }


def catch_up(client: Any, wh: Warehouse, now: float, max_files: int) -> dict[str, Any]:
    """The first cycle of a driver that has read nothing, bounded to ``max_files`` files."""
    _reset(wh, None)
    driver = Driver(_settings(wh, max_files_per_cycle=max_files, max_rows_per_cycle=0), client)
    took = time.perf_counter()
    batch = poll(wh, MODEL, driver.checkpoint.feed, max_files=max_files)
    polled = time.perf_counter() - took
    calls: Counter[str] = Counter()
    with counting(driver.warehouse, calls):
        took = time.perf_counter()
        report = driver.run_cycle(now)
        took = time.perf_counter() - took
    if report.new_files != len(batch.files):
        raise RuntimeError(f"cycle read {report.new_files} files, poll {len(batch.files)}")
    return {
        "poll": polled,
        "cycle": took,
        "files": report.new_files,
        "rows": report.new_rows,
        "windows": len(report.windows),
        "backlog": report.backlog,
        "calls": calls,
    }


def _calls(calls: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(calls.items())) or "-"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--counts", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--hour-files", type=int, default=500)
    p.add_argument("--max-files", type=int, default=1_000)
    p.add_argument("--unbounded-max", type=int, default=10_000)
    args = p.parse_args(argv)
    open_hour_us = (int(time.time()) // 3600 - 1) * HOUR_US
    now = open_hour_us / 1e6 + 1800
    rows: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp, dask_client(_settings(Warehouse(tmp))) as client:
        client.wait_for_workers(1)
        wh = Warehouse(Path(tmp) / "wh")
        done = 0
        for n in sorted(args.counts):
            filled = fill(Path(tmp) / "wh", done, n, open_hour_us, args.hour_files)
            done = n
            print(f"  {n:,} files ({filled:.1f} s to add)", flush=True)
            high = {}
            for i in range(min(n, args.hour_files)):  # the newest hour holds each replica's last
                _, start, replica = _file(i, open_hour_us, args.hour_files)
                high[replica] = max(high.get(replica, 0), start + (ROWS - 1) * 1_000)
            sealed = Checkpoint(feed=FeedMark(sealed_before_us=open_hour_us), replica_high_us=high)
            cell: dict[str, Any] = {"fill": filled}
            cell["bounded"] = catch_up(client, wh, now, args.max_files)
            if n <= args.unbounded_max:
                cell["unbounded"] = catch_up(client, wh, now, 0)
            cell["steady"] = steady(client, wh, sealed, open_hour_us, args.repeats)
            dense = Warehouse(Path(tmp) / f"dense-{n}")
            names = fill_dense(Path(tmp) / f"dense-{n}", n, open_hour_us)
            part = paths.hour_partition(MODEL, open_hour_us)
            seen = Checkpoint(
                feed=FeedMark(open_hour_us, {part: frozenset(names)}),
                replica_high_us=dict.fromkeys(REPLICAS, open_hour_us + 10 * 60 * 1_000_000),
            )
            cell["dense"] = steady(client, dense, seen, open_hour_us, args.repeats)
            dense.remove_tree("")
            rows[n] = cell
    print(
        f"\nsteady state: two new files of {NEW_ROWS} rows a cycle, 200-row windows, 1 worker; "
        f"ms, median of {args.repeats} cycles; {time.strftime('%Y-%m-%d')}\n"
    )
    print(
        "| N landing files | where | cycle ms | poll ms | checkpoint bytes "
        "| driver storage calls a cycle |"
    )
    print("|---|---|---|---|---|---|")
    for n, cell in rows.items():
        for key, where in (("steady", "sealed hours"), ("dense", "the open hour (read before)")):
            c = cell[key]
            print(
                f"| {n:,} | {where} | {c['cycle'] * 1e3:,.1f} | {c['poll'] * 1e3:,.1f} "
                f"| {c['checkpoint']:,} | {_calls(c['calls'])} |"
            )
    print(
        f"\ncatch-up: a driver's first cycle over N unread files ({ROWS} rows each, "
        f"{args.hour_files} an hour); one run each\n"
    )
    print(
        "| N unread files | MAX_FILES_PER_CYCLE | poll s | cycle s | files read | rows read "
        "| windows | left for later | driver storage calls |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n, cell in rows.items():
        for key, bound in (("bounded", f"{args.max_files:,}"), ("unbounded", "0 (all)")):
            if key not in cell:
                continue
            c = cell[key]
            print(
                f"| {n:,} | {bound} | {c['poll']:.2f} | {c['cycle']:.2f} | {c['files']:,} "
                f"| {c['rows']:,} | {c['windows']:,} | {'yes' if c['backlog'] else 'no'} "
                f"| {_calls(c['calls'])} |"
            )
    fills = ", ".join(f"{n:,} by {cell['fill']:.1f} s" for n, cell in rows.items())
    print(f"\nhistory files written (each count adds to the last): {fills}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
