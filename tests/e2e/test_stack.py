"""The full stack, natively on loopback: a drifted stream through nginx reaches Grafana's queries.

One module-scoped stack: the shipped ``nginx.conf`` in front of two real model-server replicas
writing one landing zone, a real Pushgateway, a real Prometheus running the shipped config and
rules (scraping both replicas and the Pushgateway every second), and the analytics driver on a
local Dask cluster pushing every second. ``run.py`` streams a drifted stream at the gateway;
then Prometheus must hold the drift, every query of the shipped Grafana dashboard must return
data, and a headless Locust run through the gateway must end without a failure.

:func:`native_stack`, :func:`dashboard_queries` and :func:`evaluate` are also what
``docs/render_dashboard.py`` draws ``docs/dashboard.png`` with.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from analytics import AnalyticsSettings, Driver, dask_client
from tests.conftest import REFERENCE, ROOT
from tests.servers import ServerHandle, landing_frame, model_server, wait_until
from tests.stack import (
    Gateway,
    Prometheus,
    Service,
    gateway_running,
    prometheus_running,
    pushgateway_running,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MODEL = "breast_cancer"
FEATURE = "mean radius"  # one of run.py's drifted features: the dashboard's $feature
SHIFTED = ("mean radius", "mean texture", "worst area", "mean concavity")  # run.DRIFT_SHIFTS
WINDOW = 100
STREAM_REQUESTS = 600  # one row each: 6 windows, the last 4 fully drifted
# Spread over several scrapes: a replica's request series appear at its first request, and
# rate() never counts what a series held when first scraped (so a sub-second burst reads 0).
STREAM_RATE = 150
DASHBOARD = ROOT / "grafana" / "dashboards" / "driftlake.json"
LOCUST_RESULTS = ROOT / "bench" / "results" / "locust_stats.csv"
RATE_INTERVAL = "15s"  # $__rate_interval: >= 4 scrape intervals, as Grafana computes it
STEP = 1.0  # $__interval: the test Prometheus scrapes and evaluates every second


# ----------------------------------------------------------------------------- the stack


@dataclass
class NativeStack:
    """Everything :func:`native_stack` started; ``started`` is when Prometheus began (epoch s)."""

    gateway: Gateway
    prometheus: Prometheus
    pushgateway: Service
    replicas: list[ServerHandle]
    driver: Driver
    warehouse: Path
    started: float
    loop_errors: list[BaseException] = field(default_factory=list)


@contextmanager
def native_stack(
    workdir: Path,
    *,
    window_size: int = WINDOW,
    replicas: int = 2,
    n_workers: int = 1,
    flush_interval: float = 0.5,
) -> Iterator[NativeStack]:
    """Start the whole stack on loopback under ``workdir``; stop every part on exit.

    The replicas are ``python -m serving`` processes on 127.0.0.1 ports, so nginx runs
    ``nginx.conf`` in static-upstream mode (the DNS mode needs replicas on 127.0.0.2+).
    """
    warehouse = workdir / "warehouse"
    with ExitStack() as stack:
        pgw = stack.enter_context(pushgateway_running(workdir / "pushgateway"))
        servers = [  # one after the other: the first trains and caches the shared model
            stack.enter_context(
                model_server(
                    warehouse,
                    replica=f"replica-{chr(ord('a') + i)}",
                    log_dir=workdir,
                    flush_interval=flush_interval,
                )
            )
            for i in range(replicas)
        ]
        backends = [f"127.0.0.1:{s.port}" for s in servers]
        gateway = stack.enter_context(gateway_running(workdir / "nginx", static_backends=backends))
        prometheus = stack.enter_context(
            prometheus_running(
                workdir / "prometheus",
                {"model-server": backends, "pushgateway": [f"127.0.0.1:{pgw.port}"]},
            )
        )
        started = time.time()
        settings = AnalyticsSettings(
            warehouse=str(warehouse),
            model_name=MODEL,
            reference_path=str(REFERENCE),
            window_size=window_size,
            interval=1.0,
            max_lateness=2.0,  # the stream's tail is tested 2 s after it ends
            n_workers=n_workers,
            dashboard_address=None,
            pushgateway=pgw.url,
        )
        client = stack.enter_context(dask_client(settings))
        driver = Driver(settings, client)
        native = NativeStack(gateway, prometheus, pgw, servers, driver, warehouse, started)
        stop = threading.Event()

        def loop() -> None:
            try:
                driver.run_forever(stop)
            except BaseException as exc:  # surfaced by the tests' messages, not lost in a thread
                native.loop_errors.append(exc)
                raise

        thread = threading.Thread(target=loop, name="driftlake-analytics", daemon=True)
        thread.start()
        stack.callback(thread.join, 30)  # runs after stop.set(): callbacks unwind LIFO
        stack.callback(stop.set)
        yield native


def stream(gateway: Gateway, workdir: Path, *args: str, timeout: float = 120) -> str:
    """Run ``run.py --url <gateway> *args`` to the end; return its output, fail on errors.

    ``--warehouse`` points into ``workdir``: should the gateway not answer run.py's probe,
    its embedded fallback must not write into the repository (and the test fails).
    """
    argv = [sys.executable, str(ROOT / "run.py"), "--url", gateway.url, *args]
    argv += ["--warehouse", str(workdir / "run-py-embedded")]
    proc = subprocess.run(
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", "NO_PROXY": "127.0.0.1,localhost"},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert out.startswith(f"driftlake: streaming to {gateway.url}"), (
        f"run.py did not stream to the gateway (nginx exit code {gateway.process.poll()}):\n"
        f"{out[:500]}\nnginx log:\n{gateway.log_tail()}"
    )
    return out


# ----------------------------------------------------------------------------- dashboard


@dataclass(frozen=True)
class PanelQuery:
    """One target of a dashboard panel (or an annotation), as Grafana would send it."""

    title: str
    kind: str
    ref: str
    expr: str
    legend: str
    instant: bool


def dashboard_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    """Every panel target and annotation query of a Grafana dashboard, in panel order."""
    out = []
    for panel in dashboard["panels"]:
        for t in panel.get("targets", []):
            out.append(
                PanelQuery(
                    panel["title"],
                    panel["type"],
                    t.get("refId", "A"),
                    t["expr"],
                    t.get("legendFormat", ""),
                    bool(t.get("instant")),
                )
            )
    for a in dashboard.get("annotations", {}).get("list", []):
        if a.get("expr"):
            out.append(PanelQuery(a["name"], "annotation", "A", a["expr"], "", False))
    return out


def variables(start: float, end: float, *, feature: str = FEATURE) -> dict[str, str]:
    """Values of the dashboard's template and Grafana's built-in variables for a time range."""
    rng = max(int(end - start), 1)
    return {
        "model": MODEL,
        "feature": feature,
        "__rate_interval": RATE_INTERVAL,
        "__interval": f"{STEP:g}s",
        "__interval_ms": str(int(STEP * 1000)),
        "__range": f"{rng}s",
        "__range_s": str(rng),
        "__range_ms": str(rng * 1000),
    }


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace ``$name`` and ``${name}``; an unknown variable is an error, not a silent hole."""

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"dashboard uses ${name}, which this test gives no value: {text!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def evaluate(
    prom_url: str, query: PanelQuery, start: float, end: float, step: float = STEP
) -> list[dict[str, Any]]:
    """Run ``query`` as Grafana does: instant at ``end``, or a range query over the range.

    Returns the series, each ``{"metric": {...}, "values": [[t, "v"], ...]}`` (one pair for
    an instant query); raises ``ValueError`` on a PromQL error.
    """
    expr = substitute(query.expr, variables(start, end))
    if query.instant:
        path, params = "query", {"query": expr, "time": end}
    else:
        path, params = "query_range", {"query": expr, "start": start, "end": end, "step": step}
    body = httpx.get(f"{prom_url}/api/v1/{path}", params=params, timeout=10, trust_env=False)
    data = body.json()
    if data.get("status") != "success":
        raise ValueError(f"{query.title!r} {expr!r} failed: {data.get('error', data)}")
    result = data["data"]["result"]
    if query.instant:
        return [{"metric": s["metric"], "values": [s["value"]]} for s in result]
    return result


def has_data(series: list[dict[str, Any]]) -> bool:
    """True if any series holds a finite value (NaN is what an empty rate ratio gives)."""
    return any(math.isfinite(float(v)) for s in series for _, v in s["values"])


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
