"""Benchmark: the capture library's cost in a user's own service.

Run with ``uv run python -m bench.library_capture [--duration 5] [--rounds 6]`` (needs
Debian's ``wrk``). Two parts:

1. ``Monitor.capture()`` of one row, in process: microseconds per call, for each writer and
   input form (the median of ``--rounds`` timings of 20,000 calls; the thread writer's
   flushes run meanwhile, as they would in a service).
2. ``examples.own_fastapi_app`` under uvicorn (one worker, as its docstring runs it) with
   capture ``on`` (the example as is: ``CaptureMiddleware``, the process writer where
   supported) and ``off`` (``bench._library_app``: the same app without the middleware),
   side by side on loopback. wrk (``bench.wrk``: one thread, a separate process) posts one
   customer per request over ``--connections`` connections for ``--duration`` seconds, the
   two servers alternating in Williams orders (``bench.paired``) for ``--rounds`` rounds.
   Reported: each side's median requests/s, p50 and p99, and the median over rounds of
   each round's on/off throughput ratio with its sign-test interval. The ``on`` server's
   landed rows (after SIGTERM) are counted against the 200s it answered.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from bench import procs, wrk
from bench.paired import median_ci, williams_orders
from driftlake import Monitor
from examples import churn_model
from ingest import Warehouse
from ingest.capture import process_writer_supported
from ingest.reader import scan_landing

CONFIGS = {"off": "bench._library_app:app", "on": "examples.own_fastapi_app:app"}
MODEL = "churn_api"
CALLS = 20_000


def micro(rounds: int, work: Path) -> list[tuple[str, str, float]]:
    """Microseconds per one-row ``capture()``: (writer, input form, median over rounds)."""
    customers = churn_model.generate(1, seed=5).drop(columns=churn_model.LABEL)
    row = customers.to_dict("records")[0]
    row = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}  # plain Python
    forms = {"row dicts": [row], "one-row mapping": row, "pandas": customers}
    writers = ["thread", *(["process"] if process_writer_supported() else [])]
    out = []
    for writer in writers:
        wh = work / f"micro-{writer}"
        with Monitor(
            "micro", wh, features=churn_model.FEATURES, writer=writer, replica=f"micro-{writer}"
        ) as monitor:
            for form, features in forms.items():
                calls = CALLS if form != "pandas" else CALLS // 10
                timings = []
                for _ in range(rounds):
                    started = time.perf_counter()
                    for _ in range(calls):
                        monitor.capture(features, 1, 0.7)
                    timings.append((time.perf_counter() - started) / calls * 1e6)
                out.append((writer, form, statistics.median(timings)))
    return out


def bodies(n: int = 32) -> list[bytes]:
    frame = churn_model.generate(n, seed=11).drop(columns=churn_model.LABEL)
    return [orjson.dumps(c) for c in frame.to_dict("records")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=6, help="rounds (6 give a 95%% interval)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    args = parser.parse_args(argv)
    wrk.require_wrk()
    work = Path(tempfile.mkdtemp(prefix="driftlake-bench-library-"))
    print(f"bench.library_capture: work dir {work}", flush=True)

    per_call = micro(max(3, args.rounds), work)

    wh = work / "warehouse"
    env = {
        "DRIFTLAKE_WAREHOUSE": str(wh),
        "DRIFTLAKE_REFERENCE_PATH": str(work / "churn_reference.parquet"),
        "DRIFTLAKE_MODEL_NAME": MODEL,
    }
    servers = {
        name: procs.start(name, ["-m", "uvicorn", target, "--no-access-log"], work, env=env)
        for name, target in CONFIGS.items()
    }
    script = wrk.write_script(bodies(), path="/score")
    runs: dict[str, list] = {name: [] for name in CONFIGS}
    try:
        for server in servers.values():  # warm-up: first requests import and allocate lazily
            wrk.run(server.url + "/score", script, 8, 1)
        names = list(CONFIGS)
        orders = williams_orders(len(names))
        for rnd in range(args.rounds):
            for name in (names[k] for k in orders[rnd % len(orders)]):
                result = wrk.run(
                    servers[name].url + "/score", script, args.connections, args.duration
                )
                runs[name].append(result)
                print(
                    f"  {name:>3} round={rnd}: {result.rps:8.1f} req/s  p50 {result.p50_ms:6.2f} "
                    f"ms  p99 {result.p99_ms:6.2f} ms  errors {result.errors}",
                    flush=True,
                )
    finally:
        for server in servers.values():
            server.stop()
    landed = scan_landing(Warehouse(str(wh)), MODEL).select("request_id").collect().height
    print(report(per_call, runs, landed, args))


def report(per_call, runs, landed: int, args) -> str:
    lines = ["", "capture() of one row (us per call, median of rounds):", ""]
    lines += ["| writer | features given as | us/call |", "|---|---|---:|"]
    lines += [f"| {w} | {form} | {us:.1f} |" for w, form, us in per_call]
    ratio = median_ci([a.rps / b.rps for a, b in zip(runs["on"], runs["off"], strict=True)])
    lines += [
        "",
        f"examples.own_fastapi_app, 1 row x {args.connections} connections, "
        f"{args.rounds} rounds of {args.duration:g} s (medians):",
        "",
        "| capture | req/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("off", "on"):
        rs = runs[name]
        lines.append(
            f"| {name} | {statistics.median(r.rps for r in rs):,.0f} | "
            f"{statistics.median(r.p50_ms for r in rs):.2f} | "
            f"{statistics.median(r.p99_ms for r in rs):.2f} | {sum(r.errors for r in rs)} |"
        )
    answered = sum(r.requests for r in runs["on"])
    lines += [
        "",
        f"on/off throughput: {ratio.show('{:.3f}')} (median of per-round ratios, 95% interval)",
        f"on: {landed:,} rows landed after SIGTERM; wrk counted {answered:,} answers in its runs "
        "(warm-up and requests in flight at a run's end land too)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
