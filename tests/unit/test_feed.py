"""The landing feed gives a consumer each landing file once, quarantines bad ones once, and
seals finished hours; its mark is stored in the analytics checkpoint's version-1 format."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from analytics.checkpoint import Checkpoint
from harness import MODEL
from harness.landing import holdout_rows, write_landing
from ingest import CheckpointError, Warehouse, list_quarantined, sealed_before
from ingest.feed import KEY_SCHEMA, FeedBatch, FeedMark, advance, poll, release, seal
from ingest.listing import list_landing
from ingest.paths import hour_partition

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]

HOUR = 3_600_000_000
DAY = datetime(2024, 3, 1, tzinfo=UTC)
DAY_US = int(DAY.timestamp()) * 1_000_000


def part(hour: int) -> str:
    return hour_partition(MODEL, DAY_US + hour * HOUR)


# -- the mark, pure ------------------------------------------------------------------------


@given(
    hours=st.sets(st.integers(0, 24 * 40), max_size=12),
    sealed=st.integers(0, 24 * 40),
    boundary_us=st.integers(0, 24 * 40 * HOUR),
)
def test_seal_prunes_exactly_the_partitions_of_hours_before_the_boundary(
    hours, sealed, boundary_us
):
    seen = {part(h): frozenset({f"r1-{h:012d}-0000beef.parquet"}) for h in hours}
    mark = FeedMark(DAY_US + sealed * HOUR, seen)
    got = seal(mark, DAY_US + boundary_us)
    # oracle: hours sealed whole; a mark never moves back
    boundary_hour = max(sealed, boundary_us // HOUR)
    assert got.sealed_before_us == DAY_US + boundary_hour * HOUR
    if boundary_hour == sealed:
        assert got == mark
    else:
        assert got.seen == {part(h): seen[part(h)] for h in hours if h >= boundary_hour}
    assert mark.seen == seen  # the old mark is untouched


def test_advance_adds_exactly_the_batch_files():
    mark = FeedMark(DAY_US, {part(0): frozenset({"a.parquet"}), part(1): frozenset({"b.parquet"})})
    batch = FeedBatch(files=(f"{part(0)}/c.parquet", f"{part(2)}/d.parquet"))
    got = advance(mark, batch)
    assert got == FeedMark(
        DAY_US,
        {
            part(0): frozenset({"a.parquet", "c.parquet"}),
            part(1): frozenset({"b.parquet"}),
            part(2): frozenset({"d.parquet"}),
        },
    )
    assert mark.seen[part(0)] == {"a.parquet"}  # the old mark is untouched
    assert advance(got, FeedBatch()) == got


# written by the checkpoint before the feed held its fields: must load, and save identically
OLD_CHECKPOINT = (
    b'{"version":1,"next_window_id":4,"cursor":[1709276400000000,"ab-1"],"seen":'
    b'{"landing/model=breast_cancer/date=2024-03-01/hour=06":'
    b'["compacted-0123456789ab-0000of0001.parquet"],'
    b'"landing/model=breast_cancer/date=2024-03-01/hour=07":'
    b'["r1-000000000001-0000cafe.parquet","r2-000000000002-0000beef.parquet"]},'
    b'"sealed_before_us":1709269200000000,"replica_high_us":{"r1":1709280000000000},'
    b'"pending":{"file":["landing/model=breast_cancer/date=2024-03-01/hour=07/'
    b'r1-000000000001-0000cafe.parquet"],"row":[7],"ts":[1709280000000000],'
    b'"request_id":["ab-2"],"replica":["r1"]},"windows_total":4,"drifted_windows_total":1,'
    b'"rows_tested_total":400,"late_rows_total":2,"last_drift_us":1709276400000000,'
    b'"quarantined_total":3}'
)


def test_a_checkpoint_in_the_old_format_loads_and_saves_byte_for_byte():
    cp = Checkpoint.from_bytes(OLD_CHECKPOINT)
    assert cp.feed == FeedMark(
        1709269200000000,
        {
            part(6): frozenset({"compacted-0123456789ab-0000of0001.parquet"}),
            part(7): frozenset(
                {"r1-000000000001-0000cafe.parquet", "r2-000000000002-0000beef.parquet"}
            ),
        },
    )
    assert cp.to_bytes() == OLD_CHECKPOINT
    assert FeedMark.from_json(cp.feed.to_json()) == cp.feed


@pytest.mark.parametrize(
    "seen",
    [
        {"landing/model=breast_cancer/notes": []},
        {part(6): "r1-000000000001-0000cafe.parquet"},
        [part(6)],
    ],
)
def test_a_checkpoint_with_a_malformed_seen_set_is_a_clear_error(seen):
    body = {**json.loads(OLD_CHECKPOINT), "seen": seen}
    with pytest.raises(CheckpointError, match="checkpoint is unreadable"):
        Checkpoint.from_bytes(json.dumps(body).encode())


# -- polling a real landing zone -----------------------------------------------------------


def test_poll_gives_each_file_once_quarantines_bad_files_once_and_skips_sealed_hours(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    write_landing(wh, holdout_rows(100, seed=1), start=DAY + timedelta(minutes=5))
    write_landing(wh, holdout_rows(100, seed=2), start=DAY + timedelta(hours=1, minutes=5))
    files = [f.path for f in list_landing(wh, MODEL)]
    assert len(files) == 4
    whole = Path(wh.uri(files[2])).read_bytes()
    foreign = f"{part(1)}/export.parquet"
    torn = f"{part(1)}/r9-000000000001-deadbeef.parquet"
    Path(wh.uri(foreign)).write_bytes(whole)
    Path(wh.uri(torn)).write_bytes(whole[: len(whole) // 2])

    first = poll(wh, MODEL, FeedMark())
    assert first.files == tuple(files)
    assert first.keys.schema == pl.Schema(KEY_SCHEMA)
    assert first.keys.group_by("file", maintain_order=True).len().rows() == [(f, 50) for f in files]
    reasons = {r.path: r.reason for r in first.quarantined}
    assert sorted(reasons) == [foreign, torn]
    assert "fits no pattern" in reasons[foreign] and "parquet" in reasons[torn].lower()
    assert sorted(list_quarantined(wh)) == sorted(
        p.replace("landing/", "quarantine/", 1) for p in (foreign, torn)
    )

    mark = advance(FeedMark(), first)
    again = poll(wh, MODEL, mark)
    assert (again.files, again.keys.height, again.quarantined) == ((), 0, ())

    # hour 0 sealed: its late file is never listed; hour 1's new file is read, once
    mark = seal(mark, DAY_US + HOUR + 30 * 60 * 1_000_000)
    assert mark.sealed_before_us == DAY_US + HOUR and set(mark.seen) == {part(1)}
    write_landing(wh, holdout_rows(10, seed=3), start=DAY + timedelta(minutes=50), per_file=10)
    write_landing(wh, holdout_rows(10, seed=4), start=DAY + timedelta(hours=1, minutes=50))
    late, new = sorted(set(f.path for f in list_landing(wh, MODEL)) - set(files))
    assert late.startswith(part(0)) and new.startswith(part(1))
    third = poll(wh, MODEL, mark)
    assert third.files == (new,) and third.keys.height == 10
    assert poll(wh, MODEL, advance(mark, third)).files == ()

    # compaction may rewrite the sealed hours, but not one whose rows are still held
    release(wh, MODEL, "analytics", seal(mark, DAY_US + 2 * HOUR), holding=[new])
    assert sealed_before(wh, MODEL) == DAY_US + HOUR
    release(wh, MODEL, "analytics", seal(mark, DAY_US + 2 * HOUR))
    assert sealed_before(wh, MODEL) == DAY_US + 2 * HOUR


def test_a_bounded_poll_reads_the_oldest_files_each_replicas_in_order_and_names_the_rest(
    tmp_path,
):
    wh = Warehouse(tmp_path / "wh")
    for replica, seed in (("r1", 1), ("r2", 2)):  # 3 files per replica in hour 0, 2 in hour 1
        write_landing(wh, holdout_rows(30, seed=seed), replica=replica, start=DAY, per_file=10)
        later = DAY + timedelta(hours=1, minutes=seed)
        write_landing(wh, holdout_rows(20, seed=seed), replica=replica, start=later, per_file=10)
    files = [f.path for f in list_landing(wh, MODEL)]
    hour0 = sorted(p for p in files if p.startswith(part(0)))

    first = poll(wh, MODEL, FeedMark(), max_files=3)
    # replicas take turns, each in sequence order; hour 1 is not even listed
    assert first.files == (hour0[0], hour0[3], hour0[1])
    assert first.unread == {"r1": DAY_US, "r2": DAY_US, None: DAY_US + HOUR}
    # a replica's unread files hold no row before its newest row read
    high = {"r1": DAY_US + 10 * 10_000, "r2": DAY_US + 5 * 10_000}
    assert first.unread_from_us(high) == DAY_US + 5 * 10_000
    assert first.unread_from_us({"r1": DAY_US + HOUR + 1, "r2": DAY_US + HOUR + 2}) == DAY_US + HOUR
    assert first.unread_from_us({}) == DAY_US

    by_rows = poll(wh, MODEL, FeedMark(), max_rows=15)  # no file once it holds 15 rows
    assert by_rows.files == first.files[:2] and by_rows.keys.height == 20

    mark, got = FeedMark(), []
    for _ in range(5):
        batch = poll(wh, MODEL, mark, max_files=3)
        got += batch.files
        mark = advance(mark, batch)
        if not batch.unread:
            break
    assert sorted(got) == sorted(files) and len(got) == len(files) == 10
    last = poll(wh, MODEL, mark, max_files=3)
    assert (last.files, last.keys.height, last.unread) == ((), 0, {})
