"""Compaction and retention on a real landing zone: readers running at the same time see every
row exactly once, closed hours shrink to the target file count, expired data goes."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from harness import MODEL, ROOT
from harness.landing import DAY, holdout_rows, hour_us, write_landing
from harness.procs import wait_until
from ingest import FileVanishedError, Warehouse, hold, list_quarantined, mark_sealed
from ingest.maintain import CompactionPolicy, RetentionPolicy, compact, retain
from ingest.manifest import view_partition
from ingest.paths import hour_partition
from ingest.reader import (
    landing_files,
    landing_partitions,
    list_landing,
    read_keys,
    read_landing,
    scan_landing,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HOUR_US = 3_600_000_000
TARGET = 10_000  # rows per compacted file: an hour of 12,000 rows becomes 2 files


def fill(wh: Warehouse, hours: range, rows_per_replica: int, per_file: int) -> list[str]:
    """Two replicas' rows in each of ``hours`` (many small files each); returns request ids."""
    ids: list[str] = []
    step = timedelta(seconds=3000 / rows_per_replica)
    for h in hours:
        for k, replica in enumerate(("r1", "r2")):
            start = DAY + timedelta(hours=h, seconds=k)
            rows = holdout_rows(rows_per_replica, seed=h * 10 + k)
            ids += write_landing(
                wh, rows, replica=replica, start=start, step=step, per_file=per_file
            )
    return ids


def compact_cli(wh: Warehouse, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLAKE_")}
    cmd = [sys.executable, "-m", "ingest", *args, "--warehouse", wh.root]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)


