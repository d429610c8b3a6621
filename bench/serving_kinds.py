"""Benchmark: a model server's rows/s per replica on the categorical path against the numeric one.

Run with ``uv run python -m bench.serving_kinds [--batches 1,32] [--connections 32]
[--duration 5] [--rounds 4]`` (needs Debian's ``wrk``). Two model servers run side by side on
loopback, each ``python -m serving`` as deployed (one uvicorn worker, its default model,
capture on with the process writer, a local warehouse each):

- ``numeric``: ``reference.parquet`` (breast cancer: 30 numeric features), StandardScaler +
  LogisticRegression;
- ``churn``: ``reference_churn.parquet`` (4 numeric, 4 categorical features, nulls in
  ``payment_method``; label ``churned``, model ``churn``, as ``run.py --dataset churn``
  serves it), the ColumnTransformer(StandardScaler, OneHotEncoder) + LogisticRegression
  pipeline.

wrk (``bench.wrk``: one thread, a separate process) posts each data set's held-out rows in
requests of ``--batches`` rows over ``--connections`` connections for ``--duration`` seconds,
one server at a time, the two alternating in Williams orders (``bench.paired``) for
``--rounds`` rounds. Reported per cell: each server's median rows/s and p50/p99, its own CPU
per row (the flusher process not included), and the median over rounds of each round's
churn/numeric rows/s ratio with its sign-test interval. After SIGTERM each warehouse's landed
rows are counted against the rows its server accepted (``driftlake_prediction_rows_total``,
warm-up included), and its dropped-row counter must be 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench import procs, wrk
from bench.paired import median_ci, williams_orders
from bench.serving import bodies as numeric_bodies
from bench.serving import landed_total, wait_quiet
from harness import REFERENCE, ROOT
from serving import churn

KINDS = ("numeric", "churn")
BODIES = 32  # distinct request bodies per cell, cycled by wrk


@dataclass
class Cell:
    """One (rows per request, connections) cell: every round's result per server."""

    batch: int
    connections: int
    results: dict[str, list[wrk.WrkResult]] = field(default_factory=dict)
    cpu_us_per_row: dict[str, list[float]] = field(default_factory=dict)

    def rows_per_s(self, kind: str) -> list[float]:
        return [r.rps * self.batch for r in self.results[kind]]


def churn_bodies(batch: int, n: int = BODIES) -> list[bytes]:
    """``n`` request bodies of ``batch`` held-out churn customers each (nulls included)."""
    holdout = churn.split_churn()[1].drop(churn.LABEL)
    out = []
    for i in range(n):
        rows = holdout.slice((i * batch) % (holdout.height - batch), batch)
        out.append(orjson.dumps({"features": {"columns": rows.columns, "data": rows.rows()}}))
    return out


def start(kind: str, work: Path) -> procs.Proc:
    """``python -m serving`` of ``kind``'s data set: capture on, the process writer."""
    if kind == "numeric":
        data = ["--reference", str(REFERENCE)]
    else:
        data = ["--reference", str(ROOT / churn.REFERENCE_FILE), "--label", churn.LABEL]
        data += ["--model-name", churn.MODEL]
    argv = ["-m", "serving", *data, "--warehouse", str(work / f"wh-{kind}"), "--replica", kind]
    server = procs.start(kind, argv, work, env={"DRIFTLAKE_CAPTURE_PROCESS": "true"})
    if not procs.descendants(server.proc.pid):
        server.stop()
        raise SystemExit(f"{kind}: no flusher process; the process writer is not in use here")
    return server


