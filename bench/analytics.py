"""Benchmark: analytics throughput (rows/s through read + test + history) on 1 vs 2 workers,
with windows batched into tasks of ``--batch-rows`` rows, side by side.

Run with ``uv run python -m bench.analytics [--rows N] [--window W] [--batch-rows B ...]``.
A landing zone of ``--rows`` held-out breast-cancer rows (30 features, files of 1,000 rows) is
built once in a temp dir; then each round backfills all of it on a fresh local cluster of 1
worker and of 2 workers for every ``--batch-rows`` value (orders rotating), timing only the
``backfill`` call. ``--batch-rows`` equal to ``--window`` is one window per task, as the job
ran before windows were batched. Reported: median seconds, rows/s, rows/s per worker, and
the 1-worker / 2-worker time ratio taken round by round.
"""

from __future__ import annotations

import argparse
import itertools
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


def run_backfill(wh: Warehouse, workers: int, window: int, batch_rows: int, name: str) -> float:
    settings = AnalyticsSettings(
        warehouse=wh.url,
        reference_path=str(REFERENCE),
        window_size=window,
        n_workers=workers,
        dashboard_address=None,
    )
    profile, config = load_profile(settings), DetectConfig.from_settings(settings)
    with dask_client(settings) as client:
        client.wait_for_workers(workers)
        started = time.perf_counter()
        backfill(client, wh, profile, config, window_size=window, batch_rows=batch_rows, name=name)
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--window", type=int, default=1000)
    p.add_argument("--batch-rows", type=int, nargs="+", default=[20_000])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    cells = list(itertools.product(args.batch_rows, (1, 2)))
    times: dict[tuple[int, int], list[float]] = {c: [] for c in cells}
    ratios: dict[int, list[float]] = {b: [] for b in args.batch_rows}
    with tempfile.TemporaryDirectory() as tmp:
        wh = build_landing(Path(tmp) / "wh", args.rows)
        for r in range(args.rounds):
            order = cells[r % len(cells) :] + cells[: r % len(cells)]
            got = {
                c: run_backfill(wh, c[1], args.window, c[0], f"r{r}b{c[0]}w{c[1]}") for c in order
            }
            for c, t in got.items():
                times[c].append(t)
            for b in args.batch_rows:
                ratios[b].append(got[(b, 1)] / got[(b, 2)])
    windows = args.rows // args.window
    print(
        f"backfill of {args.rows:,} rows (30 features + prediction), {windows} windows of "
        f"{args.window} rows, median of {args.rounds} rounds"
    )
    print("| batch rows | workers | seconds | rows/s | rows/s per worker | 1 / 2 workers |")
    print("|---|---|---|---|---|---|")
    for b, w in cells:
        med = statistics.median(times[(b, w)])
        ratio = statistics.median(ratios[b])
        spread = ", ".join(f"{x:.2f}" for x in ratios[b])
        print(
            f"| {b:,} | {w} | {med:.2f} | {args.rows / med:,.0f} | {args.rows / med / w:,.0f} "
            f"| {ratio:.2f} [{spread}] |" if w == 2 else
            f"| {b:,} | {w} | {med:.2f} | {args.rows / med:,.0f} | {args.rows / med / w:,.0f} | |"
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
