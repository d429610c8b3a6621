"""The capture library's examples end to end: a user's own FastAPI app under real uvicorn
lands every answered request, and the analytics job finds the drift sent to it in the
drifted features only; the batch job lands every row of a file under the file's ids."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import httpx
import pyarrow.parquet as pq
import pytest

from analytics import AnalyticsSettings, Driver, read_history
from driftlake import REQUEST_IDS_HEADER
from examples import churn_model
from harness import ROOT
from harness.procs import driftlake_env, free_port, start_ready
from ingest import Warehouse
from ingest.reader import scan_landing

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MODEL = "churn_api"
WINDOW = 200
DRIFTED = {"monthly_charges", "plan"}


def send(client: httpx.Client, customers: list[dict]) -> dict[str, tuple[dict, dict]]:
    """POST each customer to /score; the landed id of each -> (request, answer)."""
    out = {}
    for customer in customers:
        response = client.post("/score", json=customer)
        assert response.status_code == 200, response.text
        (request_id,) = response.headers[REQUEST_IDS_HEADER].split(",")
        out[request_id] = (customer, response.json())
    return out


def test_own_fastapi_app_lands_its_traffic_and_its_drift_is_found(tmp_path, dask_cluster):
    wh, reference = tmp_path / "wh", tmp_path / "churn_reference.parquet"
    env = driftlake_env(warehouse=wh, reference_path=reference, model_name=MODEL)
    port = free_port()
    app = start_ready(
        "own_fastapi_app",
        [sys.executable, "-m", "uvicorn", "examples.own_fastapi_app:app", "--port", str(port)],
        tmp_path / "app.log",
        port,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    try:
        plain = churn_model.generate(2 * WINDOW, seed=1).drop(columns=churn_model.LABEL)
        drifted = churn_model.generate(2 * WINDOW, seed=2, drift=True)
        drifted = drifted.drop(columns=churn_model.LABEL)
        with httpx.Client(base_url=app.url, timeout=30, trust_env=False) as client:
            sent = send(client, plain.to_dict("records"))
            sent |= send(client, drifted.to_dict("records"))
    finally:
        # SIGTERM: uvicorn's graceful shutdown (the lifespan closes the monitor), after which
        # it re-raises the signal
        assert app.stop() == -signal.SIGTERM, app.log_tail()
    assert "Application shutdown complete" in app.logs()

    landed = scan_landing(Warehouse(str(wh)), MODEL).collect().sort("ts", "request_id")
    assert sorted(landed["request_id"]) == sorted(sent)
    for row in landed.iter_rows(named=True):
        customer, answer = sent[row["request_id"]]
        assert {k: row[k] for k in churn_model.FEATURES} == customer
        assert (row["prediction"], row["score"]) == (answer["churn"], answer["probability"])

    settings = AnalyticsSettings(
        warehouse=str(wh),
        reference_path=str(reference),
        model_name=MODEL,
        window_size=WINDOW,
        dashboard_address=None,
    )
    report = Driver(settings, dask_cluster).run_cycle(now=time.time() + 3600)
    assert len(report.windows) == 4
    history = read_history(Warehouse(str(wh)), MODEL)
    for window_id in range(4):
        rows = history.filter(history["window_id"] == window_id)
        tests = dict(zip(rows["feature"], rows["drifted"], strict=True))
        assert set(churn_model.FEATURES) <= set(tests)
        found = {f for f in churn_model.FEATURES if tests[f]}
        # windows 0 and 1 hold the undrifted traffic, 2 and 3 the drifted
        assert found == (DRIFTED if window_id >= 2 else set()), (window_id, rows)


def test_batch_scoring_lands_every_row_under_its_id(tmp_path):
    frame = churn_model.generate(2500, seed=3)
    frame["customer_id"] = [f"cust-{i:05d}" for i in range(len(frame))]
    source = tmp_path / "customers.parquet"
    frame.to_parquet(source, index=False)
    wh = tmp_path / "wh"
    job = [sys.executable, "examples/batch_scoring.py"]
    run = subprocess.run(
        [*job, str(source), "--id-column", "customer_id", "--warehouse", str(wh)],
        cwd=ROOT,
        env=driftlake_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["rows"] == summary["captured"] == summary["published"] == 2500
    landed = scan_landing(Warehouse(str(wh)), MODEL).collect().sort("request_id")
    assert landed["request_id"].to_list() == frame["customer_id"].to_list()
    expected = frame.sort_values("customer_id")
    for name in churn_model.FEATURES:
        assert landed[name].to_list() == expected[name].tolist()
    assert landed["score"].is_between(0, 1).all()

    # bad input: a clear message, exit status 2, nothing landed
    broken = tmp_path / "broken.parquet"
    pq.write_table(pq.read_table(source).drop(["plan"]), broken)
    bad = subprocess.run(
        [*job, str(broken), "--id-column", "customer_id", "--warehouse", str(tmp_path / "wh2")],
        cwd=ROOT,
        env=driftlake_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "lacks columns ['plan']" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "wh2").exists()
