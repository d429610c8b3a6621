"""The native full stack for tests and docs: nginx, replicas, Pushgateway, Prometheus, Dask,
and Alertmanager when a test gives it a webhook.

:func:`native_stack` starts it all on loopback and :func:`stream` runs ``run.py`` through its
gateway. Used by ``tests/e2e/test_stack.py``, ``tests/e2e/test_alert_delivery.py`` and
``docs/render_dashboard.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from analytics import AnalyticsSettings, Driver, dask_client
from harness import MODEL, REFERENCE, ROOT
from harness.alertmanager import alertmanager_running
from harness.nginx import Gateway, gateway_running
from harness.procs import Process
from harness.prometheus import Prometheus, prometheus_running, pushgateway_running
from harness.servers import ServerHandle, model_server

WINDOW = 100


@dataclass
class NativeStack:
    """Everything :func:`native_stack` started; ``started`` is when Prometheus began (epoch s)."""

    gateway: Gateway
    prometheus: Prometheus
    pushgateway: Process
    replicas: list[ServerHandle]
    driver: Driver
    warehouse: Path
    started: float
    loop_errors: list[BaseException] = field(default_factory=list)
    alertmanager: Process | None = None


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
    ``alert_for`` shortens the named alerts' ``for:`` (see :func:`harness.prometheus.render_rules`).
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
        f"run.py did not stream to the gateway (nginx exit code {gateway.proc.poll()}):\n"
        f"{out[:500]}\nnginx log:\n{gateway.log_tail()}"
    )
    return out
