"""locustfile.py runs headless and posts well-formed reference rows, shifted when asked.

The target is a stdlib HTTP server on loopback that checks each payload and keeps the rows;
pointing the same run at the real stack is the full-stack test's job.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from harness import REFERENCE, ROOT
from harness.procs import free_port
from harness.stubs import QuietHandler, serving_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

FEATURES = [c for c in pl.read_parquet_schema(REFERENCE) if c != "target"]


class _Sink(ThreadingHTTPServer):
    daemon_threads = True
    rows: list[list[float]]
    bad: list[str]


class _Handler(QuietHandler):
    server: _Sink

    def do_POST(self) -> None:
        body = self.read_json()
        features = body.get("features", {})
        ok = (
            self.path == "/get-prediction"
            and features.get("columns") == FEATURES
            and all(len(r) == len(FEATURES) for r in features.get("data", []))
        )
        if ok:
            self.server.rows.extend(features["data"])
        else:
            self.server.bad.append(json.dumps(body)[:300])
        self.reply(200 if ok else 422, b"{}")


@pytest.fixture
def sink() -> Iterator[_Sink]:
    server = _Sink(("127.0.0.1", free_port()), _Handler)
    server.rows, server.bad = [], []
    with serving_in_thread(server):
        yield server


def run_locust(tmp_path: Path, sink: _Sink, **env: str) -> dict[str, str]:
    """Run locustfile.py headless for 5 s; return the CSV's Aggregated row."""
    host = f"http://127.0.0.1:{sink.server_address[1]}"
    argv = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "locustfile.py"), "--headless",
        "-u", "4", "-r", "4", "-t", "5s", "--host", host, "--csv", str(tmp_path / "locust"),
        "--only-summary", "--stop-timeout", "2",
    ]  # fmt: skip
    result = subprocess.run(
        argv, cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with (tmp_path / "locust_stats.csv").open() as f:
        stats = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    assert int(stats["Request Count"]) > 0, result.stderr[-3000:]
    return stats


def test_headless_run_posts_reference_rows_without_failures(tmp_path, sink):
    stats = run_locust(tmp_path, sink, DRIFTLAKE_LOCUST_SEED="1")
    assert int(stats["Request Count"]) > 20, stats
    assert int(stats["Failure Count"]) == 0, sink.bad[:3]
    reference = {tuple(r) for r in pl.read_parquet(REFERENCE).select(FEATURES).rows()}
    assert sink.rows and all(tuple(r) in reference for r in sink.rows)


def test_drift_share_shifts_that_share_of_the_features(tmp_path, sink):
    stats = run_locust(
        tmp_path,
        sink,
        DRIFTLAKE_LOCUST_DRIFT_SHARE="0.5",
        DRIFTLAKE_LOCUST_DRIFT_SHIFT="2",
        DRIFTLAKE_LOCUST_ROWS="8",
    )
    assert int(stats["Failure Count"]) == 0, sink.bad[:3]
    ref = pl.read_parquet(REFERENCE).select(FEATURES).to_numpy()
    sent = np.asarray(sink.rows)
    assert len(sent) >= 8 * int(stats["Request Count"]) > 0
    shift_in_sd = (sent.mean(axis=0) - ref.mean(axis=0)) / ref.std(axis=0)
    shifted = len(FEATURES) // 2
    assert np.all(shift_in_sd[:shifted] > 1.2), shift_in_sd[:shifted]
    assert np.all(np.abs(shift_in_sd[shifted:]) < 0.8), shift_in_sd[shifted:]
