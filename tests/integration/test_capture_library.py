"""The capture library: a Monitor lands exactly what it is given, from every accepted frame
type, with either writer, locally or on S3; bad rows are refused whole; close() and SIGTERM
publish every captured row."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from driftlake import LandingError, Monitor, SchemaError
from harness import ROOT
from ingest import Warehouse
from ingest.capture import process_writer_supported
from ingest.reader import scan_landing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WRITERS = [
    pytest.param(
        "process",
        marks=pytest.mark.skipif(not process_writer_supported(), reason="needs x86-64 Linux"),
    ),
    "thread",
]
SCHEMAS = {
    "numeric": {"x": "numeric", "y": "numeric"},
    "mixed": {"x": "numeric", "plan": "categorical", "y": "numeric", "region": "categorical"},
}
QUIET = {"flush_rows": 10**6, "flush_interval": 600}  # only close() publishes


def rows_of(kind: str, n: int, seed: int) -> list[dict]:
    """``n`` rows of schema ``kind`` plus a column no schema has (ignored)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        row = {"x": float(rng.normal()), "y": int(rng.integers(-5, 5)), "extra": "ignored"}
        if kind == "mixed":
            row["plan"] = ["basic", "pro", "ünïcode plan"][i % 3]
            row["region"] = None if i % 4 == 3 else f"r{i}"
        out.append(row)
    return out


def as_input(form: str, rows: list[dict], names: list[str]):
    """``rows`` in one of the accepted forms."""
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    if form == "records":
        return rows
    if form == "columns":
        return columns
    if form == "one_row":
        return rows[0]
    if form == "numpy":
        return np.array([[r[n] for n in names] for r in rows], dtype=np.float64)
    if form == "pandas":
        return pd.DataFrame(columns)
    if form == "polars":
        return pl.DataFrame(columns)
    table = pa.Table.from_pydict(columns)
    return table if form == "arrow" else table.to_batches()[0]


FORMS = ["records", "columns", "one_row", "numpy", "pandas", "polars", "arrow", "record_batch"]


def landed(wh: str | Path, model: str) -> pl.DataFrame:
    frame = scan_landing(Warehouse(str(wh)), model).collect()
    return frame.sort("request_id") if frame.height else frame


def capture_every_form(monitor: Monitor, kind: str) -> dict[str, dict]:
    """Capture rows in every form, with generated and given ids; return what each id holds."""
    names = list(SCHEMAS[kind])
    expected: dict[str, dict] = {}
    seed = 0
    for form in FORMS:
        if form == "numpy" and kind == "mixed":
            continue
        for given in (False, True):
            for n in (1,) if form == "one_row" else (1, 3):
                seed += 1
                rows = rows_of(kind, n, seed)
                prediction = np.arange(n, dtype=np.int64) % 2
                score = None if seed % 2 else np.linspace(0.1, 0.9, n)
                ts = datetime(2026, 3, 1, 12, tzinfo=UTC) + timedelta(seconds=seed)
                ids = [f"{form}-ïd-{seed}-{i}" for i in range(n)] if given else None
                got = monitor.capture(
                    as_input(form, rows, names), prediction, score, request_ids=ids, ts=ts
                )
                assert len(got) == n and len(set(got)) == n
                if given:
                    assert got == ids
                else:  # as the model server makes them: <32 hex digits>-<row>
                    prefix = got[0].rsplit("-", 1)[0]
                    assert len(prefix) == 32 and int(prefix, 16) >= 0
                    assert got == [f"{prefix}-{i}" for i in range(n)]
                for i, request_id in enumerate(got):
                    expected[request_id] = {
                        **{k: rows[i][k] for k in names},
                        "prediction": float(prediction[i]),
                        "score": None if score is None else float(score[i]),
                        "ts": ts,
                    }
    return expected


@pytest.mark.parametrize("kind", list(SCHEMAS))
@pytest.mark.parametrize("writer", WRITERS)
def test_every_input_form_lands_its_exact_rows(tmp_path, writer, kind):
    model = f"lib_{kind}"
    monitor = Monitor(
        model,
        tmp_path / "wh",
        features=SCHEMAS[kind],
        model_version="v7",
        replica="r-1",
        writer=writer,
        **QUIET,
    )
    assert monitor.writer_kind == writer
    with monitor:
        expected = capture_every_form(monitor, kind)
        assert landed(tmp_path / "wh", model).height == 0  # nothing due before close
    frame = landed(tmp_path / "wh", model)
    assert frame["request_id"].to_list() == sorted(expected)
    names = list(SCHEMAS[kind])
    for row in frame.iter_rows(named=True):
        want = expected[row["request_id"]]
        assert {k: row[k] for k in [*names, "prediction", "score", "ts"]} == want
        assert (row["replica"], row["model_version"]) == ("r-1", "v7")
    s = monitor.stats()
    assert s.captured_rows == s.flushed_rows == len(expected)
    assert s.dropped_rows == s.buffered_rows == 0
    with pytest.raises(LandingError, match="closed"):
        monitor.capture([dict.fromkeys(names, 1.0)], 1)


