"""driftlake with every service on its own host, the warehouse only an s3:// URL.

Each service runs in its own network namespace on one private network (harness/netns.py),
with its own address and working directory: moto's S3 server, the Dask scheduler, two Dask
workers, two model-server replicas, nginx running the shipped ``nginx.conf`` in front of
them, the Pushgateway, Prometheus (the shipped config and rules), the analytics driver, the
client streaming ``run.py`` and an observer (the caller's eyes: it sits in the root
namespace, which reaches no host). Every Python service gets the S3 server's ``AWS_*``.

Run it as root from the repository (namespaces need root; nginx, prometheus and
prometheus-pushgateway from Debian)::

    uv run --frozen python -m harness.multihost [--workdir DIR] [--requests N] [--rate R]

:func:`run_demo` shows, checking each claim:

1. ``run.py --drift true`` streams through nginx; one set of windows covers both replicas'
   landing rows, the shifted features are flagged, the history objects in the bucket hold
   every window once, and Prometheus holds the last window's drift as pushed;
2. a third Dask worker started on a new host while the stream runs is given window tasks
   in its first cycles (the scheduler's task stream says which worker ran each task);
3. an original worker is SIGKILLed (its whole process group) while it holds window tasks:
   the survivors go on, and the history is still every window id once, equal to a one-shot
   backfill on a separate local cluster and to scipy over the landing rows.

Step 2's claim is checked last, so a failure of it still shows the others' outcomes. The
run prints what it did and where each host's directory and log are; everything it started
is stopped when it ends, the logs stay. ``tests/e2e/test_multihost.py`` runs the same
:func:`run_demo`. The parts: ``_multihost_services`` (argv and configs),
``_multihost_stack`` (start, stop, reach the hosts), ``_multihost_steps``,
``_multihost_dask`` (the observer's view of the cluster), ``_multihost_snapshot`` (reading
the bucket from a host) and ``_multihost_checks``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness._multihost_checks import HistoryFacts, check_exact, check_history, check_landing
from harness._multihost_dask import task_runs
from harness._multihost_services import Plan, binaries
from harness._multihost_stack import (
    ANALYTICS,
    BACKFILL,
    CLIENT,
    NEW_WORKER,
    OBSERVER,
    REPLICAS,
    WORKERS,
    Say,
    Stack,
    multihost_stack,
)
from harness._multihost_steps import (
    Join,
    Kill,
    StreamResult,
    add_worker,
    backfill,
    check_prometheus,
    drain,
    finish_stream,
    kill_worker,
    snapshot,
    start_stream,
)
from harness.netns import netns_unavailable

__all__ = [
    "NEW_WORKER",
    "REPLICAS",
    "WORKERS",
    "DemoResult",
    "Plan",
    "Stack",
    "main",
    "multihost_stack",
    "run_demo",
]


@dataclass(frozen=True)
class DemoResult:
    stream: StreamResult
    join: Join
    kill: Kill
    window_runs: dict[str, int]  # host -> window tasks it ran
    landing_by_replica: dict[str, int]
    history: HistoryFacts
    compared_statistics: int
    prometheus: dict[str, float]
    seconds: float


def run_demo(tmp_dir: Path, plan: Plan | None = None, say: Say = print) -> DemoResult:
    """Start the stack under ``tmp_dir``, run the three steps, check every claim (an
    AssertionError says which failed) and stop everything."""
    started = time.monotonic()
    plan = plan or Plan()
    with multihost_stack(tmp_dir, plan, say) as stack:
        rate = plan.rate * plan.batch
        say(
            f"step 1: run.py --drift true from {CLIENT} through nginx: {plan.rows} rows at "
            f"{rate:g} rows/s, windows of {plan.window_size} rows"
        )
        stream_started = time.monotonic()
        client_proc = start_stream(stack)
        deadline = time.monotonic() + 60
        while len(task_runs(stack.dask)) < 2:  # cycles are under way
            assert client_proc.poll() is None, f"run.py ended early\n{stack.tail(CLIENT)}"
            assert time.monotonic() < deadline, f"no window tested\n{stack.tail(ANALYTICS)}"
            time.sleep(0.2)

        join = add_worker(stack, client_proc)
        say(
            f"step 2: {join.host} ({join.address}) joined while the stream ran "
            f"({join.stream_running}); it ran {len(join.runs)} window task(s) in its first cycles"
        )
        assert join.stream_running, "the stream ended before the new worker joined"

        kill = kill_worker(stack, client_proc)
        survivors = sorted({stack.host_of(r.worker) for r in kill.after})
        say(
            f"step 3: SIGKILLed {kill.host} holding window tasks {list(kill.keys)}; "
            f"{len(kill.reran)} of them ran again; window tasks finished since: "
            f"{len(kill.after)} on {survivors}"
        )
        assert kill.stream_running, "the stream ended before the worker was killed"

        stream = finish_stream(stack, client_proc, stream_started)
        say(
            f"run.py: {stream.requests} requests ({stream.rows} rows) accepted in "
            f"{stream.seconds:.1f}s, {stream.failed} failed"
        )
        drain(stack, stream)
        say(f"drained: the driver tested every full window; {backfill(stack)}")
        snap = snapshot(stack)
        say(f"read the bucket from {OBSERVER}: {stack.net.workdir(OBSERVER) / 'snapshot'}")

        replicas = set(REPLICAS.values())
        landing = check_landing(snap, replicas, stream.rows)
        facts = check_history(snap, plan, replicas, stream.rows)
        compared = check_exact(snap, plan)
        prometheus = check_prometheus(stack, snap, facts)
        runs = Counter(stack.host_of(r.worker) for r in task_runs(stack.dask))
        say(f"landing rows by replica: {landing}")
        say(
            f"history: windows 0..{facts.windows - 1} once each over {sorted(replicas)}, "
            f"{facts.history_files} objects under {stack.warehouse}/drift/; "
            f"{facts.drifted_windows} with dataset drift (rows shifted from window "
            f"{facts.first_shifted_window}); windows flagging each feature: {facts.flagged}"
        )
        say(f"window tasks run per host: {dict(sorted(runs.items()))}")
        say(
            f"exact: live history == one-shot backfill ({BACKFILL}); {compared} statistics "
            "== scipy.stats.ks_2samp over the landing rows"
        )
        say(
            f"Prometheus: driftlake_feature_drift of window {facts.windows - 1} == history; "
            f"counters {prometheus}"
        )
        # step 2's claim last, so that its failure still shows every other check's outcome
        assert join.runs, (
            f"{NEW_WORKER} joined while the stream ran but was given no window task in its "
            f"first {3 * plan.interval + 2:g}s, while both original workers lived "
            f"(window tasks run per host over the whole run: {dict(runs)})"
        )
    return DemoResult(
        stream=stream,
        join=join,
        kill=kill,
        window_runs=dict(runs),
        landing_by_replica=landing,
        history=facts,
        compared_statistics=compared,
        prometheus=prometheus,
        seconds=time.monotonic() - started,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m harness.multihost", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where hosts' directories and logs go (default: a new /tmp directory)",
    )
    p.add_argument("--requests", type=int, default=Plan.requests, help="run.py requests")
    p.add_argument("--rate", type=float, default=Plan.rate, help="run.py requests per second")
    p.add_argument("--batch", type=int, default=Plan.batch, help="rows per request")
    p.add_argument("--window-size", type=int, default=Plan.window_size, help="rows per window")
    args = p.parse_args(argv)
    why = netns_unavailable()
    if why is not None:
        print(f"python -m harness.multihost: {why}", file=sys.stderr)
        return 2
    try:
        binaries()
    except RuntimeError as exc:
        print(f"python -m harness.multihost: {exc}", file=sys.stderr)
        return 2
    # a SIGTERM (timeout, kill) unwinds like an error: every host is stopped and deleted
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    workdir = args.workdir or Path(tempfile.gettempdir()) / f"driftlake-multihost-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    plan = Plan(
        window_size=args.window_size, requests=args.requests, batch=args.batch, rate=args.rate
    )
    try:
        result = run_demo(workdir, plan)
    except AssertionError as exc:
        print(f"FAILED: {exc}\nlogs: {workdir}", file=sys.stderr)
        return 1
    print(f"all checks passed in {result.seconds:.0f}s; every service stopped; logs: {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