def accepted(server: procs.Proc) -> int:
    return int(procs.metrics(server)["driftlake_prediction_rows_total"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,32", help="rows per request")
    parser.add_argument("--connections", default="32", help="wrk connections")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per cell")
    args = parser.parse_args(argv)
    batches = [int(x) for x in args.batches.split(",")]
    connections = [int(x) for x in args.connections.split(",")]
    wrk.require_wrk()
    work = Path(tempfile.mkdtemp(prefix="driftlake-bench-kinds-"))
    print(f"bench.serving_kinds: work dir {work}", flush=True)
    load_before = os.getloadavg()
    make = {"numeric": numeric_bodies, "churn": churn_bodies}
    scripts = {(k, b): wrk.write_script(make[k](b)) for k in KINDS for b in batches}
    servers: dict[str, procs.Proc] = {}
    cells = [Cell(b, c) for b in batches for c in connections]
    counts: dict[str, tuple[int, int]] = {}  # kind -> (rows accepted, rows dropped)
    try:
        for kind in KINDS:
            servers[kind] = start(kind, work)
        for kind, server in servers.items():  # warm-up: first requests import and allocate
            for b in batches:
                wrk.run(server.url + "/get-prediction", scripts[kind, b], 8, 1)
        orders = williams_orders(len(KINDS))
        for rnd in range(args.rounds):
            for i, cell in enumerate(cells):
                for kind in (KINDS[k] for k in orders[(rnd + i) % len(orders)]):
                    server = servers[kind]
                    cpu0, rows0 = server.cpu_split()[0], accepted(server)
                    result = wrk.run(
                        server.url + "/get-prediction",
                        scripts[kind, cell.batch],
                        cell.connections,
                        args.duration,
                    )
                    wait_quiet([server])  # requests wrk abandoned at its deadline finish
                    rows = accepted(server) - rows0
                    cpu = (server.cpu_split()[0] - cpu0) / max(rows, 1) * 1e6
                    cell.results.setdefault(kind, []).append(result)
                    cell.cpu_us_per_row.setdefault(kind, []).append(cpu)
                    print(
                        f"  {kind:>7} batch={cell.batch:<2} conns={cell.connections:<2} "
                        f"round={rnd}: {result.rps * cell.batch:9.0f} rows/s  "
                        f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
                        f"cpu {cpu:6.1f} us/row  errors {result.errors}",
                        flush=True,
                    )
        for kind, server in servers.items():
            dropped = int(procs.metrics(server)["driftlake_capture_dropped_rows_total"])
            counts[kind] = (accepted(server), dropped)
    finally:
        for server in servers.values():
            server.stop()  # SIGTERM: the capture buffer is published
    totals = {k: (*counts[k], landed_total(work / f"wh-{k}")) for k in counts}
    print(report(cells, totals, args, (load_before, os.getloadavg())))


def report(cells: list[Cell], totals: dict[str, tuple[int, int, int]], args, load) -> str:
    median = statistics.median
    lines = [
        "",
        f"rows/s per replica (one uvicorn worker, capture on, process writer), "
        f"{args.rounds} rounds of {args.duration:g} s, medians; load average "
        f"{load[0][0]:.1f} before, {load[1][0]:.1f} after on {os.cpu_count()} CPUs:",
        "",
        "| rows/request | connections | numeric rows/s | churn rows/s | churn/numeric "
        "| numeric p50 / p99 ms | churn p50 / p99 ms | CPU us/row numeric / churn |",
        "|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for cell in cells:
        ratio = median_ci(
            [
                c / n
                for c, n in zip(cell.rows_per_s("churn"), cell.rows_per_s("numeric"), strict=True)
            ]
        )
        lat = {
            k: f"{median(r.p50_ms for r in rs):.2f} / {median(r.p99_ms for r in rs):.2f}"
            for k, rs in cell.results.items()
        }
        cpu = {k: median(v) for k, v in cell.cpu_us_per_row.items()}
        lines.append(
            f"| {cell.batch} | {cell.connections} | {median(cell.rows_per_s('numeric')):,.0f} "
            f"| {median(cell.rows_per_s('churn')):,.0f} | {ratio.show('{:.3f}')} "
            f"| {lat['numeric']} | {lat['churn']} | {cpu['numeric']:.1f} / {cpu['churn']:.1f} |"
        )
    lines.append("")
    for kind, (rows, dropped, landed) in totals.items():
        verdict = "all landed" if landed == rows and dropped == 0 else "ROWS MISSING"
        lines.append(
            f"{kind}: {rows:,} rows accepted, {landed:,} landed after SIGTERM, {dropped} "
            f"dropped: {verdict}"
        )
    errors = sum(r.errors for c in cells for rs in c.results.values() for r in rs)
    lines.append(f"wrk errors (socket, non-2xx, timeouts): {errors}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
