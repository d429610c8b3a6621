"""append_block lands exactly each request's rows, once each."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest import SchemaError, Warehouse, schema_from_columns
from ingest.capture import LandingWriter
from ingest.reader import list_landing

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

FEATURES = ("a", "b", "c")
SCHEMA = schema_from_columns("demo", FEATURES)
# 12:59:59.990 UTC: requests 1 ms apart straddle an hour boundary, so two partitions
START_US = int(datetime(2026, 11, 25, 12, 59, 59, 990_000, tzinfo=UTC).timestamp() * 1e6)


def requests(seed: int = 0, n: int = 40) -> list[tuple]:
    """Requests of 1 to 32 rows: (ts_us, id prefix, x, prediction, score or None, version)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        rows = int(rng.integers(1, 33))
        prefix = uuid.uuid4().hex
        x = rng.normal(size=(rows, len(FEATURES)))
        prediction = rng.integers(0, 2, rows).astype(np.float64)
        score = None if k % 7 == 3 else rng.random(rows)  # some null scores in between
        version = "v2" if k % 11 == 5 else "v1"
        out.append((START_US + 1000 * (k % 40), prefix, x, prediction, score, version))
    return out


def landed(wh: Warehouse) -> pa.Table:
    tables = [pq.read_table(wh.uri(f.path)) for f in list_landing(wh, "demo")]
    return pa.concat_tables(tables).sort_by("request_id")


def request_batch(ts_us, prefix, x, prediction, score, version) -> pa.RecordBatch:
    """The oracle: one request's landing rows, built column by column, apart from the block
    code (row ``i`` has request id ``<prefix>-<i>``)."""
    n = x.shape[0]
    return pa.RecordBatch.from_arrays(
        [
            pa.array([ts_us] * n, pa.timestamp("us", tz="UTC")),
            pa.array([f"{prefix}-{i}" for i in range(n)], pa.string()),
            pa.array(["r1"] * n, pa.string()),
            pa.array([version] * n, pa.string()),
            *(pa.array(np.asarray(x, np.float64)[:, j]) for j in range(x.shape[1])),
            pa.array(np.asarray(prediction, np.float64)),
            pa.nulls(n, pa.float64()) if score is None else pa.array(score, pa.float64()),
        ],
        schema=SCHEMA.arrow_schema(),
    )


def write_as_batches(wh: Warehouse, reqs: list[tuple]) -> LandingWriter:
    """Land ``reqs`` as the oracle's record batches (the path a flusher's batches take)."""
    writer = LandingWriter(wh, SCHEMA, "r1", flush_rows=10**6, flush_interval=3600)
    writer.extend_checked([request_batch(*r) for r in reqs])
    return writer


@pytest.mark.parametrize("n", [40, 1200], ids=["one-batch", "several-batches"])
def test_append_block_lands_exactly_the_rows_of_each_request(tmp_path, n):
    reqs = requests(n=n)
    by_batch = write_as_batches(Warehouse(tmp_path / "batch"), reqs)
    by_batch.close()
    wh = Warehouse(tmp_path / "block")
    writer = LandingWriter(wh, SCHEMA, "r1", flush_rows=10**6, flush_interval=3600)
    for ts, prefix, x, pred, score, version in reqs:
        assert writer.append_block(ts, prefix, x, pred, score, version)
    n = sum(len(r[2]) for r in reqs)
    assert writer.stats().buffered_rows == writer.stats().captured_rows == n
    writer.close()

    expected, got = landed(Warehouse(tmp_path / "batch")), landed(wh)
    assert got.num_rows == n
    assert got.schema.equals(expected.schema, check_metadata=True)
    assert got.equals(expected)
    assert {f.path.split("/")[3] for f in list_landing(wh, "demo")} == {"hour=12", "hour=13"}
    assert writer.stats().flushed_rows == n and writer.stats().buffered_rows == 0


def test_blocks_and_batches_interleaved_keep_every_row_once(tmp_path):
    reqs = requests(seed=1)
    wh = Warehouse(tmp_path / "wh")
    writer = LandingWriter(wh, SCHEMA, "r1", flush_rows=10**6, flush_interval=3600)
    for k, (ts, prefix, x, pred, score, version) in enumerate(reqs):
        if k % 2:  # every other request as a record batch, as a flusher hands them over
            writer.extend_checked([request_batch(ts, prefix, x, pred, score, version)])
        else:
            assert writer.append_block(ts, prefix, x, pred, score, version)
    writer.close()
    every = write_as_batches(Warehouse(tmp_path / "all"), reqs)
    every.close()
    assert landed(wh).equals(landed(Warehouse(tmp_path / "all")))


def test_failed_flush_keeps_block_rows_and_publishes_them_once(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    writer = LandingWriter(wh, SCHEMA, "r1", flush_rows=10**6, flush_interval=3600)
    reqs = requests(seed=2, n=5)
    for ts, prefix, x, pred, score, version in reqs:
        writer.append_block(ts, prefix, x, pred, score, version)
    n = sum(len(r[2]) for r in reqs)
    landing = tmp_path / "wh" / "landing"
    landing.write_text("a file where the landing directory should be")
    with pytest.raises(Exception, match=f"flush of {n} rows failed"):
        writer.flush()
    assert writer.stats().buffered_rows == n
    landing.unlink()
    assert writer.flush() == n
    rows = landed(wh)
    assert rows.num_rows == n
    ids = [f"{r[1]}-{i}" for r in reqs for i in range(len(r[2]))]
    assert sorted(rows["request_id"].to_pylist()) == sorted(ids)


def test_full_buffer_drops_blocks_and_counts_rows(tmp_path):
    writer = LandingWriter(Warehouse(tmp_path / "wh"), SCHEMA, "r1", max_buffer_rows=30)
    x = np.zeros((20, 3))
    assert writer.append_block(START_US, "a", x, np.zeros(20), None, "v1")
    assert not writer.append_block(START_US, "b", x, np.zeros(20), None, "v1")
    s = writer.stats()
    # captured counts every row handed over, kept or dropped, as the process writer does
    assert (s.captured_rows, s.dropped_rows, s.buffered_rows) == (40, 20, 20)
    writer.close()
    s = writer.stats()
    assert s.flushed_rows == 20
    assert s.captured_rows == s.flushed_rows + s.dropped_rows + s.buffered_rows


@pytest.mark.parametrize(
    "x, prediction, score",
    [
        (np.zeros((2, 2)), np.zeros(2), None),  # a feature short
        (np.zeros(3), np.zeros(3), None),  # not rows x features
        (np.zeros((2, 3)), np.zeros(3), None),  # a prediction too many
        (np.zeros((2, 3)), np.zeros(2), np.zeros(1)),  # a score short
    ],
)
def test_mismatched_block_is_refused_at_append_not_at_flush(tmp_path, x, prediction, score):
    writer = LandingWriter(Warehouse(tmp_path / "wh"), SCHEMA, "r1")
    with pytest.raises(SchemaError, match="does not match its landing schema"):
        writer.append_block(START_US, "a", x, prediction, score, "v1")
    assert writer.stats().captured_rows == 0
    assert writer.append_block(START_US, "a", np.ones((2, 3)), np.ones(2), None, "v1")
    writer.close()
    assert writer.stats().flushed_rows == 2
