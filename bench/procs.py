"""Benchmark plumbing: servers on loopback with their CPU time, and the models they serve.

Starting, readiness and stopping are the development harness's (:mod:`harness.procs`); this
adds what only a benchmark measures (CPU time of a server and its flusher) and the pieces the
baseline servers share.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI

from harness import REFERENCE
from harness.procs import Process, driftlake_env, free_port, start_ready
from harness.servers import parse_metrics
from ingest import Warehouse
from ingest.reference import load_reference
from serving import Predictor, ServingSettings, load_predictor

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Proc(Process):
    """One server process on 127.0.0.1, its log file, and its CPU time."""

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and its live children (its flusher)."""
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """User + system CPU time of the process itself, and of its live descendants."""
        own, *kids = (_cpu_ticks(pid) for pid in [self.proc.pid, *descendants(self.proc.pid)])
        return own / CLK_TCK, sum(kids) / CLK_TCK

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, trust_env=False)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful: the capture buffer is published), then kill after ``timeout``."""
        return super().stop(timeout)


def descendants(pid: int) -> list[int]:
    """Every live descendant of process ``pid`` (a model server's flusher)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(k) for k in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except FileNotFoundError:  # it just exited
            continue
        out += kids
        todo += kids
    return out


def _cpu_ticks(pid: int) -> int:
    """User + system clock ticks of process ``pid`` (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0
    return int(fields[11]) + int(fields[12])


def start(
    name: str,
    argv: list[str],
    log_dir: Path,
    env: dict[str, str] | None = None,
    cpus: set[int] | None = None,
    wrapper: tuple[str, ...] = (),
    timeout: float = 120.0,
) -> Proc:
    """Run ``python <argv> --port P`` (on ``cpus`` only, if given; under ``wrapper``, e.g.
    valgrind, if given) until ``/healthz`` answers, for up to ``timeout`` seconds."""
    port = free_port()
    started = start_ready(
        name,
        [*wrapper, sys.executable, *argv, "--host", "127.0.0.1", "--port", str(port)],
        log_dir / f"{name}.log",
        port,
        timeout=timeout,
        env=driftlake_env() | (env or {}),
        # every thread the server starts inherits the affinity
        preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
    )
    return Proc(name, port, started.proc, started.log_path)


def metrics(proc: Proc) -> dict[str, float]:
    """Scrape a driftlake model server's ``/metrics`` (samples without labels only)."""
    return {k: v for k, v in parse_metrics(proc.get("/metrics").text).items() if "{" not in k}


def server_parser(description: str, *, model_path: bool = False) -> argparse.ArgumentParser:
    """The command line every benchmark server takes: ``--host``, ``--port`` and, with
    ``model_path``, ``--model-path`` (the estimator file; the default model if omitted)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    if model_path:
        parser.add_argument("--model-path", default=None, help="estimator file (default model)")
    return parser


def add_healthz(app: FastAPI) -> FastAPI:
    """Answer ``GET /healthz`` with ``{"status": "ok"}``: what :func:`start` waits for."""

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    return app


def bench_predictor(model_path: str | None, cache: str | None = None) -> Predictor:
    """The predictor the model server would serve: the default model, or ``model_path``.

    ``cache`` is the warehouse the default model is cached in (a temporary one if None).
    """
    warehouse = cache or tempfile.mkdtemp(prefix="driftlake-bench-model-")
    settings = ServingSettings(
        reference_path=REFERENCE,
        warehouse=warehouse,
        model_path=model_path or None,
        replica="bench",
        capture=False,
    )
    reference = load_reference(settings.reference_path, settings.model_name, label=settings.label)
    return load_predictor(settings, reference, Warehouse(warehouse))


def columns_to_matrix(columns: list[str], data: list[list[float]], order: dict[str, int]):
    """Rows as a float64 matrix in the model's column order (no validation beyond numpy's)."""
    x = np.array(data, dtype=np.float64)
    take = [columns.index(name) for name in order]
    return x if take == list(range(len(take))) else np.ascontiguousarray(x[:, take])


def serve(app, host: str, port: int, loop: str = "auto") -> None:
    """Run ``app`` as ``python -m serving`` runs the model server: one uvicorn worker, on
    ``loop`` (uvicorn's choice by default: uvloop when installed)."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        workers=1,
        loop=loop,
        log_level="warning",
        access_log=False,
        server_header=False,
    )
