"""Reading many landing files in one scan gives exactly what reading them one by one gives:
columns of every model version (missing ones null, narrow numbers widened, categoricals as
strings), each file's row count and keys, and a bad file among many still named precisely."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import MODEL
from harness.landing import holdout_rows, write_landing
from ingest import CorruptFileError, FileVanishedError, Warehouse, feed
from ingest import reader as reader_module
from ingest.feed import FeedMark, advance, file_keys, poll
from ingest.listing import list_landing
from ingest.reader import read_file, read_keys, read_many, read_many_keys
from ingest.schema import TS_TYPE

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]

DAY = datetime(2026, 1, 1, tzinfo=UTC)
DAY_US = int(DAY.timestamp()) * 1_000_000

# how a model version may hold each column (None: it lacks the column)
KINDS: dict[str, list[pa.DataType | None]] = {
    "a": [None, pa.float32(), pa.float64(), pa.null()],
    "b": [None, pa.int32(), pa.int64(), pa.float64()],
    "c": [None, pa.string(), pa.dictionary(pa.int32(), pa.string())],
    "replica": [pa.string(), pa.dictionary(pa.int32(), pa.string())],
}
ASKABLE = ["ts", "request_id", "replica", "a", "b", "c", "nowhere"]


def mixed_table(kinds: dict[str, pa.DataType | None], rows: int, seed: int) -> pa.Table:
    """A landing-like table: keys, then the columns ``kinds`` gives a type (values exact in
    every numeric type they may be read as)."""
    rng = np.random.default_rng(seed)
    ts = DAY_US + seed * 1_000_000 + np.arange(rows) * 10
    columns: dict[str, pa.Array] = {
        "ts": pa.array(ts, pa.int64()).cast(TS_TYPE),
        "request_id": pa.array([f"q{seed}-{i}" for i in range(rows)]),
    }
    for name, kind in kinds.items():
        if kind is None:
            continue
        if pa.types.is_null(kind):
            values: pa.Array = pa.nulls(rows)
        elif pa.types.is_floating(kind) or pa.types.is_integer(kind):
            raw = [None if rng.random() < 0.2 else int(rng.integers(-50, 50)) for _ in range(rows)]
            values = pa.array([v if v is None or pa.types.is_integer(kind) else v / 4 for v in raw])
            values = values.cast(kind)
        else:
            words = [None if rng.random() < 0.2 else f"w{rng.integers(3)}" for _ in range(rows)]
            values = pa.array(words, pa.string())
            if pa.types.is_dictionary(kind):
                values = values.dictionary_encode()
        columns[name] = values
    return pa.table(columns)


@st.composite
def landing_versions(draw: st.DrawFn) -> list[tuple[dict[str, pa.DataType | None], int]]:
    """The column types and row count of a few files of mixed model versions."""
    n = draw(st.integers(1, 6))
    return [
        (
            {name: draw(st.sampled_from(kinds)) for name, kinds in KINDS.items()},
            draw(st.integers(0, 4)),
        )
        for _ in range(n)
    ]


def publish(wh: Warehouse, files: list[tuple[dict[str, Any], int]]) -> list[str]:
    paths = []
    for i, (kinds, rows) in enumerate(files):
        path = f"landing/model={MODEL}/date=2026-01-01/hour=00/f{i:03d}.parquet"
        wh.publish_table(mixed_table(kinds, rows, seed=i), path)
        paths.append(path)
    return paths


def expected(
    files: list[tuple[dict[str, Any], int]], tables: list[pa.Table], columns: list[str]
) -> dict[str, tuple[pl.DataType, list[Any]]]:
    """The oracle: each asked column's type and values, from what each file holds."""
    out = {}
    for c in columns:
        held = [t.schema.field(c).type for t in tables if c in t.column_names]
        held = [h.value_type if pa.types.is_dictionary(h) else h for h in held]
        held = [h for h in held if not pa.types.is_null(h)]
        if not held:
            dtype: pl.DataType = pl.Null()
        elif c == "ts":
            dtype = pl.Datetime("us", "UTC")
        elif any(pa.types.is_floating(h) for h in held):
            dtype = pl.Float64()
        elif any(pa.types.is_integer(h) for h in held):
            dtype = pl.Int64() if pa.int64() in held else pl.Int32()
        else:
            dtype = pl.String()
        values = []
        for t in tables:
            if c in t.column_names:
                col = t.column(c)
                if pa.types.is_dictionary(col.type):
                    col = col.cast(col.type.value_type)
                values += col.to_pylist()
            else:
                values += [None] * t.num_rows
        out[c] = (dtype, values)
    return out


