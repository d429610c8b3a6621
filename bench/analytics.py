"""Benchmark: analytics throughput (rows/s through read + test) and backfill on 1 vs 2 workers.

Run with ``uv run python -m bench.analytics [--rows N] [--rounds R]``. A landing zone of
``--rows`` held-out breast-cancer rows (30 features, files of 1,000 rows) is built once in a
temp dir; then each round backfills all of it on a fresh local cluster of 1 worker and of 2
workers (alternating which goes first), timing only the ``backfill`` call. Reported: the
median seconds, rows/s, and the 1-worker / 2-worker time ratio taken round by round.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics import AnalyticsSettings, DetectConfig, dask_client
from analytics.backfill import backfill
from analytics.profile import load_profile
from harness import REFERENCE
from harness.landing import holdout_rows, write_landing
from ingest import Warehouse


def build_landing(root: Path, rows: int) -> Warehouse:
    wh = Warehouse(root)
    start = datetime.now(UTC) - timedelta(hours=2)
    write_landing(wh, holdout_rows(rows, seed=11), start=start, per_file=1000)
    return wh


def run_backfill(wh: Warehouse, workers: int, window: int, name: str) -> float:
    settings = AnalyticsSettings(
        warehouse=wh.root,
        reference_path=str(REFERENCE),
        window_size=window,
        n_workers=workers,
        dashboard_address=None,
    )
    profile, config = load_profile(settings), DetectConfig.from_settings(settings)
    with dask_client(settings) as client:
        client.wait_for_workers(workers)
        started = time.perf_counter()
        backfill(client, wh, profile, config, window_size=window, name=name)
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--window", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wh = build_landing(Path(tmp) / "wh", args.rows)
        times: dict[int, list[float]] = {1: [], 2: []}
        ratios = []
        for r in range(args.rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            got = {w: run_backfill(wh, w, args.window, f"r{r}w{w}") for w in order}
            for w, t in got.items():
                times[w].append(t)
            ratios.append(got[1] / got[2])
    windows = args.rows // args.window
    print(
        f"backfill of {args.rows:,} rows (30 features + prediction), {windows} windows of "
        f"{args.window} rows, median of {args.rounds} rounds"
    )
    print(f"{'workers':>8} {'seconds':>9} {'rows/s':>10} {'windows/s':>10}")
    for w, ts in times.items():
        med = statistics.median(ts)
        print(f"{w:>8} {med:>9.2f} {args.rows / med:>10,.0f} {windows / med:>10.1f}")
    print(
        f"time ratio 1 worker / 2 workers (per round, median): {statistics.median(ratios):.2f}"
        f"  [{', '.join(f'{x:.2f}' for x in ratios)}]"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
