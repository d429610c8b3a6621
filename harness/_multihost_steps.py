"""The steps of harness/multihost.py's run: stream through nginx, add a Dask worker, kill
one, drain, backfill, read the bucket, and what Prometheus must hold."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass

from harness import MODEL, ROOT
from harness import _multihost_services as svc
from harness._multihost_checks import HistoryFacts
from harness._multihost_dask import TaskRun, in_flight, task_runs, wait_for_worker
from harness._multihost_snapshot import Snapshot
from harness._multihost_stack import (
    ANALYTICS,
    BACKFILL,
    CLIENT,
    GATEWAY,
    NEW_WORKER,
    OBSERVER,
    REPLICAS,
    WORKERS,
    Stack,
)


@dataclass(frozen=True)
class StreamResult:
    requests: int
    rows: int
    failed: int
    seconds: float


def start_stream(stack: Stack) -> subprocess.Popen[bytes]:
    """``run.py --drift true`` from the client host through nginx, in the background."""
    url = stack.net.url(GATEWAY, svc.GATEWAY_PORT)
    argv = svc.stream(url, stack.net.workdir(CLIENT), stack.plan)
    return stack.start(CLIENT, argv, env={"COLUMNS": "200"})


def finish_stream(stack: Stack, proc: subprocess.Popen[bytes], started: float) -> StreamResult:
    """Wait for run.py to end; fail unless it streamed to nginx and every request was
    accepted."""
    try:
        proc.wait(stack.plan.seconds * 3 + 30)
    except subprocess.TimeoutExpired:
        stack.stop(CLIENT, 5)
        raise AssertionError(f"run.py did not end\n{stack.tail(CLIENT)}") from None
    out = stack.log(CLIENT).read_text(errors="replace")
    url = stack.net.url(GATEWAY, svc.GATEWAY_PORT)
    assert out.startswith(f"driftlake: streaming to {url}"), f"run.py did not use nginx:\n{out}"
    summary = re.search(r"summary: (\d+) requests accepted \((\d+) rows\), (\d+) failed", out)
    assert proc.returncode == 0 and summary, f"run.py exited {proc.returncode}\n{out[-3000:]}"
    requests, rows, failed = map(int, summary.groups())
    assert failed == 0 and requests == stack.plan.requests, summary.group(0)
    return StreamResult(requests, rows, failed, time.monotonic() - started)


@dataclass(frozen=True)
class Join:
    host: str
    address: str
    stream_running: bool  # when the worker connected
    runs: tuple[TaskRun, ...]  # window tasks it ran within the wait


def add_worker(stack: Stack, stream: subprocess.Popen[bytes], host: str = NEW_WORKER) -> Join:
    """Add ``host`` to the network, start a Dask worker there, and give it three cycles to
    run a window task; whether it did is the caller's to judge (the stream goes on)."""
    addr = stack.net.add_host(host)
    stack.start(host, svc.worker(stack.scheduler_url, addr, host))
    address = wait_for_worker(stack.dask, addr, present=True, timeout=60)
    running = stream.poll() is None
    deadline = time.monotonic() + 3 * stack.plan.interval + 2
    while not (runs := [r for r in task_runs(stack.dask) if r.worker == address]):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return Join(host, address, running, tuple(runs))


@dataclass(frozen=True)
class Kill:
    host: str
    address: str
    keys: tuple[str, ...]  # the window tasks it held when it was killed
    at: float  # epoch seconds
    stream_running: bool
    after: tuple[TaskRun, ...]  # window tasks finished after the kill (on survivors)
    reran: tuple[str, ...]  # of ``keys``, those that then ran on a survivor