def test_readers_see_every_row_once_while_compaction_runs(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    expected = sorted(fill(wh, range(6), rows_per_replica=6000, per_file=400))
    open_start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    expected = sorted(
        expected + write_landing(wh, holdout_rows(100), start=open_start + timedelta(seconds=1))
    )
    before = {p: len(view_partition(wh, p).visible) for p in landing_partitions(wh, MODEL)}
    assert sum(before.values()) == 6 * 2 * 15 + 2

    stop = threading.Event()
    reads: dict[str, list[tuple[float, float]]] = {"landing": [], "keys": [], "duckdb": []}
    failures: list[str] = []

    def check(kind: str, ids: list[str], started: float) -> None:
        reads[kind].append((started, time.time()))
        if sorted(ids) != expected:
            failures.append(f"{kind}: {len(ids)} rows ({len(set(ids))} distinct)")

    def read_all() -> None:  # the notebook / eager path
        while not stop.is_set():
            t = time.time()
            ids = read_landing(wh, MODEL, ["request_id"])["request_id"].to_list()
            check("landing", ids, t)

    def read_keys_of_listing() -> None:  # the analytics / backfill path: list, then read keys
        while not stop.is_set():
            t = time.time()
            try:
                files = list_landing(wh, MODEL)
                ids = pl.concat([read_keys(wh, f.path) for f in files])["request_id"]
            except FileVanishedError:
                continue  # listed, then replaced: the reader lists again
            check("keys", ids.to_list(), t)

    def read_duckdb() -> None:  # a user's query over the resolved file list
        con = duckdb.connect()
        while not stop.is_set():
            t = time.time()
            try:
                files = landing_files(wh, MODEL)
                rows = con.execute(
                    "select request_id from read_parquet($f, union_by_name=true)", {"f": files}
                ).fetchall()
            except (duckdb.IOException, FileNotFoundError):
                continue  # a file deleted after listing: the query fails, never lies
            check("duckdb", [r[0] for r in rows], t)

    def guarded(loop):
        def run() -> None:
            try:
                loop()
            except Exception as exc:  # a reader that raised is a failed read
                failures.append(f"{loop.__name__} raised {exc!r}")

        return run

    threads = [
        threading.Thread(target=guarded(t)) for t in (read_all, read_keys_of_listing, read_duckdb)
    ]
    for t in threads:
        t.start()
    try:
        proc = compact_cli(
            wh,
            "compact",
            "--force",
            "--grace=60",
            "--delete-after=0",
            f"--target-file-rows={TARGET}",
            "--no-retain",
        )
        ended = time.time()
        # every reader also reads the finished result a couple of times
        wait_until(lambda: all(sum(e > ended for _, e in r) >= 2 for r in reads.values()))
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "compact breast_cancer: 6 hours, 72000 rows, 180 -> 12 files" in proc.stdout
    assert not failures, failures[:5]
    # reads really ran while the groups were being published and the old files deleted
    published = [f.mtime_ns / 1e9 for f in wh.list_files("landing") if "compacted-" in f.path]
    first, last = min(published), max(published)
    overlapping = [r for r in reads["landing"] + reads["duckdb"] if r[0] < last and r[1] > first]
    assert overlapping, {k: len(v) for k, v in reads.items()}

    after = {p: len(view_partition(wh, p).visible) for p in landing_partitions(wh, MODEL)}
    for h in range(6):
        part = hour_partition(MODEL, hour_us(h))
        assert after[part] == math.ceil(12_000 / TARGET)  # the target file count
        assert len(wh.list_files(part)) == after[part]  # and the old files are gone
    open_part = hour_partition(MODEL, int(open_start.timestamp() * 1e6))
    assert after[open_part] == before[open_part] == 2  # the open hour is not touched
    assert sorted(read_landing(wh, MODEL)["request_id"]) == expected

    # compacted files: zstd, sorted by ts
    for f in list_landing(wh, MODEL, until_us=hour_us(6)):
        meta = pq.ParquetFile(wh.uri(f.path)).metadata
        assert meta.row_group(0).column(0).compression == "ZSTD" and meta.num_row_groups == 1
        ts = pq.read_table(wh.uri(f.path), columns=["ts"])["ts"].to_pylist()
        assert ts == sorted(ts)


def test_late_file_in_a_compacted_hour_is_recompacted_once(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    ids = fill(wh, range(1), rows_per_replica=300, per_file=50)
    policy = CompactionPolicy(grace_seconds=0, delete_after_seconds=3600)
    first = compact(wh, MODEL, policy, force=True)
    assert [p.files_after for p in first.partitions] == [1]
    part = first.partitions[0].partition
    # the replaced files stay (readers may have listed them) but are no longer visible
    assert len(wh.list_files(part)) == 1 + 12 and len(list_landing(wh, MODEL)) == 1
    late = write_landing(wh, holdout_rows(7), start=DAY + timedelta(minutes=59))
    assert sorted(read_landing(wh, MODEL)["request_id"]) == sorted(ids + late)
    second = compact(wh, MODEL, policy, force=True)
    assert [(p.files_before, p.files_after) for p in second.partitions] == [(2, 1)]
    assert sorted(read_landing(wh, MODEL)["request_id"]) == sorted(ids + late)
    # once the newest group is older than delete_after, everything it replaced is deleted
    third = compact(wh, MODEL, policy, force=True, now=time.time() + 3601)
    assert third.partitions[0].deleted == 12 + 1 + 1
    assert len(wh.list_files(part)) == 1
    assert sorted(read_landing(wh, MODEL)["request_id"]) == sorted(ids + late)


def test_compaction_only_touches_hours_every_reader_is_done_with(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    fill(wh, range(4), rows_per_replica=50, per_file=25)
    policy = CompactionPolicy(grace_seconds=0, delete_after_seconds=0)

    def compacted() -> list[int]:
        return [
            h
            for h in range(4)
            if not view_partition(wh, hour_partition(MODEL, hour_us(h))).uncompacted
        ]

    report = compact(wh, MODEL, policy)
    assert report.skipped and "progress mark" in report.skipped and compacted() == []
    # the live job is done with hours 0-1, but still holds rows of a file in hour 1
    pending = [f.path for f in list_landing(wh, MODEL, since_us=hour_us(1))][:1]
    mark_sealed(wh, MODEL, "analytics", hour_us(3), pending=pending)
    compact(wh, MODEL, policy)
    assert compacted() == [0]
    # a backfill from hour 2 holds its range while it runs; the live job moves on
    mark_sealed(wh, MODEL, "analytics", hour_us(4))
    with hold(wh, MODEL, "backfill-x", hour_us(2)):
        compact(wh, MODEL, policy)
        assert compacted() == [0, 1]
    compact(wh, MODEL, policy)
    assert compacted() == [0, 1, 2, 3]


def test_retention_deletes_old_compacted_hours_and_older_history(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    fill(wh, range(3), rows_per_replica=20, per_file=20)
    for day in ("2025-12-01", "2025-12-30", "2026-01-01"):
        wh.write_bytes(f"drift/model={MODEL}/date={day}/window-0000000001.parquet", b"x")
    now = (DAY + timedelta(days=10)).timestamp()
    # hours 0-1 compacted, hour 2 not: it waits for compaction rather than vanishing unseen
    mark_sealed(wh, MODEL, "analytics", hour_us(2))
    compact(wh, MODEL, CompactionPolicy(grace_seconds=0, delete_after_seconds=0), now=now)
    mark_sealed(wh, MODEL, "analytics", hour_us(3))
    report = retain(wh, MODEL, RetentionPolicy(landing_days=5, history_days=20), now=now)
    assert [p.rsplit("hour=", 1)[1] for p in report.landing_hours_deleted] == ["00", "01"]
    assert [p.rsplit("hour=", 1)[1] for p in report.waiting_for_compaction] == ["02"]
    assert report.history_days_deleted == ("2025-12-01",)
    assert [f.path.split("/")[2] for f in wh.list_files(f"drift/model={MODEL}")] == [
        "date=2025-12-30",
        "date=2026-01-01",
    ]
    assert read_landing(wh, MODEL)["hour"].unique().to_list() == [2]

    # the CLI: compact (and then retain) the rest
    proc = compact_cli(wh, "compact", "--grace=0", "--delete-after=0", "--landing-retention-days=5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "retain breast_cancer: 1 landing hours" in proc.stdout, proc.stdout
    assert landing_partitions(wh, MODEL) == []
    assert scan_landing(wh, MODEL).collect().is_empty()
    bad = compact_cli(wh, "retain", "--landing-retention-days=-1")
    assert bad.returncode == 2 and "landing_retention_days" in bad.stderr


def test_compaction_quarantines_an_unreadable_file_and_compacts_the_rest(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    ids = fill(wh, range(1), rows_per_replica=100, per_file=25)
    part = hour_partition(MODEL, hour_us(0))
    good = wh.list_files(part)[0]
    data = Path(wh.uri(good.path)).read_bytes()
    torn = f"{part}/r9-000000000001-0badf11e.parquet"
    Path(wh.uri(torn)).write_bytes(data[: len(data) // 2])
    report = compact(wh, MODEL, CompactionPolicy(grace_seconds=0), force=True)
    assert report.partitions[0].quarantined == (torn,)
    assert list_quarantined(wh) == [torn.replace("landing/", "quarantine/", 1)]
    assert [f.replica for f in list_landing(wh, MODEL)] == [None]
    assert sorted(read_landing(wh, MODEL)["request_id"]) == sorted(ids)