def check(got: pl.DataFrame, want: dict[str, tuple[pl.DataType, list[Any]]]) -> None:
    assert got.columns == list(want)
    for c, (dtype, values) in want.items():
        assert got.schema[c] == dtype, c
        assert got[c].to_list() == values, c


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    files=landing_versions(),
    columns=st.lists(st.sampled_from(ASKABLE), unique=True, max_size=5),
)
def test_one_scan_reads_every_version_as_file_by_file_reads_do(tmp_path_factory, files, columns):
    wh = Warehouse(tmp_path_factory.mktemp("wh"))
    paths = publish(wh, files)
    tables = [read_file(wh, p) for p in paths]
    want = expected(files, tables, columns)
    rows, counts = read_many(wh, paths, columns)
    check(rows, want)
    assert counts.tolist() == [t.num_rows for t in tables]
    # the file-by-file read (taken when the scan fails) gives the same
    rows, counts = reader_module._read_each(wh, paths, columns)
    check(rows, want)
    assert counts.tolist() == [t.num_rows for t in tables]


def test_mixed_model_versions_are_read_in_one_scan(tmp_path, caplog):
    wh = Warehouse(tmp_path / "wh")
    v1 = {"a": pa.float32(), "b": pa.int64(), "c": None, "replica": pa.string()}
    v2 = {"a": pa.float64(), "b": pa.int32(), "c": KINDS["c"][2], "replica": KINDS["replica"][1]}
    files = [(v1, 3), (v1, 0), (v2, 4), (v1, 2), (v2, 1)]
    paths = publish(wh, files)
    tables = [read_file(wh, p) for p in paths]
    columns = ["c", "replica", "a", "b", "nowhere"]
    with caplog.at_level(logging.DEBUG, logger="driftlake.ingest.reader"):
        rows, counts = read_many(wh, paths, columns)
        keys, failed = read_many_keys(wh, paths)
    assert "scan_fallback" not in caplog.text  # no file needed the file-by-file read
    check(rows, expected(files, tables, columns))
    assert counts.tolist() == [3, 0, 4, 2, 1] and failed == []
    assert keys.equals(per_file_keys(wh, paths))


def per_file_keys(wh: Warehouse, paths: list[str]) -> pl.DataFrame:
    """The oracle of :func:`read_many_keys`: :func:`read_keys` file by file."""
    frames = [
        read_keys(wh, p).select(pl.lit(i, pl.UInt32).alias("file"), pl.all())
        for i, p in enumerate(paths)
    ]
    return pl.concat(frames)