def kill_worker(stack: Stack, stream: subprocess.Popen[bytes], timeout: float = 20.0) -> Kill:
    """SIGKILL the first of the original workers seen holding window tasks (its nanny and
    worker process: the process group), two tasks if that happens within half of
    ``timeout`` (with one thread, the second has surely not started); then wait until the
    scheduler has dropped it and a survivor has finished a window task since."""
    client = stack.dask
    hosts = {
        wait_for_worker(client, stack.net.addr(h), present=True, timeout=5): h for h in WORKERS
    }
    deadline = time.monotonic() + timeout
    while True:
        held = {w: keys for w, keys in in_flight(client).items() if w in hosts and keys}
        enough = 2 if time.monotonic() < deadline - timeout / 2 else 1
        victim = next((w for w, keys in held.items() if len(keys) >= enough), None)
        if victim is not None:
            host, keys = hosts[victim], held[victim]
            os.killpg(stack.procs[host].pid, signal.SIGKILL)
            at = time.time()
            break
        if time.monotonic() > deadline or stream.poll() is not None:
            raise AssertionError(
                f"no worker of {WORKERS} held a window task while the stream ran "
                f"({timeout:g}s at most): the stream is too short for this machine"
            )
        time.sleep(0.005)
    running = stream.poll() is None
    stack.procs[host].wait(10)
    wait_for_worker(client, stack.net.addr(host), present=False, timeout=30)
    deadline = time.monotonic() + 60
    while not (after := [r for r in task_runs(client) if r.stop > at]):
        if time.monotonic() > deadline:
            raise AssertionError(f"no window task finished in 60s after {host} was killed")
        time.sleep(0.2)
    assert all(r.worker != victim for r in after), f"the killed {host} finished tasks: {after}"
    reran = tuple(k for k in keys if any(r.key == k for r in after))
    return Kill(host, victim, tuple(keys), at, running, tuple(after), reran)


def drain(stack: Stack, stream: StreamResult, timeout: float = 90.0) -> None:
    """Wait until the driver has tested every full window of the stream (Prometheus' view
    of the pushed counter), then stop the driver and the replicas gracefully."""
    tested = stream.rows // stack.plan.window_size * stack.plan.window_size
    stack.wait_query(
        f'driftlake_rows_tested_total{{model="{MODEL}"}}',
        lambda r: bool(r) and float(r[0]["value"][1]) == tested,
        timeout,
    )
    for name in (ANALYTICS, *REPLICAS):
        code = stack.stop(name)
        assert code == 0, f"{name} exited with {code} on SIGTERM\n{stack.tail(name)}"


def backfill(stack: Stack, timeout: float = 180.0) -> str:
    """The one-shot backfill of the whole landing zone, on a local cluster in the analytics
    host; its summary line."""
    name = f"{ANALYTICS}-backfill"
    proc = stack.start(ANALYTICS, svc.backfill(stack.warehouse, BACKFILL, stack.plan), name=name)
    try:
        code = proc.wait(timeout)
    finally:
        stack.stop(name, 5)  # its local cluster's workers too, should any be left
    out = stack.tail(name)
    assert code == 0, f"backfill exited with {code}\n{out}"
    return next((line for line in out.splitlines() if line.startswith("backfill ")), "")


def snapshot(stack: Stack) -> Snapshot:
    """Read the bucket from the observer host with the product's readers."""
    out = stack.net.workdir(OBSERVER) / "snapshot"
    argv = [svc.PY, "-m", "harness._multihost_snapshot", stack.warehouse, str(out)]
    env = stack.env(PYTHONPATH=str(ROOT))
    done = stack.net.run(OBSERVER, [*argv, "--backfill", BACKFILL], env=env, timeout=120)
    assert done.returncode == 0, f"snapshot failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    return Snapshot.load(out)


def check_prometheus(stack: Stack, snap: Snapshot, facts: HistoryFacts) -> dict[str, float]:
    """Prometheus holds what the driver pushed for the last window, feature by feature,
    and the job's counters; return the job's counters."""
    labels = f'model="{MODEL}"'
    stack.wait_query(
        f"driftlake_windows_total{{{labels}}}",
        lambda r: bool(r) and float(r[0]["value"][1]) == facts.windows,
        30,
    )
    last = snap.history.filter(snap.history["window_id"] == facts.windows - 1)
    drift = {
        s["metric"]["feature"]: float(s["value"][1])
        for s in stack.query(f"driftlake_feature_drift{{{labels}}}")
    }
    expected = {f: float(d) for f, d in last.select("feature", "drifted").iter_rows()}
    assert drift == expected, f"Prometheus driftlake_feature_drift {drift} != history {expected}"
    (dataset,) = stack.query(f"driftlake_dataset_drift{{{labels}}}")
    assert float(dataset["value"][1]) == float(last["dataset_drift"][0])
    counters = {}
    for name in ("windows", "drifted_windows", "late_rows", "cycle_errors"):
        (sample,) = stack.query(f"driftlake_{name}_total{{{labels}}}")
        counters[name] = float(sample["value"][1])
    return counters
