"""append_block with categorical columns and row ids: exact values land, dictionary-encoded,
read back as strings; bad strings are refused before anything is queued."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest import FeatureSpec, ModelSchema, SchemaError, Warehouse
from ingest.capture import MAX_VALUE_BYTES, LandingWriter
from ingest.reader import RowSelection, list_landing, read_file, read_landing, read_rows
from tests.unit.test_writer_blocks import SCHEMA as NUMERIC
from tests.unit.test_writer_blocks import landed as landed_numeric
from tests.unit.test_writer_blocks import request_batch

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

# categorical features between numeric ones: columns land in schema order
SCHEMA = ModelSchema(
    "mixed",
    (
        FeatureSpec("a"),
        FeatureSpec("plan", "categorical"),
        FeatureSpec("b"),
        FeatureSpec("city", "categorical"),
    ),
)
CATEGORIES = ("plan", "city")
START_US = int(datetime(2026, 11, 25, 12, 59, 59, 990_000, tzinfo=UTC).timestamp() * 1e6)
# values a capture must keep exactly: empty, non-ASCII of 2, 3 and 4 bytes a character, a
# separator-looking one, and the longest allowed (in bytes, not characters)
ODD = ["", "Zürich", "東京", "😀 ok", "a-0", "é" * (MAX_VALUE_BYTES // 2)]


def mixed_requests(seed: int = 0, n: int = 60, ids_every: int = 3) -> list[tuple]:
    """Requests of 0 to 8 rows: (ts_us, prefix, x, prediction, score, version, categorical,
    row_ids), the same for the same seed. Categorical values: known labels, unseen ones,
    nulls and :data:`ODD`; columns as lists, tuples and numpy arrays; every
    ``ids_every``-th request gives row ids."""
    rng = np.random.default_rng(seed)
    labels = ["basic", "gold", None, *ODD]
    out = []
    for k in range(n):
        rows = 0 if k % 29 == 13 else int(rng.integers(1, 9))
        prefix = rng.bytes(16).hex()
        x = rng.normal(size=(rows, 2))
        prediction = rng.integers(0, 2, rows).astype(np.float64)
        score = None if k % 7 == 3 else rng.random(rows)
        columns = []
        for c in range(2):
            values = [
                labels[i] if i < len(labels) else f"unseen-{rng.bytes(i).hex()}"
                for i in rng.integers(0, len(labels) + 4, rows)
            ]
            kind = (k + c) % 3
            columns.append(
                values if kind == 0 else tuple(values) if kind == 1 else np.array(values, object)
            )
        ids = [f"id-{rng.bytes(8).hex()}-ü" for _ in range(rows)] if k % ids_every == 1 else None
        version = "v2" if k % 11 == 5 else "v1"
        out.append(
            (START_US + 1000 * (k % 40), prefix, x, prediction, score, version, columns, ids)
        )
    return out


def string_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with categorical columns as plain strings (how readers see them)."""
    return pa.schema(
        [
            pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
            for f in schema
        ],
        metadata=schema.metadata,
    )


def expected(reqs: list[tuple], schema: ModelSchema = SCHEMA, replica: str = "r1") -> pa.Table:
    """The oracle: the requests' landing rows built value by value from Python lists, apart
    from the capture code; categorical columns as strings."""
    rows: dict[str, list] = {f.name: [] for f in schema.arrow_schema()}
    for ts, prefix, x, prediction, score, version, columns, ids in reqs:
        n = len(prediction)
        rows["ts"] += [ts] * n
        rows["request_id"] += list(ids) if ids is not None else [f"{prefix}-{i}" for i in range(n)]
        rows["replica"] += [replica] * n
        rows["model_version"] += [version] * n
        numeric, cats = iter(np.asarray(x).T), iter(columns or ())
        for f in schema.features:
            rows[f.name] += list(next(numeric) if f.kind == "numeric" else next(cats))
        rows["prediction"] += list(prediction)
        rows["score"] += [None] * n if score is None else list(score)
    target = string_schema(schema.arrow_schema())
    rows["ts"] = pa.array(rows["ts"], pa.int64()).cast(target.field("ts").type)
    return pa.table({f.name: pa.array(rows[f.name], f.type) for f in target}, schema=target)


def landed(wh: Warehouse, model: str = "mixed") -> pa.Table:
    """Every landing row of ``model`` as written (categorical columns dictionary-encoded)."""
    tables = [pq.read_table(wh.uri(f.path)) for f in list_landing(wh, model)]
    return pa.concat_tables(tables, promote_options="permissive").sort_by("request_id")


def assert_lands_exactly(wh: Warehouse, reqs: list[tuple], schema: ModelSchema = SCHEMA) -> None:
    got = landed(wh, schema.model)
    assert got.schema.equals(schema.arrow_schema(), check_metadata=True)
    target = expected(reqs, schema)
    assert got.cast(target.schema).equals(target.sort_by("request_id"))


def append(writer, request: tuple) -> bool:
    ts, prefix, x, prediction, score, version, columns, ids = request
    return writer.append_block(ts, prefix, x, prediction, score, version, columns, ids)


