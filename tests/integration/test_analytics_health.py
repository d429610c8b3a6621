"""``python -m analytics run`` serves its own /healthz and /metrics, and they tell the truth:
200 and cycles counted while cycles succeed, 503 and errors counted while they fail."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from harness import MODEL, REFERENCE, ROOT
from harness.landing import holdout_rows, write_landing
from harness.procs import driftlake_env, free_port, start_process, wait_until
from harness.servers import parse_metrics
from ingest import Warehouse

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
MAX_AGE = 3.0  # seconds: /healthz's bound in this test


def get(url: str) -> tuple[int, str]:
    """Return the status and body of a GET, 4xx/5xx included; (0, reason) if unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def compose_healthcheck(port: int) -> int:
    """Run compose's healthcheck command of the analytics service against ``port``."""
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["analytics"]
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD"
    argv = [sys.executable if a == "python" else a.replace(":8788/", f":{port}/") for a in test[1:]]
    return subprocess.run(argv, capture_output=True, timeout=30).returncode


@pytest.fixture
def analytics_job(tmp_path):
    """A live ``python -m analytics run`` on a tmp warehouse of 400 final rows."""
    wh = tmp_path / "wh"
    write_landing(Warehouse(wh), holdout_rows(400, seed=3), per_file=50)
    port = free_port()
    env = driftlake_env(
        warehouse=wh,
        reference_path=REFERENCE,
        window_size=100,
        interval=0.2,
        n_workers=1,
        dashboard_address="",
    )
    flags = [f"--health-address=127.0.0.1:{port}", f"--health-max-age={MAX_AGE}"]
    job = start_process(
        "analytics",
        [sys.executable, "-m", "analytics", "run", *flags],
        tmp_path / "analytics.log",
        port,
        env=env,
        own_session=True,  # the local cluster's workers die with the session
    )
    try:
        yield wh, job.url, job.proc
    finally:
        job.stop()


def test_healthz_and_metrics_follow_the_cycles(analytics_job):
    wh, url, proc = analytics_job

    def metrics() -> dict[str, float]:
        status, body = get(f"{url}/metrics")
        assert status == 200, body
        return parse_metrics(body)

    def log_tail() -> str:
        return (Path(wh).parent / "analytics.log").read_text(errors="replace")[-3000:]

    # listening from start-up (503 "starting" until a cycle succeeds: tests/unit), then 200
    wait_until(lambda: get(f"{url}/healthz")[0] in (200, 503) or proc.poll() is not None, 90)
    assert proc.poll() is None, log_tail()
    wait_until(lambda: get(f"{url}/healthz")[0] == 200 or proc.poll() is not None, timeout=120)
    status, body = get(f"{url}/healthz")
    assert status == 200, (body, log_tail())
    assert json.loads(body)["status"] == "ok"
    assert compose_healthcheck(int(url.rsplit(":", 1)[1])) == 0

    # 400 rows, windows of 100: all four tested, no failure
    m = wait_until(lambda: (m := metrics())["driftlake_analytics_windows_total"] == 4 and m, 60)
    assert m["driftlake_analytics_cycles_total"] > 0
    assert m["driftlake_analytics_cycle_errors_total"] == 0
    assert m["driftlake_analytics_healthy"] == 1
    assert m["driftlake_analytics_last_success_timestamp_seconds"] > 0
    assert m["driftlake_analytics_last_cycle_duration_seconds"] > 0
    assert "process_start_time_seconds" in m

    # the model's state directory replaced by a file: every checkpoint save now fails
    # (NotADirectoryError, even as root), and the loop carries on
    state = Path(wh) / "_state" / f"model={MODEL}"
    aside = state.with_name("aside")
    state.rename(aside)
    state.write_text("not a directory")
    wait_until(lambda: get(f"{url}/healthz")[0] == 503, timeout=MAX_AGE + 30)
    status, body = get(f"{url}/healthz")
    answer = json.loads(body)
    assert status == 503 and answer["status"] == "stale", body
    assert answer["errors_since_success"] > 0 and "ago" in answer["reason"]
    assert compose_healthcheck(int(url.rsplit(":", 1)[1])) != 0
    errors = metrics()["driftlake_analytics_cycle_errors_total"]
    assert errors > 0
    wait_until(lambda: metrics()["driftlake_analytics_cycle_errors_total"] > errors, timeout=30)
    m = metrics()
    assert m["driftlake_analytics_healthy"] == 0 and m["driftlake_analytics_windows_total"] == 4
    assert proc.poll() is None, log_tail()

    # storage back: the next cycle succeeds and /healthz is 200 again
    state.unlink()
    aside.rename(state)
    wait_until(lambda: get(f"{url}/healthz")[0] == 200, timeout=30)
    assert get(f"{url}/nowhere")[0] == 404