def test_s3_warehouse_and_a_reference_file(tmp_path, s3_url):
    reference = tmp_path / "reference.parquet"
    pl.DataFrame(
        {"age": [30, 40], "plan": ["a", "b"], "income": [1.5, 2.5], "target": [0, 1]}
    ).write_parquet(reference)
    with Monitor("lib_s3", s3_url, reference=reference, writer="thread", **QUIET) as monitor:
        assert [(f.name, f.kind) for f in monitor.schema.features] == [
            ("age", "numeric"),
            ("plan", "categorical"),
            ("income", "numeric"),
        ]
        ids = monitor.capture(
            pd.DataFrame({"age": [31, 52], "plan": ["b", "c"], "income": [2.0, 3.0]}), [0, 1]
        )
    frame = landed(s3_url, "lib_s3")
    assert frame["request_id"].to_list() == sorted(ids)
    assert frame.sort("age").select("age", "plan", "income").rows() == [
        (31.0, "b", 2.0),
        (52.0, "c", 3.0),
    ]


def test_close_publishes_every_row_and_a_closed_monitor_refuses(tmp_path):
    for writer in ["thread", *(["process"] if process_writer_supported() else [])]:
        model = f"close_{writer}"
        monitor = Monitor(model, tmp_path, features=SCHEMAS["mixed"], writer=writer, **QUIET)
        ids = []
        with pytest.raises(LandingError, match="start"):
            monitor.capture(rows_of("mixed", 1, 0), 1)
        monitor.start()
        for seed in range(100):
            ids += monitor.capture(rows_of("mixed", 10, seed), np.zeros(10))
        assert monitor.stats().buffered_rows == 1000
        assert landed(tmp_path, model).height == 0
        monitor.close()
        monitor.close()  # a second close does nothing
        assert sorted(landed(tmp_path, model)["request_id"]) == sorted(ids)
        assert monitor.stats().flushed_rows == 1000
        with pytest.raises(LandingError, match="closed"):
            monitor.start()


def test_flush_publishes_now(tmp_path):
    with Monitor("flushed", tmp_path, features=SCHEMAS["numeric"], writer="thread", **QUIET) as m:
        ids = m.capture({"x": [1.0, 2.0], "y": [3, 4]}, [0, 1])
        assert m.flush() == 2
        assert sorted(landed(tmp_path, "flushed")["request_id"]) == sorted(ids)


BAD = [
    ([{"x": 1.0, "y": 2, "plan": "a"}], 1, {}, "row 0 lacks column 'region'"),
    (
        [{"x": 1.0, "y": 2, "plan": "a", "region": "n"}, {"x": 1.0, "plan": "a", "region": "n"}],
        [1, 1],
        {},
        "row 1 lacks column 'y'",
    ),
    ([{"x": "1.5", "y": 2, "plan": "a", "region": "n"}], 1, {}, "row 0, column 'x'.*string"),
    ([{"x": True, "y": 2, "plan": "a", "region": "n"}], 1, {}, "column 'x'.*boolean"),
    ([{"x": 1.0, "y": 2, "plan": 3, "region": "n"}], 1, {}, "row 0, column 'plan'.*number"),
    (
        {"x": [1.0, 2.0, np.nan], "y": [1, 2, 3], "plan": ["a"] * 3, "region": ["n"] * 3},
        [0, 0, 0],
        {},
        "row 2, column 'x'.*not a finite number",
    ),
    (
        {"x": [1.0, 2.0], "y": [1, 2, 3], "plan": ["a"] * 2, "region": ["n"] * 2},
        [0, 0],
        {},
        "different lengths",
    ),
    (
        pa.table({"x": [1.0, None], "y": [1, 2], "plan": ["a", "b"], "region": ["n", "s"]}),
        [0, 0],
        {},
        "row 1, column 'x': null",
    ),
    (
        pa.table({"x": [1.0], "y": [1], "plan": [7], "region": ["n"]}),
        [0],
        {},
        "column 'plan': expected strings",
    ),
    (
        pd.DataFrame({"x": [1.0], "y": [1], "plan": ["a"]}),
        [0],
        {},
        "lack column 'region'",
    ),
    (
        pl.DataFrame({"x": ["1"], "y": [1], "plan": ["a"], "region": ["n"]}),
        [0],
        {},
        "column 'x': expected numbers",
    ),
    (np.ones((1, 2)), [0], {}, "categorical features"),
    ("x=1", [0], {}, "not accepted"),
    ([{"x": 1.0, "y": 2, "plan": "a", "region": "n"}], [0, 1], {}, "prediction must hold one"),
    ([{"x": 1.0, "y": 2, "plan": "a", "region": "n"}], ["yes"], {}, "prediction must be numbers"),
    ([{"x": 1.0, "y": 2, "plan": "a", "region": "n"}], [np.inf], {}, "prediction inf"),
    ([{"x": 1.0, "y": 2, "plan": "a", "region": "n"}], 1, {"score": [0.1, 0.2]}, "score must"),
    ([{"x": 1.0, "y": 2, "plan": "a", "region": "n"}], 1, {"request_ids": ["a", "b"]}, "one id"),
    ([{"x": 1.0, "y": 2, "plan": "a", "region": "n"}], 1, {"request_ids": [""]}, "id"),
    ([{"x": 1.0, "y": 2, "plan": "a", "region": "n"}], 1, {"ts": datetime(2026, 1, 1)}, "zone"),
    ([{"x": 1.0, "y": 2, "plan": "x" * 100_000, "region": "n"}], 1, {}, "plan"),
]


