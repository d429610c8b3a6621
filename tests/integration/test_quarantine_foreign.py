"""Files of a landing hour that are not the project's, or compacted parts that cannot be read,
are quarantined with their reason by the analytics job, compaction and retention; readers and
backfills never read them, never fail on them; valid and still-publishing groups stay."""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from analytics import AnalyticsSettings, Driver, load_checkpoint
from analytics.backfill import backfill
from harness import MODEL, REFERENCE
from harness.landing import DAY, holdout_rows, hour_us, write_landing
from harness.procs import driftlake_env, run_python
from ingest import (
    ConfigError,
    RejectedFile,
    Warehouse,
    list_quarantined,
    quarantine,
    quarantine_rejected,
)
from ingest.maintain import CompactionPolicy, RetentionPolicy, compact, retain
from ingest.maintain.settings import MaintenanceSettings
from ingest.paths import hour_partition
from ingest.reader import landing_files, list_landing, read_landing, scan_landing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

WINDOW = 100
PATTERNS = (
    "<replica>-<12-digit seq>-<8 hex>.parquet",
    "compacted-<12 hex>-<4 digits>of<4 digits>.parquet",
)


def settings_for(wh: Warehouse) -> AnalyticsSettings:
    return AnalyticsSettings(
        warehouse=wh.root,
        reference_path=str(REFERENCE),
        window_size=WINDOW,
        max_lateness=1.0,
        seal_after=0.0,
        n_workers=1,
        dashboard_address=None,
        maintenance=MaintenanceSettings(compact_grace=0, landing_retention_days=None),
    )


def plant(wh: Warehouse, rel: str, data: bytes) -> str:
    Path(wh.uri(rel)).parent.mkdir(parents=True, exist_ok=True)
    Path(wh.uri(rel)).write_bytes(data)
    return rel


