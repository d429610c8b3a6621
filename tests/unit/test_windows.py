"""Window planning against a brute-force model: every row in exactly one window, in order."""

from __future__ import annotations

import itertools

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.windows import (
    KEY_SCHEMA,
    empty_keys,
    plan_time_windows,
    plan_windows,
    watermark,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]


def keys(rows: list[tuple[int, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "file": [f"f-{r}" for _, _, r in rows],
            "row": list(range(len(rows))),
            "ts": [t for t, _, _ in rows],
            "request_id": [i for _, i, _ in rows],
            "replica": [r for _, _, r in rows],
        },
        schema=KEY_SCHEMA,
    )


rows_strategy = st.lists(
    st.tuples(st.integers(0, 50), st.sampled_from(["a", "b", "c"])), min_size=0, max_size=120
).map(lambda xs: [(t, f"id{i:04d}", r) for i, (t, r) in enumerate(xs)])


@settings(max_examples=150, deadline=None)
@given(
    rows=rows_strategy,
    size=st.integers(1, 15),
    cuts=st.lists(st.integers(0, 120), max_size=6),
    marks=st.lists(st.integers(0, 60), min_size=7, max_size=7),
)
def test_every_row_lands_in_exactly_one_window_and_windows_are_full(rows, size, cuts, marks):
    # rows arrive in arbitrary batches, the watermark moves arbitrarily (also backwards)
    bounds = sorted({0, len(rows), *[c for c in cuts if c <= len(rows)]})
    pending, next_id, cursor, windows = empty_keys(), 0, None, []
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        pending = pl.concat([pending, keys(rows)[lo:hi]])
        closed, pending = plan_windows(pending, marks[i], size, next_id, cursor)
        for w in closed:
            assert w.rows == size and w.window_id == next_id
            assert w.keys.select(["ts", "request_id"]).rows() == sorted(
                w.keys.select(["ts", "request_id"]).rows()
            )
            next_id += 1
            cursor = w.end_key
        windows += closed
    # a final cycle with the watermark past everything
    closed, pending = plan_windows(pending, 10**9, size, next_id, cursor)
    windows += closed
    seen = [rid for w in windows for rid in w.keys["request_id"]] + pending["request_id"].to_list()
    assert sorted(seen) == sorted(r[1] for r in rows)
    assert pending.height < size
    late = sum(w.late_rows for w in windows)
    if len(bounds) <= 2:
        # everything arrived at once: windows are the sorted rows, cut in order
        order = sorted((t, i) for t, i, _ in rows)
        assert [tuple(w.keys["request_id"]) for w in windows] == [
            tuple(i for _, i in order[k * size : (k + 1) * size]) for k in range(len(windows))
        ]
    assert late >= 0


def test_late_rows_join_the_next_window_and_are_counted():
    first, pending = plan_windows(keys([(10, "a", "r"), (11, "b", "r")]), 20, 2, 0, None)
    assert len(first) == 1 and first[0].late_rows == 0
    late = keys([(5, "c", "r"), (30, "d", "r")])
    second, pending = plan_windows(pending.vstack(late), 40, 2, 1, first[0].end_key)
    assert second[0].keys["request_id"].to_list() == ["c", "d"]
    assert second[0].late_rows == 1 and pending.height == 0


def test_watermark_waits_for_every_live_replica_then_for_max_lateness():
    now = 1_000_000_000
    assert watermark({"a": now - 100, "b": now - 5_000}, now, 10_000) == now - 5_000
    # b is silent for longer than max lateness: it no longer holds rows back
    assert watermark({"a": now - 100, "b": now - 50_000}, now, 10_000) == now - 100
    assert watermark({}, now, 10_000) == now - 10_000


@settings(max_examples=150, deadline=None)
@given(
    rows=rows_strategy,
    width=st.integers(1, 20),
    cuts=st.lists(st.integers(0, 120), max_size=6),
    marks=st.lists(st.integers(0, 60), min_size=7, max_size=7),
)
def test_time_windows_hold_each_row_once_and_only_their_own_bucket_or_late_rows(
    rows, width, cuts, marks
):
    bounds = sorted({0, len(rows), *[c for c in cuts if c <= len(rows)]})
    pending, next_id, cursor, windows = empty_keys(), 0, None, []
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        pending = pl.concat([pending, keys(rows)[lo:hi]])
        closed, pending = plan_time_windows(pending, marks[i], width, next_id, cursor)
        for w in closed:
            on_time = w.keys.slice(w.late_rows) if w.late_rows else w.keys
            buckets = set((on_time["ts"] // width).to_list())
            late_keys = w.keys.filter(pl.col("ts") // width < min(buckets))
            assert len(buckets) == 1 and late_keys.height == w.late_rows
            assert (min(buckets) + 1) * width <= marks[i]  # closed only past the watermark
            next_id, cursor = next_id + 1, w.end_key
        windows += closed
    closed, pending = plan_time_windows(pending, 10**9, width, next_id, cursor)
    windows += closed
    # only late rows may still wait, for the next window to close
    assert pending.height == 0 or (
        not closed and (pending["ts"] // width <= cursor[0] // width).all()
    )
    seen = [rid for w in windows for rid in w.keys["request_id"]] + pending["request_id"].to_list()
    assert sorted(seen) == sorted(r[1] for r in rows)
    if len(bounds) <= 2 and rows:
        # one arrival, no late rows: the windows are exactly the non-empty buckets
        expected = sorted({t // width for t, _, _ in rows})
        assert [int(w.keys["ts"][0] // width) for w in windows] == expected
