"""Benchmark plumbing: start servers on loopback, read their CPU time, stop them, load models."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from ingest import Warehouse
from ingest.reference import load_reference
from serving import Predictor, ServingSettings, load_predictor

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "reference.parquet"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    """One server process on 127.0.0.1 and its log file."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

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
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


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
    log_path = log_dir / f"{name}.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLAKE_")}
    child_env.update(env or {})
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*wrapper, sys.executable, *argv, "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # every thread the server starts inherits the affinity
            preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
        )
    handle = Proc(name, f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}: {log_path.read_text()}")
        try:
            if handle.get("/healthz").status_code == 200:
                return handle
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            handle.stop()
            raise RuntimeError(
                f"{name} did not answer /healthz in {timeout:g} s: {log_path.read_text()}"
            )
        time.sleep(0.1)


def metrics(proc: Proc) -> dict[str, float]:
    """Scrape a driftlake model server's ``/metrics`` (samples without labels only)."""
    out = {}
    for family in text_string_to_metric_families(proc.get("/metrics").text):
        for sample in family.samples:
            if not sample.labels:
                out[sample.name] = sample.value
    return out


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
