"""The native full stack for tests and docs: nginx, replicas, Pushgateway, Prometheus, Dask,
and Alertmanager when a test gives it a webhook.

:func:`native_stack` starts it all on loopback; :func:`dashboard_queries` and
:func:`evaluate` run the shipped Grafana dashboard's queries against its Prometheus. Used by
``tests/e2e/test_stack.py`` and ``docs/render_dashboard.py``.
"""

from __future__ import annotations

import math
import os
import re
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

from analytics import AnalyticsSettings, Driver, dask_client
from tests.conftest import REFERENCE, ROOT
from tests.servers import ServerHandle, model_server
from tests.stack import (
    Gateway,
    Prometheus,
    Service,
    alertmanager_running,
    gateway_running,
    prometheus_running,
    pushgateway_running,
)

MODEL = "breast_cancer"
FEATURE = "mean radius"  # one of run.py's drifted features: the dashboard's $feature
WINDOW = 100
DASHBOARD = ROOT / "grafana" / "dashboards" / "driftlake.json"
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
    alertmanager: Service | None = None


@contextmanager
def native_stack(
    workdir: Path,
    *,
    window_size: int = WINDOW,
    replicas: int = 2,
    n_workers: int = 1,
    flush_interval: float = 0.5,
    alert_webhook: str | None = None,
    alert_for: Mapping[str, str] | None = None,
) -> Iterator[NativeStack]:
    """Start the whole stack on loopback under ``workdir``; stop every part on exit.

    The replicas are ``python -m serving`` processes on 127.0.0.1 ports, so nginx runs
    ``nginx.conf`` in static-upstream mode (the DNS mode needs replicas on 127.0.0.2+).
    With ``alert_webhook`` (a URL) Alertmanager runs ``prometheus/alertmanager.yml`` with
    that receiver and 1 s grouping waits, and Prometheus sends its alerts there;
    ``alert_for`` shortens the named alerts' ``for:`` (see :func:`tests.stack.render_rules`).
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
        alertmanager = None
        if alert_webhook is not None:
            alertmanager = stack.enter_context(
                alertmanager_running(workdir / "alertmanager", alert_webhook)
            )
        prometheus = stack.enter_context(
            prometheus_running(
                workdir / "prometheus",
                {"model-server": backends, "pushgateway": [f"127.0.0.1:{pgw.port}"]},
                alertmanagers=[f"127.0.0.1:{alertmanager.port}"] if alertmanager else (),
                alert_for=alert_for,
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
        native = NativeStack(
            gateway, prometheus, pgw, servers, driver, warehouse, started, alertmanager=alertmanager
        )
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