@pytest.mark.parametrize("n", [60, 3000], ids=["one-batch", "several-batches"])
def test_mixed_blocks_land_exact_values_in_schema_order(tmp_path, n):
    reqs = mixed_requests(n=n)
    wh = Warehouse(tmp_path / "wh")
    writer = LandingWriter(wh, SCHEMA, "r1", flush_rows=10**6, flush_interval=3600)
    for r in reqs:
        assert append(writer, r)
    rows = sum(len(r[3]) for r in reqs)
    assert writer.stats().captured_rows == rows
    writer.close()
    assert writer.stats().flushed_rows == rows
    assert_lands_exactly(wh, reqs)
    assert {f.path.split("/")[3] for f in list_landing(wh, "mixed")} == {"hour=12", "hour=13"}


def test_row_ids_land_as_given_beside_prefixed_ids(tmp_path):
    # a numbers-only schema: rows of requests that give ids and of requests that do not
    rng = np.random.default_rng(3)
    reqs, oracle = [], []
    for k in range(50):
        rows = int(rng.integers(1, 6))
        x, prediction = rng.normal(size=(rows, 3)), np.ones(rows)
        prefix = uuid.uuid4().hex
        ids = [f"order-{uuid.uuid4()}" for _ in range(rows)] if k % 2 else None
        reqs.append((START_US + k, prefix, x, prediction, None, "v1", None, ids))
        batch = request_batch(START_US + k, prefix, x, prediction, None, "v1")
        if ids is not None:
            batch = batch.set_column(1, batch.schema.field(1), pa.array(ids))
        oracle.append(batch)
    wh = Warehouse(tmp_path / "wh")
    writer = LandingWriter(wh, NUMERIC, "r1", flush_rows=10**6, flush_interval=3600)
    for r in reqs:
        assert append(writer, r)
    writer.close()
    want = pa.Table.from_batches(oracle).sort_by("request_id")
    assert landed_numeric(wh).equals(want)


def test_landing_file_is_dictionary_encoded_and_every_reader_reads_strings(tmp_path):
    reqs = mixed_requests(seed=1, n=40)
    wh = Warehouse(tmp_path / "wh")
    writer = LandingWriter(wh, SCHEMA, "r1", flush_rows=10**6, flush_interval=3600)
    for r in reqs:
        assert append(writer, r)
    writer.close()
    want = expected(reqs).sort_by("request_id")
    files = list_landing(wh, "mixed")
    for f in files:
        meta = pq.ParquetFile(wh.uri(f.path)).metadata
        names = meta.schema.to_arrow_schema().names
        for name in CATEGORIES:
            column = meta.row_group(0).column(names.index(name))
            assert column.has_dictionary_page and "RLE_DICTIONARY" in column.encodings, name
            physical = meta.schema.column(names.index(name))  # UTF-8 strings in Parquet
            assert (physical.physical_type, str(physical.logical_type)) == ("BYTE_ARRAY", "String")
        stored = pq.read_schema(wh.uri(f.path))  # the Arrow schema the writer stored
        assert stored.field("plan").type == pa.dictionary(pa.int32(), pa.string())
        assert read_file(wh, f.path).schema.field("plan").type == pa.string()

    def frame_equal(frame: pl.DataFrame) -> None:
        assert frame.schema["plan"] == frame.schema["city"] == pl.String
        got = frame.sort("request_id")
        expected_frame = pl.from_arrow(want)
        assert got.select("request_id", *CATEGORIES).equals(
            expected_frame.select("request_id", *CATEGORIES)
        )
        assert got["plan"].null_count() == want["plan"].null_count > 0

    # the scan readers (polars over the unified schema) and the window reader
    frame_equal(read_landing(wh, "mixed").drop("model", "date", "hour"))
    selections = [
        RowSelection(f.path, tuple(range(pq.ParquetFile(wh.uri(f.path)).metadata.num_rows)))
        for f in files
    ]
    frame_equal(read_rows(wh, selections, [f.name for f in SCHEMA.features]))


def test_conform_dictionary_encodes_string_columns():
    batch = expected(mixed_requests(seed=2, n=5))
    conformed = SCHEMA.conform(batch)
    assert conformed.schema.equals(SCHEMA.arrow_schema())
    assert conformed["city"].to_pylist() == batch["city"].to_pylist()


