"""bench.s3 part analytics: backfill rows/s over one landing zone on local disk and on S3 (moto).

``bench.analytics`` builds the landing zone (held-out rows, 30 features, files of 1,000 rows)
in a local warehouse; the same files, byte for byte, are PUT into a bucket. Each round
backfills both on fresh Dask clusters of the same settings (``bench.analytics.run_backfill``),
local and S3 first in turn, timing the ``backfill`` call only; the S3/local time ratio is taken
round by round. moto's CPU time and the requests it answered are counted per S3 backfill.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from pathlib import Path

from analytics.history import read_history
from bench._s3_moto import MotoMeter, put_many, show_requests
from bench.analytics import build_landing, run_backfill
from bench.paired import median_ci
from harness import MODEL
from ingest import Warehouse
from ingest.paths import backfill_root

SIDES = ("local", "s3")


def run(
    work: Path,
    moto: MotoMeter,
    *,
    rows: int,
    window: int,
    batch_rows: int,
    workers: int,
    backfills: int,
) -> str:
    """Run the backfill comparison; return its markdown report."""
    local = build_landing(work / "wh-local", rows)
    s3 = Warehouse(f"s3://{moto.server.create_bucket()}/wh")
    files = local.list_files("landing")
    put_many(s3.store, ((f.path, Path(local.uri(f.path)).read_bytes()) for f in files), 8)
    copied = s3.list_files("landing")
    if [(f.path, f.size) for f in copied] != [(f.path, f.size) for f in files]:
        raise RuntimeError("the bucket's landing zone differs from the local one")
    warehouses = {"local": local, "s3": s3}
    seconds: dict[str, list[float]] = {side: [] for side in SIDES}
    ratios, moto_cpu = [], []
    requests: Counter[str] = Counter()
    for r in range(backfills):
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:
            wh, name = warehouses[side], f"r{r}-{side}"
            cpu0, mark = moto.cpu_seconds(), moto.mark()
            seconds[side].append(run_backfill(wh, workers, window, batch_rows, name))
            if side == "s3":
                moto_cpu.append(moto.cpu_seconds() - cpu0)
                requests += moto.requests_since(mark)
            tested = read_history(wh, MODEL, backfill_root(name))["window_id"].n_unique()
            if tested != rows // window:
                raise RuntimeError(f"{side}: {tested} windows in the history, not {rows // window}")
            print(f"  analytics {side:>5} round {r}: {seconds[side][-1]:.2f} s", flush=True)
        ratios.append(seconds["local"][-1] / seconds["s3"][-1])
    shape = (
        f"backfill of {rows:,} rows (30 features + prediction, {len(files)} files of <= 1,000 "
        f"rows), {rows // window} windows of {window} rows in tasks of {batch_rows:,} rows, "
        f"{workers} Dask workers, median of {backfills} backfills a side"
    )
    return _report(shape, seconds, ratios, moto_cpu, requests, rows // window, rows)


def _report(shape, seconds, ratios, moto_cpu, requests, windows, rows) -> str:
    backfills = len(ratios)
    lines = [
        f"{shape}, {time.strftime('%Y-%m-%d')}",
        "",
        "| warehouse | median s | rows/s | windows/s | moto CPU s | S3 requests per window |",
        "|---|---|---|---|---|---|",
    ]
    for side in SIDES:
        med = statistics.median(seconds[side])
        cpu = f"{statistics.median(moto_cpu):.2f}" if side == "s3" else "-"
        req = show_requests(requests, per=windows * backfills) if side == "s3" else "-"
        lines.append(
            f"| {side} | {med:.2f} | {rows / med:,.0f} | {windows / med:.1f} | {cpu} | {req} |"
        )
    ratio = median_ci(ratios)
    each = ", ".join(f"{x:.2f}" for x in ratios)
    lines += ["", f"S3 rows/s / local rows/s, per round: {ratio.show('{:.2f}')} ({each})"]
    return "\n".join(lines)