def test_a_path_given_twice_is_read_twice_and_no_path_reads_nothing(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    paths = publish(wh, [({"a": pa.float64()}, 2), ({"a": pa.float64()}, 3)])
    rows, counts = read_many(wh, [paths[1], paths[0], paths[1]], ["a", "request_id"])
    assert counts.tolist() == [3, 2, 3]
    assert rows["request_id"].to_list() == [*[f"q1-{i}" for i in range(3)], "q0-0", "q0-1"] + [
        f"q1-{i}" for i in range(3)
    ]
    keys, _ = read_many_keys(wh, [paths[1], paths[1]])
    assert keys.select("file", "row").rows() == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    rows, counts = read_many(wh, [], ["a"])
    assert (rows.columns, rows.height, counts.size) == (["a"], 0, 0)
    keys, failed = read_many_keys(wh, [])
    assert (
        keys.height == 0
        and failed == []
        and keys.columns
        == [
            "file",
            "row",
            "ts",
            "request_id",
            "replica",
        ]
    )


def test_keys_of_a_file_with_another_time_unit_are_read_as_file_by_file(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    paths = publish(wh, [({"a": pa.float64()}, 3), ({"a": pa.float64()}, 2)])
    table = mixed_table({"a": pa.float64()}, 4, seed=7)
    in_ms = pa.array(DAY_US // 1000 + np.arange(4) * 7, pa.timestamp("ms", tz="UTC"))
    ms = table.set_column(0, "ts", in_ms)
    wh.publish_table(ms, odd := paths[0].replace("f000", "ms"))
    keys, failed = read_many_keys(wh, [*paths, odd])
    assert failed == [] and keys.equals(per_file_keys(wh, [*paths, odd]))


def landing(tmp_path: Path, files: int = 6) -> tuple[Warehouse, list[str]]:
    wh = Warehouse(tmp_path / "wh")
    start = DAY + timedelta(minutes=5)
    write_landing(wh, holdout_rows(10 * files, seed=1), start=start, per_file=10)
    return wh, [f.path for f in list_landing(wh, MODEL)]


def test_a_torn_or_vanished_file_among_many_is_named(tmp_path):
    wh, paths = landing(tmp_path)
    whole = Path(wh.uri(paths[3])).read_bytes()
    Path(wh.uri(paths[3])).write_bytes(whole[: len(whole) // 2])  # torn
    Path(wh.uri(paths[1])).unlink()  # vanished
    with pytest.raises(FileVanishedError) as gone:
        read_many(wh, paths, ["mean radius"])
    assert gone.value.path == paths[1]
    with pytest.raises(CorruptFileError) as torn:
        read_many(wh, [p for p in paths if p != paths[1]], ["mean radius"])
    assert torn.value.path == paths[3] and "parquet" in torn.value.reason.lower()

    keys, failed = read_many_keys(wh, paths)
    assert [(type(e), e.path) for e in failed] == [
        (FileVanishedError, paths[1]),
        (CorruptFileError, paths[3]),
    ]
    good = [0, 2, 4, 5]
    want = per_file_keys(wh, [paths[i] for i in good])
    want = want.with_columns(pl.Series("file", good, pl.UInt32).gather(want["file"]))
    assert keys.equals(want)


def test_a_bounded_poll_leaves_the_files_past_its_bound_unread_even_bad_ones(tmp_path):
    wh, paths = landing(tmp_path)
    whole = Path(wh.uri(paths[4])).read_bytes()
    Path(wh.uri(paths[4])).write_bytes(whole[:100])  # past the bound: not read, not moved
    first = poll(wh, MODEL, FeedMark(), max_rows=25)  # 3 files of 10 rows hold 25
    assert first.files == tuple(paths[:3]) and first.quarantined == ()
    assert first.keys.equals(pl.concat([file_keys(wh, p) for p in paths[:3]]))
    assert first.unread == {"r1": DAY_US}
    rest = poll(wh, MODEL, advance(FeedMark(), first))
    assert rest.files == (paths[3], paths[5])
    assert [r.path for r in rest.quarantined] == [paths[4]]


def test_a_file_vanishing_after_the_listing_fails_the_poll(tmp_path, monkeypatch):
    wh, paths = landing(tmp_path)
    real = feed.partition_listing

    def listing_then_compaction(*args: Any, **kwargs: Any) -> Any:
        listed = real(*args, **kwargs)
        Path(wh.uri(paths[2])).unlink()
        return listed

    monkeypatch.setattr(feed, "partition_listing", listing_then_compaction)
    # read with the first two (past the bound of 15 rows), never used
    assert poll(wh, MODEL, FeedMark(), max_rows=15).files == tuple(paths[:2])
    Path(wh.uri(paths[2])).write_bytes(b"")  # back for the next listing, to vanish again
    with pytest.raises(FileVanishedError) as gone:
        poll(wh, MODEL, FeedMark())
    assert gone.value.path == paths[2]