@pytest.mark.parametrize(("features", "prediction", "extra", "message"), BAD)
def test_rows_that_do_not_fit_are_refused_whole_naming_column_and_row(
    tmp_path, features, prediction, extra, message
):
    with Monitor("bad", tmp_path, features=SCHEMAS["mixed"], writer="thread", **QUIET) as m:
        with pytest.raises(SchemaError, match=message):
            m.capture(features, prediction, **extra)
        assert m.stats().captured_rows == 0
    assert landed(tmp_path, "bad").height == 0


def test_a_numpy_matrix_is_copied_and_checked(tmp_path):
    with Monitor("np", tmp_path, features=SCHEMAS["numeric"], writer="thread", **QUIET) as m:
        x = np.array([[1.0, 2.0], [3.0, 4.0]])
        ids = m.capture(x, np.array([0.0, 1.0]))
        x[:] = -1  # the caller reuses its buffer: what was captured stays
        with pytest.raises(SchemaError, match="rows x 2"):
            m.capture(np.ones((1, 3)), [0])
        with pytest.raises(SchemaError, match="row 0, column 'y'"):
            m.capture(np.array([[1.0, np.nan]]), [0])
    frame = landed(tmp_path, "np").sort("x")
    assert frame.select("x", "y").rows() == [(1.0, 2.0), (3.0, 4.0)]
    assert sorted(frame["request_id"]) == sorted(ids)


# a process of a user's: captures, says which ids, then waits to be stopped
CHILD = """
import json, sys, time
from driftlake import Monitor
wh, writer, handle = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
monitor = Monitor("sigterm", wh, features={"x": "numeric", "c": "categorical"}, writer=writer,
                  flush_rows=10**6, flush_interval=600, handle_sigterm=handle).start()
ids = []
for i in range(300):
    ids += monitor.capture([{"x": float(i), "c": f"k{i % 3}"}], i % 2, 0.5)
print(json.dumps(ids), flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("writer", WRITERS)
def test_sigterm_publishes_every_captured_row(tmp_path, writer):
    wh = tmp_path / "wh"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(wh), writer, "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ids = json.loads(proc.stdout.readline())
        assert landed(wh, "sigterm").height == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 128 + signal.SIGTERM  # exited through Python, not killed
    finally:
        proc.kill()
        proc.wait()
    assert len(ids) == 300
    assert sorted(landed(wh, "sigterm")["request_id"]) == sorted(ids)


def test_without_the_handler_sigterm_kills_a_thread_writers_rows(tmp_path):
    """What ``handle_sigterm`` prevents: SIGTERM's default action ends the process before
    the thread writer publishes."""
    wh = tmp_path / "wh"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(wh), "thread", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert len(json.loads(proc.stdout.readline())) == 300
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()
    assert landed(wh, "sigterm").height == 0


def test_importing_the_library_imports_no_server_analytics_or_frame_library():
    probe = (
        "import sys, driftlake; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'serving', 'analytics', 'polars', 'pandas', 'fastapi', 'starlette', 'sklearn'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
