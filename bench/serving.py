"""Benchmark: the model server's cost of capture, against the replaced design and the ceiling.

Run with ``uv run python -m bench.serving [--models default,forest] [--duration 5]
[--rounds 3]`` (needs Debian's ``wrk``). For each model, four servers run side by side on
loopback, each one uvicorn worker serving the same predictor:

- ``off``: ``python -m serving --no-capture``
- ``on``: ``python -m serving`` (driftlake capture, default flush settings)
- ``fwd``: the replaced design (``bench.baseline_forwarding``): a per-request background
  task POSTs the rows to ``bench.baseline_collector`` with a new HTTP client each time
- ``bare``: the ceiling (``bench.bare``): orjson decode + predict, nothing else

wrk (one thread, a separate process) drives one server at a time for ``--duration``
seconds, posting held-out rows in requests of 1 or 32 rows over 1, 8 or 32 connections.
The four configurations of a cell run back to back for ``--rounds`` rounds, in orders where
each follows each other equally often (``bench.paired.williams_orders``). The tables show
each configuration's medians; each ratio and p99 difference is the median over rounds of
that round's own ratio: this shared machine's speed drifts by up to ~30% between rounds,
and two runs seconds apart drift least. The pooled p99 difference is that of all rounds'
requests together, with a bootstrap interval over rounds (``bench.paired``). Rows
captured: for ``on``, the rows in the landing zone after SIGTERM whose ``ts`` falls in the
run, against the rows the server accepted (its ``driftlake_prediction_rows_total``); for
``fwd``, the rows the collector received once every forward finished, against the rows
predicted. CPU is the server's (and for ``fwd`` the collector's too) user+system time per
request, including what finishes after wrk stops (requests still in flight, forwards).

The forest is the replaced design's model: RandomForestClassifier(n_estimators=100,
random_state=42) fitted on the full breast-cancer data, saved with joblib
(``--forest-path``; trained there if missing).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import joblib
import orjson
import polars as pl
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier

from bench import procs, wrk
from bench._serving_report import CONFIGS, Run, report
from bench.paired import williams_orders
from harness import REFERENCE
from serving.dataset import LABEL, split_breast_cancer

MODEL = "breast_cancer"


@dataclass
class Servers:
    """The four configurations of one model, running."""

    by_config: dict[str, procs.Proc]
    collector: procs.Proc
    warehouse: Path

    def stop(self) -> None:
        for p in [*self.by_config.values(), self.collector]:
            p.stop()


def train_forest(path: Path) -> Path:
    """The replaced design's model, fitted on the full breast-cancer data and saved."""
    if not path.exists():
        data = load_breast_cancer()
        forest = RandomForestClassifier(n_estimators=100, random_state=42)
        joblib.dump(forest.fit(data.data, data.target), path)
    return path


def bodies(batch: int, n: int = 32) -> list[bytes]:
    """``n`` request bodies of ``batch`` held-out rows each, in the clients' format."""
    holdout = split_breast_cancer()[1].drop(LABEL)
    out = []
    for i in range(n):
        rows = holdout.slice((i * batch) % (holdout.height - batch), batch)
        out.append(orjson.dumps({"features": {"columns": rows.columns, "data": rows.rows()}}))
    return out


def start_servers(model_path: Path | None, work: Path, tag: str) -> Servers:
    model_args = ["--model-path", str(model_path)] if model_path else []
    wh = work / f"warehouse-{tag}"
    common = ["-m", "serving", "--reference", str(REFERENCE), *model_args]
    off = procs.start(
        f"{tag}-off",
        [*common, "--no-capture", "--warehouse", str(work / f"cache-{tag}"), "--replica", "off"],
        work,
    )
    on = procs.start(f"{tag}-on", [*common, "--warehouse", str(wh), "--replica", "on"], work)
    collector = procs.start(f"{tag}-collector", ["-m", "bench.baseline_collector"], work)
    target = collector.url + "/datadrift"
    fwd = procs.start(
        f"{tag}-fwd", ["-m", "bench.baseline_forwarding", "--collector", target, *model_args], work
    )
    bare = procs.start(f"{tag}-bare", ["-m", "bench.bare", *model_args], work)
    return Servers({"off": off, "on": on, "fwd": fwd, "bare": bare}, collector, wh)


def accepted_rows(servers: Servers, config: str) -> int:
    p = servers.by_config[config]
    if config in ("off", "on"):
        return int(procs.metrics(p)["driftlake_prediction_rows_total"])
    if config == "fwd":
        return p.get("/stats").json()["rows_predicted"]
    return 0


def drain_forwards(servers: Servers, timeout: float = 60.0) -> None:
    """Wait until every background forward of the baseline has finished (or failed)."""
    deadline = time.monotonic() + timeout
    while servers.by_config["fwd"].get("/stats").json()["forwards_in_flight"] > 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"baseline forwards still in flight after {timeout} s")
        time.sleep(0.2)


def wait_quiet(watched: list[procs.Proc], timeout: float = 60.0) -> None:
    """Wait until the servers use under 5% of a core over 0.25 s: nothing left in flight."""
    deadline = time.monotonic() + timeout
    before = sum(w.cpu_seconds() for w in watched)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = sum(w.cpu_seconds() for w in watched)
        if now - before < 0.0125:
            return
        before = now
    raise RuntimeError(f"servers still busy {timeout} s after the load stopped")