def test_full_buffer_drops_and_counts_categorical_blocks(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    writer = LandingWriter(wh, SCHEMA, "r1", max_buffer_rows=30)
    kept = (START_US, "a", np.zeros((20, 2)), np.zeros(20), None, "v1", [["x"] * 20] * 2, None)
    dropped = (START_US, "b", np.zeros((20, 2)), np.zeros(20), None, "v1", [["y"] * 20] * 2, None)
    assert append(writer, kept)
    assert not append(writer, dropped)
    s = writer.stats()
    assert (s.captured_rows, s.dropped_rows, s.buffered_rows) == (40, 20, 20)
    writer.close()
    assert_lands_exactly(wh, [kept])


def bad_blocks() -> list[tuple[str, dict, str]]:
    """(case, append_block keyword changes to a valid 2-row block, message the error must
    hold): every way a block's strings can be wrong."""
    big, wide = "x" * (MAX_VALUE_BYTES + 1), "é" * (MAX_VALUE_BYTES // 2 + 1)
    ok = ["gold", None]
    return [
        ("no categorical", {"categorical": None}, "expected categorical columns ['plan', 'city']"),
        ("a column short", {"categorical": [ok]}, "expected 2 categorical columns"),
        ("a column too many", {"categorical": [ok, ok, ok]}, "got 3"),
        (
            "a value short",
            {"categorical": [ok, ["a"]]},
            "categorical column 'city' has 1 values; expected one per row (2)",
        ),
        (
            "a column is a str",
            {"categorical": [ok, "ab"]},
            "categorical column 'city' must be a sequence of 2 strings, not str",
        ),
        ("not a sequence", {"categorical": 7}, "categorical must be a sequence of 2 columns"),
        (
            "a numpy scalar",
            {"categorical": [ok, np.array("ab")]},
            "categorical column 'city' must be a sequence of 2 strings, not ndarray",
        ),
        (
            "ids a generator",
            {"row_ids": (i for i in "ab")},
            "row_ids must be a sequence of 2 strings, not generator",
        ),
        (
            "a number",
            {"categorical": [ok, ["a", 5]]},
            "categorical column 'city' row 1: int 5; expected a str or None",
        ),
        (
            "bytes",
            {"categorical": [[b"gold", None], ok]},
            "categorical column 'plan' row 0: bytes b'gold'",
        ),
        ("nan", {"categorical": [ok, ["a", float("nan")]]}, "'city' row 1: float nan"),
        (
            "not UTF-8",
            {"categorical": [["a", "\ud800"], ok]},
            "'plan' row 1: '\\ud800' is not encodable as UTF-8",
        ),
        (
            "over the limit",
            {"categorical": [ok, ["a", big]]},
            f"'city' row 1: a value of {MAX_VALUE_BYTES + 1} UTF-8 bytes, over the limit of "
            f"{MAX_VALUE_BYTES} (ingest.capture.MAX_VALUE_BYTES)",
        ),
        (
            "over the limit in bytes",
            {"categorical": [[wide, None], ok]},
            f"'plan' row 0: a value of {MAX_VALUE_BYTES + 2} UTF-8 bytes",
        ),
        ("ids short", {"row_ids": ["a"]}, "row_ids has 1 values; expected one per row (2)"),
        ("a null id", {"row_ids": ["a", None]}, "row_ids row 1: NoneType None"),
        ("an empty id", {"row_ids": ["", "b"]}, "row_ids row 0: an empty id"),
        ("a number id", {"row_ids": ["a", 7]}, "row_ids row 1: int 7; expected a non-empty str"),
        ("an id over the limit", {"row_ids": [big, "b"]}, "row_ids row 0: a value of 1025"),
        (
            "categorical in the matrix",
            {"features": np.zeros((2, 4))},
            "expected features of shape (rows, 2) (the numeric features",
        ),
    ]


def valid_block(**change) -> dict:
    block = dict(
        ts_us=START_US,
        id_prefix="ok",
        features=np.ones((2, 2)),
        prediction=np.ones(2),
        score=None,
        model_version="v1",
        categorical=[["gold", None], ["Zürich", ""]],
        row_ids=None,
    )
    return {**block, **change}


@pytest.mark.parametrize(
    ("change", "message"), [b[1:] for b in bad_blocks()], ids=[b[0] for b in bad_blocks()]
)
def test_bad_strings_are_refused_naming_column_row_and_problem(tmp_path, change, message):
    wh = Warehouse(tmp_path / "wh")
    writer = LandingWriter(wh, SCHEMA, "r1")
    with pytest.raises(SchemaError, match="does not match its landing schema") as info:
        writer.append_block(**valid_block(**change))
    assert message in str(info.value)
    assert writer.stats().captured_rows == 0  # nothing queued
    assert writer.append_block(**valid_block())
    writer.close()
    assert landed(wh)["request_id"].to_pylist() == ["ok-0", "ok-1"]


def test_categorical_columns_for_a_numbers_only_schema_are_refused(tmp_path):
    writer = LandingWriter(Warehouse(tmp_path / "wh"), NUMERIC, "r1")
    x, one = np.ones((1, 3)), np.ones(1)
    with pytest.raises(
        SchemaError, match=r"expected 0 categorical columns \[\] in schema order; got 1"
    ):
        writer.append_block(START_US, "a", x, one, None, "v1", [["gold"]])
    assert writer.append_block(START_US, "a", x, one, None, "v1", [])  # none is no column
    assert writer.stats().captured_rows == 1


def test_a_schema_of_categorical_features_only_lands_with_an_empty_matrix(tmp_path):
    schema = ModelSchema("cats", (FeatureSpec("plan", "categorical"),))
    wh = Warehouse(tmp_path / "wh")
    writer = LandingWriter(wh, schema, "r1")
    reqs = [(START_US, "a", np.empty((2, 0)), np.ones(2), None, "v1", [["x", None]], None)]
    assert append(writer, reqs[0])
    writer.close()
    assert_lands_exactly(wh, reqs, schema)
