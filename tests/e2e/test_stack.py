"""The full stack, natively on loopback: a drifted stream through nginx reaches Grafana's queries.

One module-scoped stack: the shipped ``nginx.conf`` in front of two real model-server replicas
writing one landing zone, a real Pushgateway, a real Prometheus running the shipped config and
rules (scraping both replicas and the Pushgateway every second), and the analytics driver on a
local Dask cluster pushing every second. ``run.py`` streams a drifted stream at the gateway;
then Prometheus must hold the drift, every query of the shipped Grafana dashboard must return
data, and a headless Locust run through the gateway must end without a failure.

:func:`harness.fullstack.native_stack` starts the stack; ``docs/render_dashboard.py`` draws
``docs/dashboard.png`` with the same helpers.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness import MODEL, ROOT
from harness.dashboard import DASHBOARD, FEATURE, dashboard_queries, evaluate, has_data, substitute
from harness.fullstack import NativeStack, native_stack, stream
from harness.procs import wait_until
from harness.servers import ServerHandle, landing_frame

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# the features serving.dataset.DRIFT_SHIFTS moves
SHIFTED = ("mean radius", "mean texture", "worst area", "mean concavity")
STREAM_REQUESTS = 600  # one row each: 6 windows, the last 4 fully drifted
# Spread over several scrapes, as live traffic is, so every rate() panel has points.
STREAM_RATE = 150
LOCUST_RESULTS = ROOT / "bench" / "results" / "locust_stats.csv"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    with native_stack(tmp_path_factory.mktemp("stack")) as native:
        yield native


def predicted_rows(server: ServerHandle) -> float:
    return server.metrics()["driftlake_prediction_rows_total"]


@dataclass(frozen=True)
class Streamed:
    """What the drifted stream did: rows predicted per replica during it, and run.py's output."""

    rows_by_replica: dict[str, float]
    output: str


@pytest.fixture(scope="module")
def drifted(stack: NativeStack) -> Streamed:
    """Stream a drifted stream through nginx and wait until Prometheus has its every window."""
    # the stream lasts ~4 s: a replica first scraped midway would show only part of it
    stack.prometheus.wait_for('up{job="model-server"} == 1', lambda r: len(r) == 2, timeout=30)
    before = {s.replica: predicted_rows(s) for s in stack.replicas}
    out = stream(
        stack.gateway,
        stack.warehouse.parent,
        "--drift", "true",
        "--requests", str(STREAM_REQUESTS),
        "--rate", str(STREAM_RATE),
        "--drift-start", "0.3",
    )  # fmt: skip
    rows = {s.replica: predicted_rows(s) - before[s.replica] for s in stack.replicas}
    tested = f'max(driftlake_rows_tested_total{{model="{MODEL}"}}) >= {STREAM_REQUESTS}'
    try:
        stack.prometheus.wait_for(tested, timeout=45)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; analytics loop errors: {stack.loop_errors}") from None
    return Streamed(rows, out)


# ----------------------------------------------------------------------------- tests


def test_drifted_stream_through_nginx_reaches_prometheus_from_both_replicas(stack, drifted):
    # nginx spread the stream over both replicas, and every request was predicted once
    assert all(n > 0 for n in drifted.rows_by_replica.values()), drifted.rows_by_replica
    assert sum(drifted.rows_by_replica.values()) == STREAM_REQUESTS, drifted.rows_by_replica
    wait_until(lambda: landing_frame(stack.warehouse).height >= STREAM_REQUESTS, timeout=10)
    landed = landing_frame(stack.warehouse)
    assert set(landed["replica"]) == {s.replica for s in stack.replicas}

    prom = stack.prometheus
    up = prom.query('up{job="model-server"} == 1')
    assert len(up) == 2, up
    served = prom.wait_for(
        "sum by (instance) (driftlake_prediction_rows_total) > 0", lambda r: len(r) == 2
    )
    assert {s["metric"]["instance"] for s in served} == {
        f"127.0.0.1:{s.port}" for s in stack.replicas
    }

    # the latest window (rows 500-599, all shifted) drifted, over rows of both replicas
    m = f'model="{MODEL}"'
    drift = prom.query(f"driftlake_dataset_drift{{{m}}} == 1")
    assert [s["metric"]["job"] for s in drift] == ["driftlake_analytics"], drift
    assert float(prom.query(f"driftlake_window_replicas{{{m}}}")[0]["value"][1]) == 2
    assert float(prom.query(f"driftlake_windows_total{{{m}}}")[0]["value"][1]) == 6
    assert float(prom.query(f"driftlake_drifted_windows_total{{{m}}}")[0]["value"][1]) >= 4

    p_values = {
        s["metric"]["feature"]: float(s["value"][1])
        for s in prom.query(f"driftlake_feature_p_value{{{m}}}")
    }
    flags = {
        s["metric"]["feature"]: float(s["value"][1])
        for s in prom.query(f"driftlake_feature_drift{{{m}}}")
    }
    assert len(p_values) == 31 and set(flags) == set(p_values)  # 30 features + prediction
    bonferroni = 0.05 / len(p_values)
    for feature in SHIFTED:
        assert p_values[feature] < bonferroni and flags[feature] == 1, (feature, p_values)
    assert sum(flags.values()) < len(flags)  # most features did not move