def measure(
    servers: Servers, model: str, config: str, script: Path, batch: int, conns: int, args, rnd
) -> Run:
    p = servers.by_config[config]
    watched = [p, servers.collector] if config == "fwd" else [p]
    rows0 = accepted_rows(servers, config)
    received0 = servers.collector.get("/stats").json()["rows_received"]
    cpu0 = sum(w.cpu_seconds() for w in watched)
    start = time.time()
    result = wrk.run(p.url + "/get-prediction", script, conns, args.duration)
    if config == "fwd":
        drain_forwards(servers)
    wait_quiet(watched)  # requests wrk abandoned at its deadline still finish server-side
    end = time.time()
    cpu = sum(w.cpu_seconds() for w in watched) - cpu0
    rows = accepted_rows(servers, config) - rows0
    captured = None
    if config == "fwd":
        captured = servers.collector.get("/stats").json()["rows_received"] - received0
    return Run(
        model=model,
        config=config,
        batch=batch,
        connections=conns,
        round=rnd,
        rps=result.rps,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        errors=result.errors,
        accepted_rows=rows,
        captured_rows=captured,
        cpu_ms_per_request=cpu / max(result.requests, 1) * 1e3,
        start=start,
        end=end,
        latency_us=result.latency_us.tolist(),
        latency_counts=result.latency_counts.tolist(),
    )


def landed_per_run(warehouse: Path, runs: list[Run]) -> None:
    """Fill ``captured_rows`` of the ``on`` runs from the landing zone (after SIGTERM)."""
    root = warehouse / "landing"
    files = list(root.glob(f"model={MODEL}/**/*.parquet"))
    if not files:
        for r in runs:
            r.captured_rows = 0
        return
    ts = (
        pl.scan_parquet(f"{root}/**/*.parquet", hive_partitioning=True)
        .select(pl.col("ts").dt.epoch("us"))
        .collect()["ts"]
    )
    for r in runs:
        inside = (ts >= int(r.start * 1e6)) & (ts <= int(r.end * 1e6))
        r.captured_rows = int(inside.sum())


def landed_total(warehouse: Path) -> int:
    root = warehouse / "landing"
    if not any(root.glob("**/*.parquet")):
        return 0
    lazy = pl.scan_parquet(f"{root}/**/*.parquet", hive_partitioning=True)
    return int(lazy.select(pl.len()).collect().item())


def run_model(model: str, model_path: Path | None, work: Path, args) -> tuple[list[Run], dict]:
    servers = start_servers(model_path, work, model)
    runs: list[Run] = []
    try:
        scripts = {b: wrk.write_script(bodies(b)) for b in args.batches}
        for config in CONFIGS:  # warm-up: first requests import and allocate lazily
            for b in args.batches:
                wrk.run(servers.by_config[config].url + "/get-prediction", scripts[b], 8, 1)
            if config == "fwd":
                drain_forwards(servers)
        cells = [(b, c) for b in args.batches for c in args.connections]
        orders = williams_orders(len(CONFIGS))
        for rnd in range(args.rounds):
            for i, (batch, conns) in enumerate(cells):
                for config in (CONFIGS[k] for k in orders[(rnd + i) % len(orders)]):
                    run = measure(servers, model, config, scripts[batch], batch, conns, args, rnd)
                    runs.append(run)
                    print(
                        f"  {model} {config:>4} batch={batch:<2} conns={conns:<2} "
                        f"round={rnd}: {run.rps:8.1f} req/s  p50 {run.p50_ms:7.2f} ms  "
                        f"p99 {run.p99_ms:7.2f} ms  cpu {run.cpu_ms_per_request:6.2f} ms/req",
                        flush=True,
                    )
        totals = {"accepted_on": accepted_rows(servers, "on")}
    finally:
        servers.stop()
    totals["landed_on"] = landed_total(servers.warehouse)
    landed_per_run(servers.warehouse, [r for r in runs if r.config == "on"])
    return runs, totals


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="default,forest", help="default and/or forest")
    parser.add_argument("--batches", default="1,32", help="rows per request")
    parser.add_argument("--connections", default="1,8,32", help="wrk connections")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per cell")
    parser.add_argument("--forest-path", type=Path, default=None, help="forest joblib file")
    parser.add_argument("--json", type=Path, default=None, help="write every run here")
    args = parser.parse_args(argv)
    args.batches = [int(x) for x in args.batches.split(",")]
    args.connections = [int(x) for x in args.connections.split(",")]
    wrk.require_wrk()
    work = Path(tempfile.mkdtemp(prefix="driftlake-bench-serving-"))
    print(f"bench.serving: work dir {work}", flush=True)
    all_runs, reports = [], []
    for model in args.models.split(","):
        path = None
        if model == "forest":
            path = train_forest(args.forest_path or work / "forest.joblib")
        elif model != "default":
            raise SystemExit(f"unknown model {model!r}: expected default or forest")
        runs, totals = run_model(model, path, work, args)
        all_runs += runs
        reports.append(report(model, runs, totals))
    print()
    print("\n\n".join(reports))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in all_runs], indent=1))


if __name__ == "__main__":
    main()
