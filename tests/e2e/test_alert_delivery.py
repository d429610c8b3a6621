"""A DatasetDrift alert reaches a person's webhook during a drifted stream, and not during a
clean one.

The native stack (:func:`harness.fullstack.native_stack`): the shipped nginx.conf in front of a
real model server, the analytics job on a local Dask cluster pushing to a real Pushgateway,
Prometheus running the shipped config and rules, and Alertmanager running the shipped
``prometheus/alertmanager.yml`` with its webhook receiver pointed at a stdlib HTTP server in
this test. Only the clocks are shortened: scrapes and rule evaluations every second,
Alertmanager's group waits 1 s, and DatasetDrift's ``for:`` 2 s instead of 30 s; its
expression is the shipped one. ``run.py`` streams a clean stream, then a drifted one.
"""

from __future__ import annotations

import re
import time
from contextlib import AbstractContextManager
from datetime import datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import MODEL
from harness.fullstack import native_stack, stream
from harness.procs import free_port, wait_until
from harness.prometheus import Prometheus
from harness.stubs import QuietHandler, serving_in_thread

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ALERT = "DatasetDrift"
FOR_SECONDS = 2
BATCH = 4  # rows per request
CLEAN_ROWS = 400  # 4 windows of 100 rows
DRIFTED_ROWS = 600  # 6 windows: most of the last 5 minutes' windows drift


class _Webhook(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _WebhookHandler)
        self.received: list[tuple[float, dict[str, Any]]] = []  # (monotonic time, payload)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/driftlake-alerts"

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        """Every firing alert named ``alertname`` received so far."""
        return [
            alert
            for _, payload in list(self.received)
            for alert in payload["alerts"]
            if alert["status"] == "firing" and alert["labels"]["alertname"] == alertname
        ]


class _WebhookHandler(QuietHandler):
    server: _Webhook

    def do_POST(self) -> None:
        self.server.received.append((time.monotonic(), self.read_json()))
        self.reply(200)


def webhook() -> AbstractContextManager[_Webhook]:
    """A webhook receiver on a free loopback port, serving until the block ends."""
    return serving_in_thread(_Webhook(free_port()))


def rule(prom: Prometheus, name: str) -> dict[str, Any]:
    groups = httpx.get(f"{prom.url}/api/v1/rules", timeout=5, trust_env=False).json()
    return next(r for g in groups["data"]["groups"] for r in g["rules"] if r["name"] == name)


def epoch(rfc3339: str) -> float:
    """Prometheus' RFC 3339 timestamps carry nanoseconds; datetime takes microseconds."""
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", rfc3339)).timestamp()


def rows_tested(rows: int) -> str:
    return f'max(driftlake_rows_tested_total{{model="{MODEL}"}}) >= {rows}'


def test_dataset_drift_reaches_the_webhook_during_a_drifted_stream_not_a_clean_one(
    tmp_path: Path,
):
    started = time.monotonic()
    with (
        webhook() as hook,
        native_stack(
            tmp_path,
            replicas=1,
            alert_webhook=hook.url,
            alert_for={ALERT: f"{FOR_SECONDS}s"},
        ) as stack,
    ):
        prom = stack.prometheus
        prom.wait_for('up{job="model-server"} == 1', timeout=30)
        args = ("--batch", str(BATCH), "--rate", "100")

        # clean: every window tested and in Prometheus, then evaluated for longer than the
        # alert would need to fire and be sent (for: + group_wait + a scrape)
        clean = ("--drift", "false", "--requests", str(CLEAN_ROWS // BATCH))
        stream(stack.gateway, tmp_path, *clean, *args)
        prom.wait_for(rows_tested(CLEAN_ROWS), timeout=30)
        data_seen = time.time()
        wait_until(
            lambda: epoch(rule(prom, ALERT)["lastEvaluation"]) > data_seen + FOR_SECONDS + 3,
            timeout=20,
        )
        assert rule(prom, ALERT)["state"] == "inactive"
        assert rule(prom, ALERT)["health"] == "ok"
        # never pending or firing since the stack started, and nothing sent
        assert prom.query(f'ALERTS{{alertname="{ALERT}"}}[5m]') == []
        assert hook.firing(ALERT) == []
        windows = prom.query(f'driftlake_windows_total{{model="{MODEL}"}}')
        assert float(windows[0]["value"][1]) >= CLEAN_ROWS // 100  # the rule had data

        # drifted: the alert arrives at the webhook, through Alertmanager
        drift_started = time.monotonic()
        drifted = (
            "--drift",
            "true",
            "--drift-start",
            "0",
            "--requests",
            str(DRIFTED_ROWS // BATCH),
        )
        stream(stack.gateway, tmp_path, *drifted, "--seed", "1", *args)
        try:
            alerts = wait_until(lambda: hook.firing(ALERT), timeout=45)
        except AssertionError:
            raise AssertionError(
                f"no {ALERT} at the webhook; Prometheus alerts: {prom.alerts()}; "
                f"analytics errors: {stack.loop_errors}; received: {hook.received}"
            ) from None
        arrived = min(at for at, payload in hook.received if payload["alerts"])

    assert arrived > drift_started
    alert = alerts[0]
    assert alert["labels"]["model"] == MODEL
    assert alert["labels"]["severity"] == "warning"
    assert MODEL in alert["annotations"]["summary"]
    print(
        f"{ALERT} reached the webhook {arrived - drift_started:.1f} s after the drifted stream "
        f"began; test took {time.monotonic() - started:.0f} s"
    )