def test_every_dashboard_query_returns_data_from_the_real_stack(stack, drifted):
    dashboard = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries(dashboard)
    assert len(queries) > 30
    prom = stack.prometheus

    # the template variables' own queries offer the model and the feature
    for var in dashboard["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"])
        assert m, f"variable {var['name']}: unexpected query {var['query']!r}"
        match = substitute(m.group(1), {"model": MODEL})
        values = httpx.get(
            f"{prom.url}/api/v1/label/{m.group(2)}/values",
            params={"match[]": match},
            timeout=5,
            trust_env=False,
        ).json()["data"]
        assert {"model": MODEL, "feature": FEATURE}[var["name"]] in values, (var, values)

    # every target and annotation, range or instant as Grafana sends it, over the run so far
    missing: dict[str, str] = {p.title + "/" + p.ref: p.expr for p in queries}
    deadline = time.monotonic() + 30
    while missing and time.monotonic() < deadline:
        for q in queries:
            key = q.title + "/" + q.ref
            if key in missing and has_data(evaluate(prom.url, q, stack.started, time.time())):
                del missing[key]
        if missing:
            time.sleep(0.5)
    assert not missing, f"dashboard queries without data from the real stack: {missing}"

    # and the serving panels saw the stream's traffic on both replicas, not a flat zero
    by_replica = next(q for q in queries if q.title == "Requests/s by replica" and q.ref == "A")
    series = evaluate(prom.url, by_replica, stack.started, time.time())
    peaks = {s["metric"]["instance"]: max(float(v) for _, v in s["values"]) for s in series}
    assert len(peaks) == 2 and min(peaks.values()) > 1, peaks


def locust_summary(path: Path) -> dict[str, str]:
    with path.open() as f:
        return next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")


def test_headless_locust_through_the_gateway_has_no_failures(stack, tmp_path):
    def accepted() -> float:  # 200s answered to /get-prediction by all replicas
        return sum(
            v
            for s in stack.replicas
            for k, v in s.metrics().items()
            if k.startswith("driftlake_http_requests_total{")
            and 'path="/get-prediction"' in k
            and 'status="200"' in k
        )

    before = accepted()
    argv = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "locustfile.py"), "--headless",
        "-u", "8", "-r", "4", "-t", "20s", "--host", stack.gateway.url,
        "--csv", str(tmp_path / "locust"), "--only-summary", "--stop-timeout", "5",
    ]  # fmt: skip
    env = {**os.environ, "DRIFTLAKE_LOCUST_SEED": "1", "NO_PROXY": "127.0.0.1,localhost"}
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    stats_csv = tmp_path / "locust_stats.csv"
    stats = locust_summary(stats_csv)
    print(
        f"locust through nginx, 8 users, 20 s: {stats['Request Count']} requests, "
        f"{stats['Failure Count']} failures, {float(stats['Requests/s']):.0f} req/s, "
        f"p50 {stats['50%']} ms, p95 {stats['95%']} ms, p99 {stats['99%']} ms ({stats_csv})"
    )
    if os.environ.get("DRIFTLAKE_SAVE_LOCUST") == "1":
        LOCUST_RESULTS.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stats_csv, LOCUST_RESULTS)
    assert int(stats["Failure Count"]) == 0, result.stderr[-3000:]
    requests = int(stats["Request Count"])
    assert requests > 100, stats
    # every request Locust counted was answered by a model server behind nginx (a few more
    # were answered while Locust stopped its users, too late to be counted)
    assert accepted() - before >= requests