def plant_hostile(wh: Warehouse, part: str) -> dict[str, str]:
    """Put every kind of file that is not the project's (or is unreadable) into ``part``;
    the readable ones are copies of a real landing file, so reading one would count its rows
    twice. Returns each planted path and what it is."""
    good = wh.list_files(part)[0]
    data = Path(wh.uri(good.path)).read_bytes()
    name = good.path.rsplit("/", 1)[1]
    return {
        plant(wh, f"{part}/compacted-0123456789ab-0000of0001.parquet", data[: len(data) // 2]): (
            "truncated"
        ),
        plant(wh, f"{part}/compacted-ba9876543210-0000of0001.parquet", data): "record-less",
        plant(wh, f"{part}/data.parquet", data): "foreign",
        plant(wh, f"{part}/r1-000001-abcdef12.parquet", data): "foreign",
        plant(wh, f"{part}/notes.txt", b"not parquet"): "foreign",
        plant(wh, f"{part}/sub/{name}", data): "foreign",
    }


def check_quarantined(wh: Warehouse, planted: dict[str, str]) -> None:
    assert list_quarantined(wh) == sorted(p.replace("landing/", "quarantine/", 1) for p in planted)
    for path, kind in planted.items():
        dest = path.replace("landing/", "quarantine/", 1)
        note = json.loads(wh.read_bytes(dest + ".reason.json"))
        assert note["source"] == path
        if kind == "foreign":
            assert all(pattern in note["reason"] for pattern in PATTERNS), note
        elif kind == "record-less":
            assert "driftlake.compaction" in note["reason"], note
        else:
            assert "parquet" in note["reason"].lower(), note


def glob_rows(wh: Warehouse) -> int:
    """Rows a plain glob of the landing zone counts (what a user's DuckDB or Polars sees)."""
    return pl.scan_parquet(wh.uri("landing") + "/**/*.parquet").select(pl.len()).collect().item()


def test_the_job_quarantines_what_is_not_ours_and_tests_every_good_row(
    tmp_path, dask_cluster, caplog
):
    wh = Warehouse(tmp_path / "wh")
    ids = write_landing(wh, holdout_rows(250), start=DAY + timedelta(minutes=5))
    planted = plant_hostile(wh, hour_partition(MODEL, hour_us(0)))

    # readers and a backfill neither fail nor read them
    assert sorted(read_landing(wh, MODEL)["request_id"]) == sorted(ids)
    assert scan_landing(wh, MODEL).select(pl.len()).collect().item() == 250
    assert len(landing_files(wh, MODEL)) == len(list_landing(wh, MODEL)) == 5
    driver = Driver(settings_for(wh), dask_cluster)
    report = backfill(
        dask_cluster, wh, driver.profile, driver.config, window_size=WINDOW, name="b1"
    )
    assert report.rows == 250 and sorted(report.unreadable) == sorted(planted)
    assert list_quarantined(wh) == []  # a backfill reads; it moves nothing

    with caplog.at_level(logging.ERROR, logger="driftlake.ingest.quarantine"):
        cycle = driver.run_cycle(now=hour_us(3) / 1e6)
    assert sorted(cycle.quarantined) == sorted(planted)
    assert cycle.new_rows == 250 and [w.spec.rows for w in cycle.windows] == [WINDOW, WINDOW]
    check_quarantined(wh, planted)
    assert load_checkpoint(wh, MODEL).quarantined_total == len(planted)
    logged = [r.getMessage() for r in caplog.records if "event=file_quarantined" in r.getMessage()]
    assert len(logged) == len(planted) and not any("\n" in m for m in logged)
    assert glob_rows(wh) == 250  # a plain glob now counts what the job tested

    again = driver.run_cycle(now=hour_us(3) / 1e6)
    assert again.quarantined == () and again.new_rows == 0
    assert load_checkpoint(wh, MODEL).quarantined_total == len(planted)


def test_valid_groups_and_groups_still_publishing_are_never_quarantined(tmp_path, dask_cluster):
    wh = Warehouse(tmp_path / "wh")
    ids = []
    for h in range(3):
        start = DAY + timedelta(hours=h, minutes=5)
        ids += write_landing(wh, holdout_rows(300, seed=h), start=start, step=timedelta(seconds=1))
    # each hour becomes a group of two parts; the replaced files stay an hour
    policy = CompactionPolicy(grace_seconds=0, target_file_rows=150, delete_after_seconds=3600)
    compact(wh, MODEL, policy, force=True, now=hour_us(4) / 1e6)
    parts = [
        sorted(
            f.path
            for f in wh.list_files(hour_partition(MODEL, hour_us(h)))
            if "compacted-" in f.path
        )
        for h in range(3)
    ]
    assert [len(p) for p in parts] == [2, 2, 2]
    os.remove(wh.uri(parts[1][1]))  # hour 1: its group's last part is not published yet
    data = Path(wh.uri(parts[2][1])).read_bytes()
    Path(wh.uri(parts[2][1])).write_bytes(data[: len(data) // 3])  # hour 2: a part is torn

    cycle = Driver(settings_for(wh), dask_cluster).run_cycle(now=hour_us(4) / 1e6)
    assert cycle.quarantined == (parts[2][1],)
    # hour 0 from its group, hours 1 and 2 from the files their groups would replace: every
    # row once
    assert cycle.new_rows == 900
    assert sorted(read_landing(wh, MODEL)["request_id"]) == sorted(ids)
    for kept in (*parts[0], parts[1][0], parts[2][0]):
        assert wh.stat(kept) is not None, kept


def test_compaction_and_retention_quarantine_rather_than_read_or_delete(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    part = hour_partition(MODEL, hour_us(0))
    ids = write_landing(wh, holdout_rows(100), start=DAY + timedelta(minutes=5), per_file=25)
    planted = plant_hostile(wh, part)
    report = compact(wh, MODEL, CompactionPolicy(grace_seconds=0), force=True)
    assert sorted(report.partitions[0].quarantined) == sorted(planted)
    assert report.rows == 100 and report.partitions[0].files_after == 1
    check_quarantined(wh, planted)
    assert sorted(read_landing(wh, MODEL)["request_id"]) == sorted(ids)

    # a foreign file in an hour that is already compacted: the next run moves it aside
    late = plant(
        wh, f"{part}/export.parquet", Path(wh.uri(list_landing(wh, MODEL)[0].path)).read_bytes()
    )
    again = compact(wh, MODEL, CompactionPolicy(grace_seconds=0), force=True)
    assert [p.quarantined for p in again.partitions] == [(late,)] and again.rows == 0
    # and retention moves one aside before it deletes the expired hour around it
    last = plant(wh, f"{part}/copy.parquet", b"PAR1")
    kept = retain(wh, MODEL, RetentionPolicy(landing_days=1), force=True, now=hour_us(72) / 1e6)
    assert kept.landing_hours_deleted == (part,) and kept.quarantined == (last,)
    assert last.replace("landing/", "quarantine/", 1) in list_quarantined(wh)


def test_quarantine_skips_a_vanished_file_and_keeps_an_earlier_one_of_the_same_name(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    gone = f"{hour_partition(MODEL, hour_us(0))}/data.parquet"
    assert quarantine_rejected(wh, [RejectedFile(gone, "foreign")]) == []
    assert list_quarantined(wh) == []
    for body in (b"first", b"second"):
        plant(wh, gone, body)
        assert quarantine_rejected(wh, [RejectedFile(gone, "foreign")]) == [gone]
    kept = list_quarantined(wh)
    assert sorted(Path(wh.uri(q)).read_bytes() for q in kept) == [b"first", b"second"]
    assert all(wh.read_bytes(q + ".reason.json") for q in kept)
    with pytest.raises(ConfigError):
        quarantine(wh, "_state/model=m/checkpoint.json", "not a landing file")
    with pytest.raises(ConfigError):
        quarantine(wh, "landing/../_state/model=m/checkpoint.json", "not a landing file")


def test_drain_completes_beside_a_corrupt_compacted_file(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    write_landing(wh, holdout_rows(250), start=DAY + timedelta(minutes=5))
    planted = plant_hostile(wh, hour_partition(MODEL, hour_us(0)))
    env = driftlake_env(
        warehouse=wh.root,
        reference_path=REFERENCE,
        window_size=WINDOW,
        max_lateness=1,
        n_workers=1,
        dashboard_address="",
    )
    proc = run_python(["-m", "analytics", "run", "--drain"], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_quarantined(wh, planted)
    cp = load_checkpoint(wh, MODEL)
    assert cp.windows_total == 2 and cp.quarantined_total == len(planted)


def test_a_group_that_lost_a_part_is_quarantined_whole_and_comes_back_whole(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    ids = write_landing(wh, holdout_rows(300), start=DAY + timedelta(minutes=5), per_file=50)
    policy = CompactionPolicy(grace_seconds=0, target_file_rows=150, delete_after_seconds=0)
    compact(wh, MODEL, policy, force=True)  # two parts; the replaced files are deleted
    pair = [f.path for f in list_landing(wh, MODEL)]
    assert len(pair) == 2 and all("compacted-" in p for p in pair)
    whole = Path(wh.uri(pair[1])).read_bytes()
    Path(wh.uri(pair[1])).write_bytes(whole[: len(whole) // 2])

    # the intact part holds the only copy of its rows: moved aside with the torn one, not
    # deleted as a crashed run's part would be
    report = compact(wh, MODEL, policy, force=True)
    assert sorted(report.partitions[0].quarantined) == pair
    assert report.partitions[0].deleted == 0 and list_landing(wh, MODEL) == []
    note = json.loads(wh.read_bytes(pair[0].replace("landing/", "quarantine/", 1) + ".reason.json"))
    assert "its rows are nowhere else" in note["reason"]

    # repaired and moved back together, the group is whole again: every row once
    for path in pair:
        wh.move(path.replace("landing/", "quarantine/", 1), path)
    Path(wh.uri(pair[1])).write_bytes(whole)
    assert sorted(read_landing(wh, MODEL)["request_id"]) == sorted(ids)


def test_a_torn_older_group_never_shows_its_replaced_files_beside_the_newer_group(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    ids = write_landing(wh, holdout_rows(100), start=DAY + timedelta(minutes=5), per_file=25)
    keep = CompactionPolicy(grace_seconds=0, delete_after_seconds=3600)  # replaced files stay
    compact(wh, MODEL, keep, force=True)
    (older,) = [f.path for f in list_landing(wh, MODEL)]
    ids += write_landing(wh, holdout_rows(10), start=DAY + timedelta(minutes=50))  # late
    compact(wh, MODEL, keep, force=True)  # the newer group replaces the older and the late file
    assert wh.stat(older) is not None and len(list_landing(wh, MODEL)) == 1
    Path(wh.uri(older)).write_bytes(b"torn")

    # the newer group's record names the writers' files the older one replaced: still once
    assert sorted(read_landing(wh, MODEL)["request_id"]) == sorted(ids)
    # the replaced files go, writers' files before the older group's part
    cycle = compact(wh, MODEL, CompactionPolicy(grace_seconds=0), force=True, now=time.time() + 1)
    assert cycle.partitions[0].deleted == 4 + 1 + 1 and cycle.partitions[0].quarantined == ()
    assert sorted(read_landing(wh, MODEL)["request_id"]) == sorted(ids)
