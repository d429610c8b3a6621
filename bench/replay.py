"""Benchmark: does the live analytics loop keep up with rows landing at a given rate?

Run with ``uv run python -m bench.replay [--rate 20000] [--seconds 60] [--workers 2]``.
Two writer threads (replicas ``r1``, ``r2``) land held-out breast-cancer rows stamped with
the wall clock through the real capture writer (``LandingWriter``, 1 s flushes) at
``--rate`` rows/s in all, into a temp warehouse, while the analytics ``Driver`` runs its loop
(``run_forever``, default settings: 200-row windows, ``INTERVAL`` 2 s) on a local cluster of
``--workers`` workers. Each cycle records its landing lag (wall clock minus the watermark:
how far behind the newest final row the job is) and its duration. The first 10 s are
warm-up. Target: landing lag under 2 x INTERVAL throughout, and every landed row tested.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from analytics import AnalyticsSettings, Driver, dask_client, load_checkpoint
from harness import REFERENCE
from harness.landing import holdout_rows, landing_batch, model_schema
from ingest import Warehouse
from ingest.capture import LandingWriter

TICK = 0.05  # seconds between a writer's batches


def land(wh: Warehouse, replica: str, rate: float, until: float, counts: dict[str, int]) -> None:
    """Land ``rate`` rows/s stamped now, in a batch every TICK, until ``until`` (monotonic)."""
    schema = model_schema()
    names = [f.name for f in schema.features]
    pool = holdout_rows(20_000, seed=hash(replica) % 1000)
    writer = LandingWriter(wh, schema, replica, flush_interval=1.0).start()
    per_tick, sent, started = rate * TICK, 0, time.monotonic()
    while (now := time.monotonic()) < until:
        due = int((now - started) / TICK * per_tick) - sent
        if due > 0:
            rows = pool[np.arange(sent, sent + due) % len(pool)]
            step = timedelta(seconds=TICK / max(due, 1))
            batch = landing_batch(
                schema,
                {n: rows[:, j] for j, n in enumerate(names)},
                start=datetime.now(UTC) - step * due,
                step=step,
                request_ids=[f"{uuid.uuid4().hex[:16]}-{i}" for i in range(due)],
                replica=replica,
            )
            writer.extend_checked([batch])
            sent += due
        time.sleep(TICK / 2)
    writer.close()
    counts[replica] = writer.stats().flushed_rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=20_000, help="rows/s landed, all replicas")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wh = Warehouse(Path(tmp) / "wh")
        settings = AnalyticsSettings(
            warehouse=wh.url,
            reference_path=str(REFERENCE),
            n_workers=args.workers,
            dashboard_address=None,
            health_address=None,
        )
        cycles: list[tuple[float, float, float, int]] = []  # at, lag s, cycle s, windows
        with dask_client(settings) as client:
            client.wait_for_workers(args.workers)
            driver = Driver(settings, client)
            stop, counts = threading.Event(), {}
            started = time.monotonic()
            until = started + args.seconds

            def record(report) -> None:
                at = time.monotonic() - started
                lag = time.time() - report.watermark_us / 1e6
                cycles.append((at, lag, report.seconds, len(report.windows)))

            loop = threading.Thread(
                target=driver.run_forever, args=(stop,), kwargs={"on_cycle": record}
            )
            writers = [
                threading.Thread(target=land, args=(wh, r, args.rate / 2, until, counts))
                for r in ("r1", "r2")
            ]
            for t in (*writers, loop):
                t.start()
            for t in writers:
                t.join()
            time.sleep(3 * settings.interval + settings.max_lateness)  # the tail is tested
            stop.set()
            loop.join()
        landed = sum(counts.values())
        tested = load_checkpoint(wh, driver.model).rows_tested_total
    steady = [c for c in cycles if 10 <= c[0] <= args.seconds]
    lags = [c[1] for c in steady]
    took = [c[2] for c in steady]
    limit = 2 * settings.interval
    print(
        f"{args.rate:,.0f} rows/s landed by 2 replicas for {args.seconds:.0f} s, "
        f"{args.workers} workers, {len(steady)} cycles after a 10 s warm-up"
    )
    print("| landing lag s: median | max | cycle s: median | max | rows landed | rows tested |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {statistics.median(lags):.2f} | {max(lags):.2f} | {statistics.median(took):.2f} "
        f"| {max(took):.2f} | {landed:,} | {tested:,} |"
    )
    kept_up = max(lags) < limit
    print(f"target: lag < 2 x INTERVAL = {limit:g} s throughout: {'met' if kept_up else 'not met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
