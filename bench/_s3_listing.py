"""bench.s3 part listing: the analytics driver's cycle against many landing objects in sealed hours.

Each warehouse (local, and a bucket on moto) gets one open hour (the hour before the current
one) holding three real landing files of 200 rows, and a checkpoint whose feed mark seals
every hour before it. Then, growing to each count, the hours before the open one fill with
tiny objects under landing names (500 an hour, newest hours first): a sealed hour is never
listed, so they are never read. At each count, local and S3 in turn, timed:

- ``poll``: ``ingest.feed.poll`` from the checkpoint's mark with no file seen (the listing
  part of a cycle, with the open hour's three files' keys read);
- ``cycle``: one ``Driver.run_cycle`` with nothing new (poll, plan, checkpoint, progress
  mark), after a first cycle that tested the open hour's windows;
- ``full listing``: ``warehouse.list_files("landing")``, what a driver that walked the whole
  tree would pay every cycle;
- ``compaction's walk`` (once a count): what a compaction run lists before it knows which
  hours are due, every landing hour before its limit resolved with ``view_partition``
  (nothing is compacted: the tiny objects are not Parquet).

Local files are written with ``open()``; objects are PUT from 32 threads, for at most
``fill_budget`` seconds in all (counts beyond it are left out for S3, and said so).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import obstore as obs

from analytics import AnalyticsSettings, dask_client
from analytics.checkpoint import NAME, Checkpoint
from analytics.driver import Driver
from bench._s3_moto import MotoMeter, put_many, show_requests
from harness import MODEL, REFERENCE
from harness.landing import holdout_rows, write_landing
from ingest import Warehouse, paths
from ingest.feed import FeedMark, poll
from ingest.listing import landing_partitions
from ingest.manifest import view_partition
from ingest.progress import HOUR_US

HOUR_FILES = 500  # tiny objects per sealed hour
OPEN_FILES, OPEN_ROWS = 3, 600
SIDES = ("local", "s3")


@dataclass
class Cell:
    """One count's measurements on one side (seconds), and S3's requests of one call."""

    poll: list[float] = field(default_factory=list)
    cycle: list[float] = field(default_factory=list)
    full: list[float] = field(default_factory=list)
    walk: list[float] = field(default_factory=list)
    empty_list: list[float] = field(default_factory=list)
    poll_requests: Counter[str] = field(default_factory=Counter)
    cycle_requests: Counter[str] = field(default_factory=Counter)
    full_requests: Counter[str] = field(default_factory=Counter)
    walk_requests: Counter[str] = field(default_factory=Counter)


def sealed_paths(open_hour_us: int, lo: int, hi: int) -> list[str]:
    """Paths of tiny objects ``lo`` to ``hi - 1``: object ``i`` in the ``i // 500 + 1``-th
    hour before the open one."""
    out = []
    for i in range(lo, hi):
        part = paths.hour_partition(MODEL, open_hour_us - (i // HOUR_FILES + 1) * HOUR_US)
        out.append(f"{part}/{paths.landing_file_name('old', i)}")
    return out


def _fill_local(wh: Warehouse, rels: list[str]) -> None:
    made: set[Path] = set()
    for rel in rels:
        path = Path(wh.uri(rel))
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        with open(path, "wb") as f:
            f.write(b"x")


def _prepare(wh: Warehouse, open_hour_us: int) -> None:
    """The open hour's real files, and a checkpoint that has sealed every hour before it."""
    start = datetime.fromtimestamp(open_hour_us / 1e6, UTC) + timedelta(minutes=10)
    rows = holdout_rows(OPEN_ROWS, seed=3)
    write_landing(wh, rows, start=start, per_file=OPEN_ROWS // OPEN_FILES)
    mark = Checkpoint(feed=FeedMark(sealed_before_us=open_hour_us))
    wh.write_bytes(paths.state_path(MODEL, NAME), mark.to_bytes())


def _timed(fn, moto: MotoMeter | None, requests: Counter[str] | None):
    mark = moto.mark() if moto else 0
    started = time.perf_counter()
    out = fn()
    took = time.perf_counter() - started
    if moto is not None and requests is not None:
        requests.clear()
        requests.update(moto.requests_since(mark))
    return took, out


def run(work: Path, moto: MotoMeter, *, counts: list[int], repeats: int, fill_budget: float) -> str:
    """Run the listing comparison; return its markdown report."""
    open_hour_us = (int(time.time()) // 3600 - 1) * HOUR_US
    now = open_hour_us / 1e6 + 1800  # every open-hour row final, the open hour not sealed
    whs = {
        "local": Warehouse(work / "wh-local"),
        "s3": Warehouse(f"s3://{moto.server.create_bucket()}/wh"),
    }
    for wh in whs.values():
        _prepare(wh, open_hour_us)
    settings = {
        side: AnalyticsSettings(
            warehouse=wh.url,
            reference_path=str(REFERENCE),
            window_size=OPEN_ROWS // OPEN_FILES,
            n_workers=1,
            dashboard_address=None,
        )
        for side, wh in whs.items()
    }
    cells: dict[tuple[int, str], Cell] = {}
    fills: dict[str, list[tuple[int, float]]] = {side: [] for side in SIDES}
    first: dict[str, tuple[float, int]] = {}
    s3_spent, s3_count = 0.0, 0
    with dask_client(settings["local"]) as client:
        drivers = {side: Driver(settings[side], client) for side in SIDES}
        for side in SIDES:
            took, report = _timed(lambda d=drivers[side]: d.run_cycle(now), None, None)
            first[side] = (took, len(report.windows))
        done = 0
        for n in counts:
            rels = sealed_paths(open_hour_us, done, n)
            started = time.perf_counter()
            _fill_local(whs["local"], rels)
            fills["local"].append((n, time.perf_counter() - started))
            rate = s3_count / s3_spent if s3_spent else None
            if s3_count == done and (rate is None or (n - done) / rate <= fill_budget - s3_spent):
                took = put_many(whs["s3"].store, ((rel, b"x") for rel in rels))
                s3_spent, s3_count = s3_spent + took, n
                fills["s3"].append((n, took))
            done = n
            print(f"  listing: filled {n:,} (S3 up to {s3_count:,})", flush=True)
            for r in range(repeats):
                for side in SIDES if r % 2 == 0 else SIDES[::-1]:
                    if side == "s3" and s3_count < n:
                        continue
                    cell = cells.setdefault((n, side), Cell())
                    _measure(
                        cell,
                        whs[side],
                        drivers[side],
                        now,
                        open_hour_us,
                        moto if side == "s3" else None,
                        full=n + OPEN_FILES if r < 3 else None,
                    )
    return _report(cells, fills, first, counts, repeats)


def _measure(
    cell: Cell,
    wh: Warehouse,
    driver: Driver,
    now: float,
    open_hour_us: int,
    moto: MotoMeter | None,
    full: int | None,
) -> None:
    """Time a poll and an idle cycle and, if ``full`` (the files expected), a full listing."""
    mark = FeedMark(sealed_before_us=open_hour_us)
    took, batch = _timed(lambda: poll(wh, MODEL, mark), moto, cell.poll_requests)
    if len(batch.files) != OPEN_FILES:
        raise RuntimeError(f"poll found {len(batch.files)} files, expected {OPEN_FILES}")
    cell.poll.append(took)
    took, report = _timed(lambda: driver.run_cycle(now), moto, cell.cycle_requests)
    if report.new_files:
        raise RuntimeError(f"an idle cycle found {report.new_files} new files")
    cell.cycle.append(took)
    if full is not None:
        took, listed = _timed(lambda: wh.list_files("landing"), moto, cell.full_requests)
        if len(listed) != full:
            raise RuntimeError(f"the full listing found {len(listed)} files, expected {full}")
        cell.full.append(took)
    if full is not None and not cell.walk:
        took, _ = _timed(lambda: _compaction_walk(wh, open_hour_us), moto, cell.walk_requests)
        cell.walk.append(took)
    if moto is not None:
        took, _ = _timed(lambda: obs.list_with_delimiter(wh.store, "nothing/"), None, None)
        cell.empty_list.append(took)


def _compaction_walk(wh: Warehouse, until_us: int) -> int:
    """What a compaction run lists before it finds the due hours: every landing hour before
    its limit, each resolved with :func:`view_partition` (here: all sealed hours)."""
    return len([view_partition(wh, p) for p in landing_partitions(wh, MODEL, until_us=until_us)])


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:,.1f}" if values else "-"


def _req(values: list[float], requests: Counter[str]) -> str:
    return show_requests(requests) if values else "-"


def _report(cells, fills, first, counts, repeats) -> str:
    lines = [
        f"one open hour of {OPEN_FILES} landing files ({OPEN_ROWS} rows) and N tiny objects in "
        f"sealed hours ({HOUR_FILES} an hour); ms, median of {repeats} (full listing: of up to "
        f"3); S3 requests of one call from moto's log; {time.strftime('%Y-%m-%d')}",
        "",
        "| N objects in sealed hours | poll: local | poll: S3 | poll: S3 requests "
        "| idle cycle: local | idle cycle: S3 | cycle: S3 requests | full listing: local "
        "| full listing: S3 | full listing: S3 requests | compaction's walk: local "
        "| compaction's walk: S3 | walk: S3 requests | moto: one LIST of an empty prefix |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in counts:
        loc, s3 = cells.get((n, "local"), Cell()), cells.get((n, "s3"), Cell())
        lines.append(
            f"| {n:,} | {_ms(loc.poll)} | {_ms(s3.poll)} | {_req(s3.poll, s3.poll_requests)} "
            f"| {_ms(loc.cycle)} | {_ms(s3.cycle)} | {_req(s3.cycle, s3.cycle_requests)} "
            f"| {_ms(loc.full)} | {_ms(s3.full)} | {_req(s3.full, s3.full_requests)} "
            f"| {_ms(loc.walk)} | {_ms(s3.walk)} | {_req(s3.walk, s3.walk_requests)} "
            f"| {_ms(s3.empty_list)} |"
        )
    fill_text = "; ".join(
        f"{side}: " + ", ".join(f"{n:,} by {t:.1f} s" for n, t in fills[side]) for side in SIDES
    )
    first_text = ", ".join(
        f"{side} {t * 1e3:,.0f} ms ({w} windows)" for side, (t, w) in first.items()
    )
    lines += [
        "",
        f"first cycle (the open hour's windows tested): {first_text}",
        f"fill (each step adds to the last): {fill_text}",
    ]
    return "\n".join(lines)
