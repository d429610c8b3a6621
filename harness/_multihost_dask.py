"""The multi-host Dask cluster as an observer sees it: which worker ran each task (the
scheduler's task stream), which tasks a worker holds right now, who is connected.

The analytics driver is the cluster's only client that computes (compaction is off), so
every task is a run of windows, whatever the driver names it. Public client API only:
nothing is shipped to the scheduler to run, so it needs nothing but distributed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from distributed import Client

from harness.netns import Network


@dataclass(frozen=True)
class TaskRun:
    """One finished task: its key, the worker's address, when it ended (epoch s)."""

    key: str
    worker: str
    stop: float


def connect(net: Network, host: str, address: str, timeout: float = 30.0) -> Client:
    """A client of the scheduler at ``address``, its connection made from ``host``; the
    scheduler's task stream starts recording now (it records nothing until first asked)."""
    with net.enter(host):  # the client's event-loop thread starts here, and stays in host
        client = Client(address, timeout=f"{timeout}s")
    client.get_task_stream()
    return client


def task_runs(client: Client) -> list[TaskRun]:
    """Every task the scheduler saw finish since :func:`connect`, oldest first."""
    runs = []
    for record in client.get_task_stream():
        if record.get("status", "OK") != "OK":
            continue
        stop = max(s["stop"] for s in record["startstops"])
        runs.append(TaskRun(str(record["key"]), record["worker"], stop))
    return sorted(runs, key=lambda r: r.stop)


def in_flight(client: Client) -> dict[str, list[str]]:
    """Per worker, the tasks the scheduler has sent it that have not finished: the one it
    executes and any queued behind it."""
    return {w: sorted(map(str, keys)) for w, keys in client.processing().items()}


def workers(client: Client) -> dict[str, str]:
    """The connected workers: address -> name."""
    return {a: str(w.get("name")) for a, w in client.scheduler_info()["workers"].items()}


def wait_for_worker(client: Client, addr: str, *, present: bool, timeout: float) -> str:
    """Wait until a worker on IP ``addr`` is connected (``present``) or gone; return its
    Dask address (tcp://ip:port)."""
    deadline = time.monotonic() + timeout
    seen = ""
    while True:
        found = [a for a in workers(client) if a.split("://")[-1].rsplit(":", 1)[0] == addr]
        seen = found[0] if found else seen
        if bool(found) == present:
            return seen
        if time.monotonic() > deadline:
            state = "connect" if present else "leave"
            raise AssertionError(f"no worker on {addr} did {state} in {timeout:g}s")
        time.sleep(0.1)
