"""Window specs built for many windows at once point at exactly their planned rows, and a
batch reads those rows, window after window, from each landing file once."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics._batch_rows import read_batch
from analytics.detect import WindowSpec, _SpecBatch
from analytics.windows import KEY_SCHEMA, plan_windows
from harness import MODEL
from harness.landing import holdout_rows, model_schema, write_landing
from ingest import Warehouse
from ingest.feed import file_keys
from ingest.listing import list_landing
from ingest.reader import read_file, read_many

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]


@st.composite
def planning_keys(draw: st.DrawFn) -> pl.DataFrame:
    """Keys of rows spread over a few files and replicas, with tied times."""
    n = draw(st.integers(0, 120))
    files = [f"landing/f{i}.parquet" for i in range(draw(st.integers(1, 6)))]
    return pl.DataFrame(
        {
            "file": draw(st.lists(st.sampled_from(files), min_size=n, max_size=n)),
            "row": list(range(n)),
            "ts": draw(st.lists(st.integers(0, 40), min_size=n, max_size=n)),
            "request_id": [f"{i:04d}" for i in draw(st.permutations(range(n)))],
            "replica": draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n)),
        },
        schema=KEY_SCHEMA,
    )


@settings(max_examples=150, deadline=None)
@given(keys=planning_keys(), size=st.integers(1, 30))
def test_specs_of_many_windows_hold_each_window_s_rows_in_order(keys, size):
    plans, _ = plan_windows(keys, 2**62, size, 7, None)
    specs = WindowSpec.from_plans(MODEL, plans, history_root="backfill/x")
    assert [s.window_id for s in specs] == [p.window_id for p in plans]
    for spec, plan in zip(specs, plans, strict=True):
        rows = plan.keys
        assert [spec.files[i] for i in spec.file_index] == rows["file"].to_list()
        assert spec.row_index.tolist() == rows["row"].to_list()
        assert len(set(spec.files)) == len(spec.files)  # each file named once
        assert spec.rows == rows.height and spec.replicas == plan.replicas
        assert (spec.start_us, spec.end_us) == (plan.start_us, plan.end_us)
        assert spec.first_request_id == rows["request_id"][0]
        assert spec.last_request_id == rows["request_id"][-1]
        assert spec.history_root == "backfill/x"


def test_a_batch_reads_its_windows_rows_in_order_each_file_once(tmp_path, monkeypatch):
    wh = Warehouse(tmp_path / "wh")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    step = timedelta(seconds=2)
    write_landing(wh, holdout_rows(90, seed=1), replica="a", start=start, step=step, per_file=30)
    later = start + step / 2
    write_landing(wh, holdout_rows(70, seed=2), replica="b", start=later, step=step, per_file=25)
    paths = [f.path for f in list_landing(wh, MODEL)]
    keys = pl.concat([file_keys(wh, p) for p in paths])
    plans, _ = plan_windows(keys, 2**62, 40, 0, None)
    specs = WindowSpec.from_plans(MODEL, plans)
    numeric = list(model_schema().numeric_features)[:5]
    reads: list[list[str]] = []
    monkeypatch.setattr(
        "analytics._batch_rows.read_many",
        lambda w, p, c: reads.append(list(p)) or read_many(w, p, c),
    )
    matrix, frame = read_batch(wh, specs, numeric, ["replica"])
    assert len(reads) == 1 and sorted(reads[0]) == sorted(paths)  # every file once, together
    whole = {p: read_file(wh, p, [*numeric, "replica"]) for p in paths}
    expected = [
        [whole[f][c][r].as_py() for c in [*numeric, "replica"]]
        for plan in plans
        for f, r in plan.keys.select("file", "row").iter_rows()
    ]
    assert matrix is not None and frame is not None
    assert matrix.shape == (160, 5)
    np.testing.assert_array_equal(matrix, np.array([e[:5] for e in expected], dtype=float))
    assert frame["replica"].to_list() == [e[5] for e in expected]


@settings(max_examples=50, deadline=None)
@given(keys=planning_keys(), size=st.integers(1, 30))
def test_a_task_s_specs_travel_packed_and_unpack_to_the_same_specs(keys, size):
    plans, _ = plan_windows(keys, 2**62, size, 3, None)
    specs = WindowSpec.from_plans(MODEL, plans, history_root="backfill/x")
    wire = pickle.dumps(_SpecBatch(specs), protocol=5)
    back = pickle.loads(wire)
    assert back._specs is None  # unpickling (as Dask's scheduler does) builds no spec
    assert len(back) == len(specs)
    for got, spec in zip(back, specs, strict=True):
        for f in dataclasses.fields(WindowSpec):
            a, b = getattr(got, f.name), getattr(spec, f.name)
            assert np.array_equal(a, b) if isinstance(b, np.ndarray) else a == b, f.name
    again = pickle.loads(pickle.dumps(back, protocol=5))  # its packed form sent on as is
    assert [s.window_id for s in again] == [s.window_id for s in specs]
