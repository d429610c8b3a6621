"""The README's demo command: drift is detected and named; a clean stream raises no alarm."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from harness import ROOT
from harness.procs import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def demo(tmp_path, drift: str, *flags: str) -> str:
    proc = subprocess.run(
        [
            sys.executable, "run.py",
            "--drift", drift,
            "--requests", "1200",
            "--rate", "300",
            "--url", f"http://127.0.0.1:{free_port()}",  # nothing there: embedded pipeline
            "--warehouse", str(tmp_path / "wh"),
            *flags,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_drift_true_reports_drifted_windows_and_names_the_features(tmp_path):
    out = demo(tmp_path, "true")
    assert out.splitlines()[0].startswith("driftlake: nothing answers at")
    # the Dask dashboard is on by default, on a free loopback port, named on the first lines
    # (the first line may wrap: it names the warehouse path)
    head = out.splitlines()[:3]
    assert any(re.match(r"Dask dashboard: http://127\.0\.0\.1:\d+/status", x) for x in head), head
    assert "DRIFT" in out
    drifted = next(line for line in out.splitlines() if line.startswith("drifted features"))
    for feature in ("mean radius", "mean texture", "worst area", "mean concavity"):
        assert feature in drifted
    assert "windows tested: 6" in out


def test_drift_false_raises_no_dataset_drift_alarm(tmp_path):
    out = demo(tmp_path, "false", "--dask-dashboard", "off")
    assert "Dask dashboard" not in out
    assert "windows tested: 6" in out
    assert "DRIFT" not in out
    assert "with dataset drift: 0" in out
