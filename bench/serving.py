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
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import joblib
import numpy as np
import orjson
import polars as pl
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier

from bench import procs, wrk
from bench.paired import Median, histogram_ms, median_ci, pooled_difference, williams_orders
from serving.dataset import LABEL, split_breast_cancer

CONFIGS = ("off", "on", "fwd", "bare")
MODEL = "breast_cancer"


@dataclass
class Run:
    """One wrk run of one configuration in one cell."""

    model: str
    config: str
    batch: int
    connections: int
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    accepted_rows: int
    captured_rows: int | None  # landed (on) or received by the collector (fwd)
    cpu_ms_per_request: float
    start: float
    end: float
    # wrk's latency histogram: distinct values (us) and their counts, for pooled percentiles
    latency_us: list[int] = field(default_factory=list, repr=False)
    latency_counts: list[int] = field(default_factory=list, repr=False)


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
    common = ["-m", "serving", "--reference", str(procs.REFERENCE), *model_args]
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


def paired(cell: dict[str, list[Run]], a: str, b: str, attr: str, ratio: bool) -> Median:
    """Median over rounds of ``a``'s ``attr`` against ``b``'s in the same round, with its
    95% interval."""
    by_round = {r.round: r for r in cell[b]}
    return median_ci(
        [
            getattr(r, attr) / getattr(by_round[r.round], attr)
            if ratio
            else getattr(r, attr) - getattr(by_round[r.round], attr)
            for r in cell[a]
        ]
    )


def landed_total(warehouse: Path) -> int:
    root = warehouse / "landing"
    if not any(root.glob("**/*.parquet")):
        return 0
    lazy = pl.scan_parquet(f"{root}/**/*.parquet", hive_partitioning=True)
    return int(lazy.select(pl.len()).collect().item())


def med(runs: list[Run], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs)


def by_round_histograms(runs: list[Run]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each run's latency histogram in ms, in round order (so two configurations pair up)."""
    ordered = sorted(runs, key=lambda r: r.round)
    return [histogram_ms(r.latency_us, r.latency_counts) for r in ordered]


def report(model: str, runs: list[Run], totals: dict) -> str:
    lines = [
        f"model: {model}   (medians of {max(r.round for r in runs) + 1} rounds; "
        f"req/s | p50 ms | p99 ms per configuration; ratios and p99 difference: medians of "
        f"each round's own, [95% interval, sign test] from 6 rounds on)",
        "| rows/req | conns | off | on | fwd (replaced) | bare (ceiling) "
        "| on/off | on/fwd | on/bare | on p99 - off p99 | pooled: on p99 - off p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cells = sorted({(r.batch, r.connections) for r in runs})
    capture = [
        "| rows/req | conns | on: landed / accepted | fwd: received / accepted (lost) "
        "| CPU ms/req off / on / fwd / bare |",
        "|---|---|---|---|---|",
    ]
    for batch, conns in cells:
        cell = {
            c: [r for r in runs if (r.batch, r.connections, r.config) == (batch, conns, c)]
            for c in CONFIGS
        }
        rps = {c: med(cell[c], "rps") for c in CONFIGS}
        p50 = {c: med(cell[c], "p50_ms") for c in CONFIGS}
        p99 = {c: med(cell[c], "p99_ms") for c in CONFIGS}
        shown = " | ".join(f"{rps[c]:,.0f} / {p50[c]:.1f} / {p99[c]:.1f}" for c in CONFIGS)
        on_off, on_fwd, on_bare = (
            paired(cell, "on", c, "rps", True) for c in ("off", "fwd", "bare")
        )
        slower = paired(cell, "on", "off", "p99_ms", False)
        pooled = pooled_difference(*(by_round_histograms(cell[c]) for c in ("on", "off")))
        lines.append(
            f"| {batch} | {conns} | {shown} | {on_off.show('{:.2f}')} | {on_fwd.value:.1f}x "
            f"| {on_bare.value:.2f} | {slower.show('{:+.1f}')} | {pooled.show('{:+.1f}')} |"
        )
        on_landed = sum(r.captured_rows for r in cell["on"])
        on_acc = sum(r.accepted_rows for r in cell["on"])
        fwd_rec = sum(r.captured_rows for r in cell["fwd"])
        fwd_acc = sum(r.accepted_rows for r in cell["fwd"])
        lost = 1 - fwd_rec / fwd_acc if fwd_acc else 0.0
        cpu = " / ".join(f"{med(cell[c], 'cpu_ms_per_request'):.2f}" for c in CONFIGS)
        capture.append(
            f"| {batch} | {conns} | {on_landed:,} / {on_acc:,} "
            f"({on_landed / max(on_acc, 1):.1%}) | {fwd_rec:,} / {fwd_acc:,} ({lost:.1%} lost) "
            f"| {cpu} |"
        )
    errors = sum(r.errors for r in runs)
    summary = (
        f"on, whole run: {totals['landed_on']:,} rows landed after SIGTERM of "
        f"{totals['accepted_on']:,} accepted (warm-up included); wrk errors: {errors}"
    )
    return "\n".join([*lines, "", *capture, "", summary])


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
