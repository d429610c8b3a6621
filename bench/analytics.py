"""Benchmark: analytics throughput (rows/s through read + test + history) on 1 vs 2 workers,
with windows batched into tasks of ``--batch-rows`` rows, side by side; optionally against
another source tree in the same run.

Run with ``uv run python -m bench.analytics [--rows N] [--window W] [--batch-rows B ...]
[--tree NAME=PATH ...]``. A landing zone of ``--rows`` held-out breast-cancer rows (30
features, files of 1,000 rows) is built once in a temp dir; then each round backfills all of
it on a fresh local cluster of 1 worker and of 2 workers for every ``--batch-rows`` value
(orders rotating), timing only the ``backfill`` call. ``--batch-rows`` equal to ``--window``
is one window per task. The workers import the analytics modules before the clock starts;
with ``--warm-rows N`` each fresh cluster first backfills N other rows, untimed, so its
workers hold what a running job's do (exact p-values memoized for the usual statistics).

With ``--tree`` (e.g. ``--tree before=/tmp/base`` for a ``git worktree add /tmp/base HEAD``
checkout) every cell runs in a child process importing the named tree first (``this`` is
this tree), the trees taking turns within each round, so a before/after comparison shares
the machine's state. Reported: median seconds, rows/s, rows/s per worker, the 1-worker /
2-worker time ratio taken round by round, and the CPU seconds of the driver process (client
and scheduler) and of the workers during the backfill.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics import AnalyticsSettings, DetectConfig, dask_client
from analytics.backfill import backfill
from analytics.profile import load_profile
from harness import REFERENCE, ROOT
from harness.landing import holdout_rows, write_landing
from ingest import Warehouse

# One backfill, timed, in a child process that imports the tree at argv[1] first: only what
# every tree compared has (backfill's signature, dask_client, load_profile).
LAUNCH = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import analytics
from analytics import AnalyticsSettings, DetectConfig, dask_client
from analytics.backfill import backfill
from analytics.profile import load_profile
from ingest import Warehouse
def warm_imports():
    import importlib.util
    for module in ("analytics.detect", "analytics._ks_kernel"):  # the kernel compiles once
        if importlib.util.find_spec(module):
            __import__(module)
url, workers, window, batch, name = sys.argv[2], *map(int, sys.argv[3:6]), sys.argv[6]
warm = sys.argv[8] if len(sys.argv) > 8 else None
settings = AnalyticsSettings(
    warehouse=url, reference_path=sys.argv[7], window_size=window, n_workers=workers,
    dashboard_address=None,
)
profile, config = load_profile(settings), DetectConfig.from_settings(settings)
with dask_client(settings) as client:
    client.wait_for_workers(workers)
    client.run(warm_imports)  # a worker's imports (scipy, numba) are not per row
    if warm:
        backfill(client, Warehouse(warm), profile, config, window_size=window,
                 batch_rows=batch, name=name)
    worker_cpu = sum(client.run(time.process_time).values())
    cpu, started = time.process_time(), time.perf_counter()
    backfill(client, Warehouse(url), profile, config, window_size=window, batch_rows=batch,
             name=name)
    seconds = time.perf_counter() - started
    driver = time.process_time() - cpu
    worker_cpu = sum(client.run(time.process_time).values()) - worker_cpu
print(json.dumps({"seconds": seconds, "driver_cpu": driver, "worker_cpu": worker_cpu,
                  "module": analytics.__file__}))
"""


def build_landing(root: Path, rows: int, seed: int = 11) -> Warehouse:
    wh = Warehouse(root)
    start = datetime.now(UTC) - timedelta(hours=2)
    write_landing(wh, holdout_rows(rows, seed=seed), start=start, per_file=1000)
    return wh


def _warm_imports() -> None:
    """A worker's imports, so they are not timed (the KS kernel compiles or loads once)."""
    import analytics._ks_kernel
    import analytics.detect  # noqa: F401


def run_backfill(
    wh: Warehouse,
    workers: int,
    window: int,
    batch_rows: int,
    name: str,
    warm: Warehouse | None = None,
) -> float:
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
        client.run(_warm_imports)  # a worker's imports (scipy, numba) are not per row
        if warm is not None:
            backfill(
                client, warm, profile, config, window_size=window, batch_rows=batch_rows, name=name
            )
        started = time.perf_counter()
        backfill(client, wh, profile, config, window_size=window, batch_rows=batch_rows, name=name)
        return time.perf_counter() - started


