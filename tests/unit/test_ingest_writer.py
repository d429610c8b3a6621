"""The landing writer publishes every row exactly once, atomically, in the hive layout."""

from __future__ import annotations

import ctypes
import mmap
import os
import uuid
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from ingest import LandingError, Warehouse, schema_from_columns
from ingest.capture import LandingWriter
from ingest.reader import list_landing, read_keys

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

SCHEMA = schema_from_columns("demo", ["a", "b"])


def batch(n: int, start: datetime, replica: str = "r1") -> pa.RecordBatch:
    ts = [start + timedelta(milliseconds=i) for i in range(n)]
    return pa.RecordBatch.from_arrays(
        [
            pa.array(ts, pa.timestamp("us", tz="UTC")),
            pa.array([uuid.uuid4().hex for _ in range(n)]),
            pa.array([replica] * n),
            pa.array(["v1"] * n),
            pa.array([float(i) for i in range(n)]),
            pa.array([float(-i) for i in range(n)]),
            pa.array([1.0] * n),
            pa.array([0.9] * n),
        ],
        schema=SCHEMA.arrow_schema(),
    )


def test_close_publishes_every_row_once_in_hive_layout(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    writer = LandingWriter(wh, SCHEMA, "r1", flush_rows=50, flush_interval=60).start()
    # straddles an hour boundary, so two partitions are written
    start = datetime(2026, 11, 25, 12, 59, 59, 950_000, tzinfo=UTC)
    for i in range(7):
        writer.extend_checked([batch(20, start + timedelta(milliseconds=20 * i))])
    writer.close()
    stats = writer.stats()
    assert stats.captured_rows == stats.flushed_rows == 140
    assert stats.buffered_rows == 0 and stats.dropped_rows == 0

    files = list_landing(wh, "demo")
    assert {f.path.split("/")[3] for f in files} == {"hour=12", "hour=13"}
    assert sum(read_keys(wh, f.path).height for f in files) == 140
    # nothing left behind in staging, and every reader sees the same rows without our code
    assert wh.list_files("_staging", suffix="") == []
    root = wh.uri("landing")
    lazy = pl.scan_parquet(f"{root}/**/*.parquet", hive_partitioning=True)
    assert lazy.select(pl.len()).collect().item() == 140
    dataset = ds.dataset(root, format="parquet", partitioning="hive")
    assert dataset.count_rows() == 140
    assert set(dataset.to_table(columns=["hour"])["hour"].to_pylist()) == {12, 13}
    con = duckdb.connect()
    n = con.execute(
        f"select count(distinct request_id) from read_parquet('{root}/**/*.parquet', "
        "hive_partitioning=true) where model='demo'"
    ).fetchone()[0]
    assert n == 140


def test_interval_flush_publishes_without_close(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    writer = LandingWriter(wh, SCHEMA, "r1", flush_rows=10_000, flush_interval=0.2).start()
    writer.extend_checked([batch(5, datetime.now(UTC))])
    deadline = datetime.now() + timedelta(seconds=10)
    while writer.stats().flushed_rows < 5 and datetime.now() < deadline:
        writer._wake.wait(0.05)
    assert writer.stats().flushed_rows == 5
    writer.close()


def cached_pages(path: str) -> tuple[int, int]:
    """(pages of the file at ``path`` in the page cache, pages it has), by mincore(2)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_COPY) as mm:
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = (ctypes.c_ubyte * pages)()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        # the temporary c_char is gone by the time mm closes: no buffer export outlives it
        start = ctypes.addressof(ctypes.c_char.from_buffer(mm))
        assert libc.mincore(start, size, vec) == 0, os.strerror(ctypes.get_errno())
        return sum(v & 1 for v in vec), pages


def test_landing_files_leave_the_page_cache_and_other_files_keep_it(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    writer = LandingWriter(wh, SCHEMA, "r1", flush_rows=10**6, flush_interval=60)
    # 20 s of rows inside one hour: one file, whatever the time of day
    writer.extend_checked([batch(20_000, datetime(2026, 11, 25, 12, tzinfo=UTC))])
    writer.close()
    (landed,) = list_landing(wh, "demo")
    resident, pages = cached_pages(wh.uri(landed.path))
    assert pages > 10 and resident == 0
    wh.publish_table(pa.Table.from_batches([batch(20_000, datetime.now(UTC))]), "other.parquet")
    resident, pages = cached_pages(wh.uri("other.parquet"))
    assert pages > 10 and resident == pages


def test_failed_flush_keeps_rows_and_retries(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    writer = LandingWriter(wh, SCHEMA, "r1", flush_rows=10_000, flush_interval=60)
    writer.extend_checked([batch(10, datetime.now(UTC))])
    landing = tmp_path / "wh" / "landing"
    landing.write_text("a file where the landing directory should be")
    with pytest.raises(Exception, match="flush of 10 rows failed"):
        writer.flush()
    assert writer.stats().buffered_rows == 10 and writer.stats().failed_flushes == 1
    landing.unlink()
    assert writer.flush() == 10
    assert sum(read_keys(wh, f.path).height for f in list_landing(wh, "demo")) == 10


def test_a_flush_over_two_hours_that_fails_in_the_second_keeps_only_its_rows(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    writer = LandingWriter(wh, SCHEMA, "r1", flush_rows=10_000, flush_interval=60)
    start = datetime(2026, 11, 25, 12, 59, 59, 990_000, tzinfo=UTC)
    rows = batch(30, start)  # 10 rows in hour 12, 20 in hour 13
    writer.extend_checked([rows])
    blocker = tmp_path / "wh" / "landing" / "model=demo" / "date=2026-11-25" / "hour=13"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the hour's directory should be")
    with pytest.raises(Exception, match="flush of 20 rows failed"):
        writer.flush()
    s = writer.stats()
    assert (s.flushed_rows, s.buffered_rows, s.failed_flushes) == (10, 20, 1)
    blocker.unlink()
    assert writer.flush() == 20
    files = list_landing(wh, "demo")
    assert {f.path.split("/")[3] for f in files} == {"hour=12", "hour=13"}
    landed = pl.concat([read_keys(wh, f.path) for f in files])
    assert sorted(landed["request_id"].to_list()) == sorted(rows["request_id"].to_pylist())


def test_batches_of_many_requests_are_cut_at_the_buffer_bound(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    writer = LandingWriter(wh, SCHEMA, "r1", flush_rows=10_000, max_buffer_rows=25)
    first, second = batch(20, datetime.now(UTC)), batch(20, datetime.now(UTC))
    writer.extend_checked([first, second])
    s = writer.stats()
    assert (s.captured_rows, s.buffered_rows, s.dropped_rows) == (40, 25, 15)
    assert writer.flush() == 25
    kept = pl.concat([read_keys(wh, f.path) for f in list_landing(wh, "demo")])
    expected = first["request_id"].to_pylist() + second["request_id"].to_pylist()[:5]
    assert sorted(kept["request_id"].to_list()) == sorted(expected)


class AnswerLost(type(Warehouse("/tmp/driftlake-doc-wh"))):
    """A local warehouse whose next ``lose`` publishes land but report failure, like an
    upload whose response a network reset swallowed."""

    lose = 0

    def publish_table(self, table, rel, **kwargs):
        stored = super().publish_table(table, rel, **kwargs)
        if self.lose:
            self.lose -= 1
            raise LandingError("connection reset by peer")
        return stored


def test_an_upload_that_landed_but_reported_failure_is_not_published_twice(tmp_path):
    wh = AnswerLost(tmp_path / "wh")
    writer = LandingWriter(wh, SCHEMA, "r1", flush_rows=10_000, flush_interval=60)
    start = datetime(2026, 11, 25, 12, 59, 59, 990_000, tzinfo=UTC)
    first = batch(30, start)  # 10 rows in hour 12, 20 in hour 13
    writer.extend_checked([first])
    wh.lose = 2  # hour 12 lands but looks failed; the retry of the flush fails the same way
    with pytest.raises(LandingError):
        writer.flush()
    later = batch(5, start + timedelta(seconds=1))  # more rows arrive before the retry
    writer.extend_checked([later])
    with pytest.raises(LandingError):
        writer.flush()
    writer.flush()
    files = list_landing(wh, "demo")
    landed = pl.concat([read_keys(wh, f.path) for f in files])["request_id"].to_list()
    want = first["request_id"].to_pylist() + later["request_id"].to_pylist()
    assert sorted(landed) == sorted(want)  # each row once
    s = writer.stats()
    assert (s.flushed_rows, s.buffered_rows) == (35, 0)
