"""prometheus/ is valid for promtool, its alerts pass their unit tests, and a live Prometheus
running it (targets rewritten to loopback) evaluates every rule and every dashboard query.

The live test stands in for the product with the metric names of the design: a fake replica
``/metrics`` endpoint and the analytics job's push to a real Pushgateway.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    push_to_gateway,
)

from harness import ROOT
from harness.procs import free_port, require_binary
from harness.prometheus import prometheus_running, pushgateway_running
from harness.stubs import QuietHandler, serving_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

PROM = ROOT / "prometheus"
RULES = sorted((PROM / "rules").glob("*.yml"))
UNIT_TESTS = sorted((PROM / "tests").glob("*.yml"))
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
FEATURES = ["mean radius", "mean texture"]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool")
    return subprocess.run(
        [binary, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def alert_rules() -> list[dict]:
    return [
        rule
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_promtool_check_config_accepts_prometheus_yml():
    result = promtool("check", "config", "prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_rules_accepts_every_rule_file():
    assert RULES
    result = promtool("check", "rules", *(str(p) for p in RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass():
    assert UNIT_TESTS
    result = promtool("test", "rules", *(str(p) for p in UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_documented_and_proven_to_fire_by_a_unit_test():
    required = {
        "DatasetDrift",
        "FeatureDrift",
        "DriftJobStale",
        "DriftJobFailing",
        "ModelServerErrorRate",
        "ModelServerLatencyP99",
        "CaptureDroppingRows",
    }
    rules = {r["alert"]: r for r in alert_rules()}
    assert required <= set(rules)
    for name, rule in rules.items():
        assert rule.get("for"), f"{name} has no for: duration"
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        assert {"summary", "description"} <= set(rule["annotations"]), name
    fired, silent = set(), set()
    for path in UNIT_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    assert set(rules) <= fired, f"no unit test shows these alerts firing: {set(rules) - fired}"
    assert "DatasetDrift" in silent


# ---------------------------------------------------------------------------- live


def replica_registry() -> tuple[CollectorRegistry, Callable[[], None]]:
    """A registry with every serving metric of the design; ``tick()`` adds traffic."""
    reg = CollectorRegistry()
    requests = Counter("driftlake_http_requests", "", ["path", "status"], registry=reg)
    latency = Histogram("driftlake_http_request_duration_seconds", "", ["path"], registry=reg)
    counters = {
        name: Counter(name, "", registry=reg)
        for name in (
            "driftlake_prediction_rows",
            "driftlake_capture_rows",
            "driftlake_capture_flushed_rows",
            "driftlake_capture_dropped_rows",
            "driftlake_capture_flushes_failed",
        )
    }
    Gauge("driftlake_capture_buffer_rows", "", registry=reg).set(12)
    Gauge("driftlake_capture_oldest_row_age_seconds", "", registry=reg).set(0.4)
    Gauge("driftlake_capture_last_flush_duration_seconds", "", registry=reg).set(0.01)
    info = Gauge("driftlake_model_info", "", ["model", "model_version", "replica"], registry=reg)
    info.labels("cancer", "v1", "replica-a").set(1)

    def tick() -> None:
        for path in ("/get-prediction", "/model/get-prediction"):
            requests.labels(path, "200").inc(10)
            latency.labels(path).observe(0.004)
        requests.labels("/get-prediction", "500").inc(0)
        for counter in counters.values():
            counter.inc(10)

    return reg, tick


@contextmanager
def fake_replica() -> Iterator[str]:
    reg, tick = replica_registry()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            tick()
            self.reply(200, generate_latest(reg), "text/plain; version=0.0.4")

    with serving_in_thread(ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)) as server:
        yield f"127.0.0.1:{server.server_address[1]}"


def push_cycle(gateway: str, cycle: int) -> None:
    """One analytics cycle's PUT, as the design's pusher does it."""
    reg = CollectorRegistry()
    per_feature = {
        name: Gauge(f"driftlake_feature_{name}", "", ["feature", "test"], registry=reg)
        for name in ("p_value", "statistic", "drift", "null_share", "out_of_range_share")
    }
    for i, feature in enumerate(FEATURES):
        values = {
            "p_value": 1e-9 if i == 0 else 0.4,
            "statistic": 0.3 if i == 0 else 0.05,
            "drift": 1 if i == 0 else 0,
            "null_share": 0.0,
            "out_of_range_share": 0.02 if i == 0 else 0.0,
        }
        for name, value in values.items():
            per_feature[name].labels(feature, "ks").set(value)
    now = 1.7e9 + cycle
    gauges = {
        "driftlake_features_drifting": 1,
        "driftlake_dataset_drift": 1,
        "driftlake_last_drift_timestamp_seconds": now,
        "driftlake_window_rows": 500,
        "driftlake_window_replicas": 2,
        "driftlake_window_end_timestamp_seconds": now,
        "driftlake_cycle_duration_seconds": 0.3,
        "driftlake_landing_lag_seconds": 1.5,
        "driftlake_last_success_timestamp_seconds": now,
    }
    for name, value in gauges.items():
        Gauge(name, "", registry=reg).set(value)
    for name in ("driftlake_windows", "driftlake_drifted_windows", "driftlake_cycle_errors"):
        Counter(name, "", registry=reg).inc(cycle * (0 if name.endswith("errors") else 3))
    push_to_gateway(
        gateway, job="driftlake_analytics", grouping_key={"model": "cancer"}, registry=reg
    )


def dashboard_exprs() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            out += [(panel["title"], t["expr"]) for t in panel.get("targets", [])]
        out += [(a["name"], a["expr"]) for a in dash.get("annotations", {}).get("list", [])]
    return out


def substitute(expr: str) -> str:
    return (
        expr.replace("$__rate_interval", "10s")
        .replace("$model", "cancer")
        .replace("$feature", FEATURES[0])
    )


def test_live_prometheus_evaluates_every_rule_and_dashboard_query(tmp_path: Path):
    stop = threading.Event()
    with (
        pushgateway_running(tmp_path / "pgw") as pgw,
        fake_replica() as replica,
        prometheus_running(
            tmp_path / "prom",
            {"model-server": [replica], "pushgateway": [f"127.0.0.1:{pgw.port}"]},
        ) as prom,
    ):
        pushes = [0]

        def pusher() -> None:
            while not stop.is_set():
                pushes[0] += 1
                push_cycle(pgw.url, pushes[0])
                stop.wait(0.5)

        thread = threading.Thread(target=pusher, daemon=True)
        thread.start()
        try:
            up = prom.wait_for("up == 1", lambda r: len(r) == 3)
            assert {s["metric"]["job"] for s in up} == {"model-server", "pushgateway", "prometheus"}
            # honor_labels: the pushed series keep the analytics job's labels
            drift = prom.wait_for("driftlake_dataset_drift")
            assert drift[0]["metric"]["job"] == "driftlake_analytics"
            assert drift[0]["metric"]["model"] == "cancer"

            for title, expr in dashboard_exprs():
                try:
                    prom.wait_for(substitute(expr), timeout=15)
                except TimeoutError as exc:
                    raise AssertionError(f"dashboard panel {title!r} gets no data: {exc}") from None

            api = f"{prom.url}/api/v1"
            models = httpx.get(
                f"{api}/label/model/values",
                params={"match[]": "driftlake_dataset_drift"},
                trust_env=False,
            ).json()["data"]
            assert models == ["cancer"]
            features = httpx.get(
                f"{api}/label/feature/values",
                params={"match[]": 'driftlake_feature_p_value{model="cancer"}'},
                trust_env=False,
            ).json()["data"]
            assert features == sorted(FEATURES)

            # every rule has been evaluated against real series without an error
            # (a bad join, e.g. many-to-many, only shows up here)
            deadline = time.monotonic() + 15
            while True:
                groups = httpx.get(f"{api}/rules", trust_env=False).json()["data"]["groups"]
                rules = {r["name"]: r for g in groups for r in g["rules"]}
                errors = {n: r.get("lastError") for n, r in rules.items() if r["health"] == "err"}
                assert not errors
                if all(r["health"] == "ok" for r in rules.values()):
                    break
                assert time.monotonic() < deadline, {n: r["health"] for n, r in rules.items()}
                time.sleep(0.2)
            assert set(rules) >= {r["alert"] for r in alert_rules()}
        finally:
            stop.set()
            thread.join(timeout=5)