def run_in_tree(
    tree: Path,
    wh: Warehouse,
    workers: int,
    window: int,
    batch_rows: int,
    name: str,
    warm: Warehouse | None = None,
) -> dict[str, float]:
    """One backfill in a child process importing ``tree`` first; its times."""
    argv = [str(tree), wh.url, str(workers), str(window), str(batch_rows), name]
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the Dask workers it starts too
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCH, *argv, str(REFERENCE), *([warm.url] if warm else [])],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"backfill in {tree} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if not Path(out["module"]).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"{tree}: the child imported {out['module']}")
    return out


def parse_tree(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    root = Path(path).resolve()
    if not sep or not name or not (root / "analytics" / "backfill.py").is_file():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH of a source tree, got {text!r}")
    return name, root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--window", type=int, default=1000)
    p.add_argument("--batch-rows", type=int, nargs="+", default=[20_000])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--warm-rows",
        type=int,
        default=0,
        help="first backfill this many other rows (another seed) on each fresh cluster, "
        "untimed: workers as a running job has them (exact p-values memoized)",
    )
    p.add_argument(
        "--tree",
        type=parse_tree,
        action="append",
        default=[],
        help="NAME=PATH: also run this source tree (this tree is 'this'); repeatable",
    )
    args = p.parse_args(argv)
    trees = [("this", ROOT), *args.tree] if args.tree else [("this", None)]
    cells = list(itertools.product(range(len(trees)), args.batch_rows, (1, 2)))
    runs: dict[tuple[int, int, int], list[dict[str, float]]] = {c: [] for c in cells}
    with tempfile.TemporaryDirectory() as tmp:
        wh = build_landing(Path(tmp) / "wh", args.rows)
        warm = build_landing(Path(tmp) / "warm", args.warm_rows, 12) if args.warm_rows else None
        for r in range(args.rounds):
            order = cells[r % len(cells) :] + cells[: r % len(cells)]
            for c in order:
                t, b, w = c
                name = f"r{r}t{t}b{b}w{w}"
                tree = trees[t][1]
                if tree is None:
                    out = {"seconds": run_backfill(wh, w, args.window, b, name, warm)}
                else:
                    out = run_in_tree(tree, wh, w, args.window, b, name, warm)
                runs[c].append(out)
                print(f"  round {r}: {trees[t][0]} batch {b} workers {w}: {out}", flush=True)
    windows = args.rows // args.window
    warmed = f", after {args.warm_rows:,} other rows" if args.warm_rows else ""
    print(
        f"\nbackfill of {args.rows:,} rows (30 features + prediction), {windows} windows of "
        f"{args.window} rows{warmed}, median of {args.rounds} rounds, "
        f"{time.strftime('%Y-%m-%d')}\n"
    )
    cpu = bool(args.tree)
    print(
        "| tree | batch rows | workers | seconds | rows/s | rows/s per worker | 1 / 2 workers |"
        + (" driver CPU s | worker CPU s |" if cpu else "")
    )
    print("|---|---|---|---|---|---|---|" + ("---|---|" if cpu else ""))
    for t, b, w in cells:
        got = runs[(t, b, w)]
        med = statistics.median(x["seconds"] for x in got)
        ratio = ""
        if w == 2:
            ratios = [
                one["seconds"] / two["seconds"]
                for one, two in zip(runs[(t, b, 1)], got, strict=True)
            ]
            spread = ", ".join(f"{x:.2f}" for x in ratios)
            ratio = f"{statistics.median(ratios):.2f} [{spread}]"
        line = (
            f"| {trees[t][0]} | {b:,} | {w} | {med:.2f} | {args.rows / med:,.0f} "
            f"| {args.rows / med / w:,.0f} | {ratio} |"
        )
        if cpu:
            line += (
                f" {statistics.median(x['driver_cpu'] for x in got):.2f} "
                f"| {statistics.median(x['worker_cpu'] for x in got):.2f} |"
            )
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
