"""Benchmark: a warehouse on S3 (moto's server on loopback) against one on local disk.

Run with ``uv run --frozen python -m bench.s3 [--quick] [--part capture|analytics|listing]``
(needs Debian's ``wrk`` for ``capture``). It starts moto itself (one server per part, so each
part's moto CPU is its own) and runs, local and S3 side by side in one run:

- ``capture`` (``bench._s3_capture``): capture on / off throughput of a model-server replica
  publishing to S3 and to local disk, 1 row x 32 connections (target >= 0.90 for both).
- ``analytics`` (``bench._s3_analytics``): backfill rows/s over one synthetic landing zone
  held in a local warehouse and, byte for byte, in a bucket (target S3 >= 0.8x local).
- ``listing`` (``bench._s3_listing``): the analytics driver's poll and cycle against
  1,000 / 10,000 / 100,000 landing objects in sealed hours, against a full listing and
  compaction's walk of every hour.

moto is Python on the same two cores as everything else: its CPU per request is shown, its
latency is loopback's, and its LIST reads every key of the bucket (AWS's does not), so the
requests a call makes are counted from moto's log beside the time it took.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from analytics.detect import BATCH_ROWS
from bench import _s3_analytics, _s3_capture, _s3_listing, wrk
from bench._s3_moto import MotoMeter
from harness.s3 import moto_server

PARTS = ("capture", "analytics", "listing")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=PARTS, action="append", help="run only this part (repeatable)")
    p.add_argument("--quick", action="store_true", help="smaller runs (minutes in all)")
    p.add_argument("--rounds", type=int, default=None, help="capture: wrk rounds (8; quick 4)")
    p.add_argument("--duration", type=float, default=None, help="capture: s per run (4; quick 3)")
    p.add_argument("--rows", type=int, default=None, help="analytics: rows (200,000; quick 50,000)")
    p.add_argument("--window", type=int, default=1000, help="analytics: rows per window")
    p.add_argument("--batch-rows", type=int, default=BATCH_ROWS, help="analytics: rows a task")
    p.add_argument("--workers", type=int, default=2, help="analytics: Dask workers")
    p.add_argument("--backfills", type=int, default=3, help="analytics: backfills a side")
    p.add_argument(
        "--pin",
        action="store_true",
        help="moto on the last CPU, this process and its Dask workers on the others: the "
        "store as if on another machine (local and S3 get the same CPUs)",
    )
    p.add_argument(
        "--counts",
        default=None,
        help="listing: object counts (1000,10000,100000; quick 1000,10000)",
    )
    p.add_argument("--repeats", type=int, default=None, help="listing: repeats per count (5; 3)")
    p.add_argument(
        "--fill-budget", type=float, default=600.0, help="listing: most seconds of S3 PUTs to fill"
    )
    args = p.parse_args(argv)
    parts = args.part or list(PARTS)
    if "capture" in parts:
        wrk.require_wrk()
    work = Path(tempfile.mkdtemp(prefix="driftlake-bench-s3-"))
    print(f"bench.s3: work dir {work}", flush=True)
    try:
        for part in parts:
            part_dir = work / part
            part_dir.mkdir()
            with moto_server(part_dir) as server:
                os.environ.update(server.env)  # this process and the Dask workers it starts
                if args.pin:
                    last = max(os.sched_getaffinity(0))
                    _pin(server.proc.pid, {last})
                    _pin(os.getpid(), os.sched_getaffinity(0) - {last})
                text = run_part(part, part_dir, MotoMeter(server), args)
            print(f"\n## {part}\n\n{text}\n", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # up to 100,000 files and a model per server
    return 0


def _pin(pid: int, cpus: set[int]) -> None:
    """Bind every thread of ``pid`` to ``cpus``; threads and processes it starts inherit it."""
    if not cpus:
        raise SystemExit("bench.s3 --pin needs at least 2 CPUs")
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cpus)


def run_part(part: str, work: Path, moto: MotoMeter, args: argparse.Namespace) -> str:
    """Run one part against ``moto``; return its markdown report."""
    q = args.quick
    if part == "capture":
        rounds, duration = args.rounds or (4 if q else 8), args.duration or (3.0 if q else 4.0)
        return _s3_capture.run(work, moto, rounds=rounds, duration=duration, batch=1, conns=32)
    if part == "analytics":
        rows = args.rows or (50_000 if q else 200_000)
        return _s3_analytics.run(
            work,
            moto,
            rows=rows,
            window=args.window,
            batch_rows=args.batch_rows,
            workers=args.workers,
            backfills=args.backfills,
        )
    counts = args.counts or ("1000,10000" if q else "1000,10000,100000")
    return _s3_listing.run(
        work,
        moto,
        counts=[int(c) for c in counts.split(",")],
        repeats=args.repeats or (3 if q else 5),
        fill_budget=args.fill_budget,
    )


if __name__ == "__main__":
    raise SystemExit(main())
