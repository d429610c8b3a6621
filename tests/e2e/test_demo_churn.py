"""The churn demo (``run.py --dataset churn``): mixed rows through a model server serving the
churn reference; the moved device and country mix is flagged, a clean stream is not."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest

from analytics import read_history
from harness import ROOT
from harness.procs import free_port
from ingest import Warehouse
from serving import churn

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def demo(tmp_path, drift: str) -> str:
    proc = subprocess.run(
        [
            sys.executable, "run.py",
            "--dataset", "churn",
            "--drift", drift,
            "--requests", "1200",
            "--rate", "300",
            "--url", f"http://127.0.0.1:{free_port()}",  # nothing there: embedded pipeline
            "--warehouse", str(tmp_path / "wh"),
            "--dask-dashboard", "off",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_churn_drift_true_flags_the_moved_categorical_features(tmp_path):
    out = demo(tmp_path, "true")
    assert "windows tested: 6" in out, out[-3000:]
    assert "DRIFT" in out
    drifted = next(line for line in out.splitlines() if line.startswith("drifted features"))
    assert "device" in drifted and "country" in drifted, drifted
    for steady in ("plan", "payment_method", *churn.NUMERIC):
        assert steady not in drifted, drifted

    # the history holds chi-squared rows for the categorical features, the new country named
    history = read_history(Warehouse(tmp_path / "wh"), churn.MODEL)
    tests = dict(history.select("feature", "test").unique().iter_rows())
    assert {tests[c] for c in churn.CATEGORICAL} == {"chi2"}
    assert {tests[c] for c in churn.NUMERIC} == {"ks"}
    country = history.filter(pl.col("feature") == "country", pl.col("window_id") == 5)
    assert country["unseen_categories"].to_list() == [["MX"]]
    assert country["drifted"].to_list() == [True]


def test_churn_drift_false_raises_no_alarm(tmp_path):
    out = demo(tmp_path, "false")
    assert "windows tested: 6" in out, out[-3000:]
    assert "DRIFT" not in out
    assert "with dataset drift: 0" in out
    history = read_history(Warehouse(tmp_path / "wh"), churn.MODEL)
    assert history.filter(pl.col("test") == "chi2")["unseen_categories"].list.len().max() == 0
