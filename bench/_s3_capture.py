"""bench.s3 part capture: a model server's capture cost publishing to S3 (moto) against local disk.

Four ``python -m serving`` replicas run at once, one uvicorn worker each: ``off`` and ``off2``
(``--no-capture``, the second the noise floor), ``local`` (capture into a local warehouse)
and ``s3`` (capture into ``s3://<bucket>/wh`` on moto). wrk drives one at a time, in orders
where each follows each other equally often, with ``bench.serving``'s bodies and quiet wait;
each ratio is the median of each round's own ratio against ``off`` (sign-test interval).
After SIGTERM the rows in each warehouse are counted against the rows the server accepted.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from bench import procs, wrk
from bench._s3_moto import MotoMeter
from bench.paired import median_ci, williams_orders
from bench.serving import bodies, wait_quiet
from harness import REFERENCE
from ingest import Warehouse

CONFIGS = ("off", "local", "s3", "off2")
BASE = "off"


@dataclass
class Series:
    """One configuration's wrk runs, in round order, with CPU per request."""

    rps: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # server + flusher, per request
    moto_cpu_ms: list[float] = field(default_factory=list)  # moto's, per request
    errors: int = 0


def _landed_rows(wh: Warehouse) -> int:
    return sum(
        pq.ParquetFile(wh.open_input(f.path)).metadata.num_rows for f in wh.list_files("landing")
    )


def run(
    work: Path, moto: MotoMeter, *, rounds: int, duration: float, batch: int, conns: int
) -> str:
    """Run the capture comparison; return its markdown report."""
    bucket = moto.server.create_bucket()
    warehouses = {"local": str(work / "wh-local"), "s3": f"s3://{bucket}/wh"}
    common = ["-m", "serving", "--reference", str(REFERENCE)]
    servers: dict[str, procs.Proc] = {}
    runs = {c: Series() for c in CONFIGS}
    try:
        for name in CONFIGS:
            flags = ["--warehouse", warehouses.get(name, str(work / f"cache-{name}"))]
            if name not in warehouses:
                flags.append("--no-capture")
            env = moto.server.env if name == "s3" else None
            argv = [*common, *flags, "--replica", name]
            servers[name] = procs.start(f"capture-{name}", argv, work, env=env)
        script = wrk.write_script(bodies(batch))
        for p in servers.values():  # warm-up: first requests import and allocate lazily
            wrk.run(p.url + "/get-prediction", script, 8, 1)
        orders = williams_orders(len(CONFIGS))
        for rnd in range(rounds):
            for name in (CONFIGS[i] for i in orders[rnd % len(orders)]):
                p, s = servers[name], runs[name]
                cpu0, moto0 = p.cpu_seconds(), moto.cpu_seconds()
                r = wrk.run(p.url + "/get-prediction", script, conns, duration)
                wait_quiet([p])  # the flusher's publishing of the run's rows included
                n = max(r.requests, 1)
                s.rps.append(r.rps)
                s.p99_ms.append(r.p99_ms)
                s.cpu_ms.append((p.cpu_seconds() - cpu0) / n * 1e3)
                s.moto_cpu_ms.append((moto.cpu_seconds() - moto0) / n * 1e3)
                s.errors += r.errors
                print(
                    f"  capture {name:>5} round {rnd}: {r.rps:8.1f} req/s  p99 {r.p99_ms:6.2f} ms",
                    flush=True,
                )
        counts = {n: procs.metrics(servers[n]) for n in warehouses}
    finally:
        for p in servers.values():
            p.stop()  # SIGTERM: the flusher publishes what it holds
    landed = {n: _landed_rows(Warehouse(url)) for n, url in warehouses.items()}
    return _report(runs, counts, landed, rounds, duration, batch, conns)


def _report(runs, counts, landed, rounds, duration, batch, conns) -> str:
    base = runs[BASE]
    lines = [
        f"{batch} row(s)/request, {conns} connections, one uvicorn worker per server, "
        f"{rounds} rounds of {duration:g} s, {time.strftime('%Y-%m-%d')}; ratios: median of "
        "each round's own [95% sign-test interval]",
        "",
        "| server | warehouse | req/s | p99 ms | server + flusher CPU ms/request "
        "| moto CPU ms/request | req/s / off | rows landed / accepted (dropped) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    where = {"off": "-", "off2": "-", "local": "local disk", "s3": "S3 (moto, loopback)"}
    for name, s in runs.items():
        ratio = median_ci([a / b for a, b in zip(s.rps, base.rps, strict=True)])
        rows = "-"
        if name in counts:
            accepted = int(counts[name].get("driftlake_prediction_rows_total", 0))
            dropped = int(counts[name].get("driftlake_capture_dropped_rows_total", 0))
            rows = f"{landed[name]:,} / {accepted:,} ({dropped:,})"
        lines.append(
            f"| {name} | {where[name]} | {statistics.median(s.rps):,.0f} "
            f"| {statistics.median(s.p99_ms):.2f} | {statistics.median(s.cpu_ms):.3f} "
            f"| {statistics.median(s.moto_cpu_ms):.3f} | {ratio.show('{:.2f}')} | {rows} |"
        )
    s3_local = median_ci([a / b for a, b in zip(runs["s3"].rps, runs["local"].rps, strict=True)])
    errors = sum(s.errors for s in runs.values())
    lines += ["", f"s3 / local req/s: {s3_local.show('{:.2f}')}; wrk errors: {errors}"]
    return "\n".join(lines)
