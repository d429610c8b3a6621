"""The users' notebook runs top to bottom on a real warehouse and its queries count right."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import nbclient
import nbformat
import pytest

from analytics import AnalyticsSettings, Driver, dask_client
from harness import REFERENCE, ROOT
from harness.landing import holdout_rows, write_landing
from ingest import Warehouse

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

NOTEBOOK = ROOT / "notebooks" / "warehouse.ipynb"
START = datetime(2026, 1, 1, 10, 40, tzinfo=UTC)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_warehouse_notebook_executes_and_counts_the_rows(tmp_path, monkeypatch, request, backend):
    # on s3 the fixture sets this process's AWS_* variables: workers and the kernel inherit them
    wh = Warehouse(tmp_path / "wh" if backend == "local" else request.getfixturevalue("s3_url"))
    # two replicas over two hours (10:40-11:20), the second drifting after its first rows
    write_landing(
        wh, holdout_rows(300, seed=1), replica="r1", start=START, step=timedelta(seconds=8)
    )
    write_landing(
        wh,
        holdout_rows(200, seed=2, shift={"mean radius": 1.5}),
        replica="r2",
        start=START,
        step=timedelta(seconds=12),
    )
    settings = AnalyticsSettings(
        warehouse=wh.url,
        reference_path=str(REFERENCE),
        window_size=100,
        n_workers=1,
        dashboard_address=None,
    )
    with dask_client(settings) as client:
        report = Driver(settings, client).run_cycle(now=START.timestamp() + 3 * 3600)
    assert len(report.windows) == 5

    monkeypatch.setenv("DRIFTLAKE_WAREHOUSE", wh.url)
    monkeypatch.setenv("DRIFTLAKE_MODEL_NAME", "breast_cancer")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    printed = "".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    )
    values = {
        m[1]: dict(kv.split("=") for kv in m[2].split())
        for m in re.finditer(r"^(\w+) (.+)$", printed, re.M)
    }
    # both replicas write from 10:40 for 40 minutes: 4 replica-hours, 500 rows
    for query in ("polars_rows_per_replica_hour", "duckdb_rows_per_replica_hour"):
        assert values[query] == {"groups": "4", "rows": "500"}
    assert values["polars_percentiles"]["rows"] == "500"
    assert int(values["polars_percentiles"]["buckets"]) == 4  # 10:40, 10:50, 11:00, 11:10
    assert values["duckdb_percentiles"] == {"hours": "2", "rows": "500"}
    for query in ("polars_history", "duckdb_history"):
        assert values[query]["windows"] == "5"
    assert values["polars_history"]["drifted"] == values["duckdb_history"]["drifted"]
