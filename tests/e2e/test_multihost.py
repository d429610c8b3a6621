"""Every service on its own host, the warehouse only an s3:// URL: a drifted stream through
nginx is tested once over both replicas while a Dask worker joins and another is killed.

The run is :func:`harness.multihost.run_demo`, the same one ``python -m harness.multihost``
shows a person; it checks every claim itself (an AssertionError names the one that failed),
and this test restates the headline ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.multihost import NEW_WORKER, REPLICAS, WORKERS, Plan, run_demo
from harness.netns import require_netns
from harness.procs import require_binary
from serving.dataset import DRIFT_SHIFTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MONITORED = 31  # the reference's 30 features and the prediction


def test_a_worker_joining_and_one_killed_mid_stream_leave_one_exact_history(
    tmp_path: Path,
) -> None:
    require_netns()
    for binary in ("nginx", "prometheus", "prometheus-pushgateway"):
        require_binary(binary)
    plan = Plan()
    lines: list[str] = []
    try:
        result = run_demo(tmp_path, plan, say=lines.append)
    finally:
        print("\n".join(lines))  # what the run showed, on failure too (or with -s)

    windows = plan.rows // plan.window_size
    # 1. both replicas' rows in one set of windows, the shift flagged, the metric in Prometheus
    assert result.stream.rows == plan.rows and result.stream.failed == 0
    assert set(result.landing_by_replica) == set(REPLICAS.values())
    assert sum(result.landing_by_replica.values()) == plan.rows
    assert result.history.windows == windows and result.history.history_files >= 1
    assert set(DRIFT_SHIFTS) <= set(result.history.flagged)
    assert result.prometheus["windows"] == windows and result.prometheus["late_rows"] == 0
    # 2. the worker that joined mid-stream was given window tasks (before any worker died)
    assert result.join.stream_running and result.join.runs
    assert all(r.worker == result.join.address for r in result.join.runs)
    assert result.window_runs[NEW_WORKER] >= len(result.join.runs)
    # 3. a worker killed holding window tasks: survivors finished the cycle, history exact
    assert result.kill.host in WORKERS and result.kill.stream_running and result.kill.keys
    assert result.kill.after and all(r.worker != result.kill.address for r in result.kill.after)
    assert result.compared_statistics == windows * MONITORED
